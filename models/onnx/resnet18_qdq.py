#!/usr/bin/env python3
"""Build a ResNet-18-shaped QDQ int8 model with seeded random weights (the large workload of
the performance issue). The model is generated, not committed (~12 MB).

    python3 models/onnx/resnet18_qdq.py [OUT_DIR]      # default target/onnx/; ~1-2 minutes

Writes OUT_DIR/resnet18_qdq.onnx and OUT_DIR/resnet18_input.npy (float32 [1,3,224,224], one
seeded image with values in [0, 1)), and prints the SHA-256 of both.

Network: torchvision's ResNet-18 layout written out here (no torchvision needed): conv 7x7/2 64
+ BN + ReLU, MaxPool 3x3/2 pad 1, four stages of two BasicBlocks (64, 128, 256, 512 channels;
the first block of stages 2-4 has stride 2 and a 1x1/2 conv + BN shortcut), GlobalAveragePool,
Flatten, Gemm 512->1000. Weights: torch's default init under torch.manual_seed(SEED); BN
running statistics randomised (seeded) so the folded scales differ per channel. Exported with
BN (torch.onnx.export folds BN into the conv in eval mode), then ONNX Runtime quantize_static
(QDQ, int8 activations with zero points, per-channel int8 weights) calibrated on 4 seeded
random images.
"""
import hashlib
import os
import sys
import warnings

import numpy as np
import torch
import torch.nn as nn

warnings.filterwarnings("ignore")
SEED = 20261203


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.short = None
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                       nn.BatchNorm2d(cout))

    def forward(self, x):
        y = torch.relu(self.b1(self.c1(x)))
        y = self.b2(self.c2(y))
        return torch.relu(y + (x if self.short is None else self.short(x)))


class ResNet18(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64),
                                  nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        layers, cin = [], 64
        for cout, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
            layers += [Block(cin, cout, stride), Block(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(512, 1000)

    def forward(self, x):
        x = self.layers(self.stem(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main():
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "target", "onnx")
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    net = ResNet18()
    gen = torch.Generator().manual_seed(SEED)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)
            m.weight.data.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)
            m.bias.data.copy_(torch.randn(n, generator=gen) * 0.1)
    net.eval()
    rng = np.random.default_rng(SEED)
    calib = [rng.random((1, 3, 224, 224), dtype=np.float32) for _ in range(4)]
    image = rng.random((1, 3, 224, 224), dtype=np.float32)
    fp = os.path.join(out_dir, "resnet18_float.onnx")
    torch.onnx.export(net, torch.from_numpy(image), fp, input_names=["x"],
                      output_names=["logits"], opset_version=17, dynamo=False)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"x": c} for c in calib])

        def get_next(self):
            return next(self.it, None)

    out = os.path.join(out_dir, "resnet18_qdq.onnx")
    quantize_static(fp, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    os.remove(fp)
    inp = os.path.join(out_dir, "resnet18_input.npy")
    np.save(inp, image, allow_pickle=False)
    print(f"{out} sha256 {sha(out)}")
    print(f"{inp} sha256 {sha(inp)}")


if __name__ == "__main__":
    main()
