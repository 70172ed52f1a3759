#!/usr/bin/env python3
"""Train a small Brevitas CNN on the committed digits split, export it to QONNX, and run qonnx's
executor on the test split as the reference bitmac is held to.

    python3 models/onnx/brevitas_cnn.py        # ~1 minute on 2 cores; rewrites the files below

Writes (all in models/onnx/):
  brevitas_cnn.onnx          the QONNX model (Brevitas `export_qonnx`, TorchScript exporter)
  digits_test_x.npy          float32 [360,1,8,8]: the test split, pixel/16 (the model's input)
  digits_test_y.npy          int64 [360]: the test labels
  brevitas_cnn.ref.npy       float32 [360,10]: qonnx `execute_onnx` logits on the test split
  brevitas_cnn.codes/<i>_<tensor>.npy
                             int8/uint8 [360, ...]: the codes of every activation quantizer
                             (Quant, Trunc) in qonnx's execution, in graph order
  brevitas_cnn.ref.json      provenance: versions, accuracies, SHA-256 of every file above

Network (NCHW, 1x8x8 input):
  QuantIdentity   8-bit unsigned input quantizer, learned per-tensor scale
  conv1 3x3 1->16 pad 1, 4-bit narrow signed per-output-channel weights (learned scales),
                  int32 bias on the accumulator grid (Int32Bias: scale = s_in * s_w[c])
  QuantReLU       4-bit unsigned, learned scale                    -> a
  conv2 3x3 16->16 pad 1 (as conv1), QuantReLU 4-bit               -> b
  residual        a + b (different scales), QuantReLU 4-bit (the add's output quantizer)
  MaxPool 2x2     -> 16x4x4
  conv3 3x3 16->32 pad 1 (as conv1), QuantReLU 4-bit
  TruncAvgPool2d  4x4 (global) average pool: sum of 16 codes truncated to its 4 most
                  significant bits (floor(sum/16)), exported as AveragePool + Trunc (FLOOR)
  Flatten, fc 32->10: 8-bit narrow per-tensor weights, Int32Bias; float logits out.
Learned scales: weight scales are parameters initialised from max|w| (PARAMETER_FROM_STATS),
activation scales parameters initialised from runtime percentiles (Brevitas' defaults for
*ActPerTensorFloat), all trained by back-propagation (straight-through estimator).

Reproducibility: torch.manual_seed(SEED), one thread, deterministic algorithms, CPU. The digits
data: models/data/README.md (UCI Optical Recognition of Handwritten Digits, CC BY 4.0).
"""
import importlib.metadata
import json
import os
import shutil
import sys
import warnings

import numpy as np
import torch
import torch.nn as nn

warnings.filterwarnings("ignore")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import common  # noqa: E402

import brevitas  # noqa: E402
import brevitas.nn as qnn  # noqa: E402
from brevitas.export import export_qonnx  # noqa: E402
from brevitas.inject.enum import ScalingImplType  # noqa: E402
from brevitas.quant import (Int8WeightPerChannelFloat, Int8WeightPerTensorFloat,  # noqa: E402
                            Int32Bias, TruncTo8bit, Uint8ActPerTensorFloat)

SEED = 20261201
EPOCHS = 40
BATCH = 64
LR = 3e-3


class W4PerChannel(Int8WeightPerChannelFloat):
    bit_width = 4
    scaling_impl_type = ScalingImplType.PARAMETER_FROM_STATS


class TruncTo4bit(TruncTo8bit):
    # The pool's sum of 16 4-bit codes (8 bits) keeps its 4 most significant bits: floor(sum/16)
    # at the input's scale, i.e. a floor-rounded average (QONNX Trunc, rounding_mode FLOOR).
    bit_width = 4


class W8PerTensor(Int8WeightPerTensorFloat):
    scaling_impl_type = ScalingImplType.PARAMETER_FROM_STATS


def conv(cin, cout):
    return qnn.QuantConv2d(cin, cout, 3, padding=1, weight_quant=W4PerChannel,
                           bias=True, bias_quant=Int32Bias, return_quant_tensor=False)


def relu4():
    return qnn.QuantReLU(bit_width=4, return_quant_tensor=True)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = qnn.QuantIdentity(act_quant=Uint8ActPerTensorFloat, return_quant_tensor=True)
        self.c1, self.r1 = conv(1, 16), relu4()
        self.c2, self.r2 = conv(16, 16), relu4()
        self.radd = relu4()
        self.pool = nn.MaxPool2d(2)
        self.c3, self.r3 = conv(16, 32), relu4()
        self.gap = qnn.TruncAvgPool2d(4, trunc_quant=TruncTo4bit)
        self.fc = qnn.QuantLinear(32, 10, bias=True, weight_quant=W8PerTensor,
                                  bias_quant=Int32Bias)

    def forward(self, x):
        x = self.inp(x)
        a = self.r1(self.c1(x))
        b = self.r2(self.c2(a))
        # Brevitas refuses QuantTensor + QuantTensor with different scales; the float add of
        # the two dequantized tensors is what it exports (ONNX Add) anyway.
        y = self.radd(a.value + b.value)
        y = self.pool(y)
        y = self.r3(self.c3(y))
        y = self.gap(y)
        return self.fc(y.flatten(1))


def accuracy(logits, labels):
    return float((np.argmax(logits, axis=1) == labels).mean())


def main():
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    xtr, ytr = common.load_split("train")
    xte, yte = common.load_split("test")
    net = Net()
    common.train(net, xtr, ytr, epochs=EPOCHS, batch=BATCH, lr=LR, seed=SEED, log_every=10)
    with torch.no_grad():
        torch_logits = net(torch.from_numpy(xte)).numpy()
    onnx_path = os.path.join(HERE, "brevitas_cnn.onnx")
    export_qonnx(net, torch.from_numpy(xte[:1]), onnx_path, dynamo=False)

    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes
    # The committed file is Brevitas' export as is; qonnx's executor needs every tensor shape,
    # so it runs a shape-inferred copy (InferShapes adds value_info only, no node changes).
    model = ModelWrapper(onnx_path).transform(InferShapes())
    iname, oname = model.graph.input[0].name, model.graph.output[0].name
    ctxs = [execute_onnx(model, {iname: xte[i:i + 1]}, return_full_exec_context=True)
            for i in range(len(xte))]
    ref = np.concatenate([c[oname] for c in ctxs]).astype(np.float32)

    # The integer codes of every activation quantizer (Quant of a non-constant, and Trunc):
    # code = round(value / scale) + zeropt, exact because the value is code*scale in float32
    # and |code| < 2^24 (checked).
    inits = {i.name for i in model.graph.initializer}
    cdir = os.path.join(HERE, "brevitas_cnn.codes")
    shutil.rmtree(cdir, ignore_errors=True)
    os.makedirs(cdir)
    code_files = []
    k = 0
    for node in model.graph.node:
        if node.op_type not in ("Quant", "Trunc") or node.input[0] in inits:
            continue
        scale_name = node.input[4] if node.op_type == "Trunc" else node.input[1]
        scale = model.get_initializer(scale_name)
        zp = model.get_initializer(node.input[2])
        vals = np.concatenate([c[node.output[0]] for c in ctxs])
        codes = np.round(vals / scale) + zp
        assert np.all(np.abs(codes * scale - zp * scale - vals) <= 1e-6 * np.abs(vals) + 1e-30)
        dtype = np.int8 if codes.min() < 0 else np.uint8
        assert codes.min() >= np.iinfo(dtype).min and codes.max() <= np.iinfo(dtype).max
        safe = "".join(ch if ch.isalnum() or ch in "_.-" else "_" for ch in node.output[0])
        fname = f"{k:02d}_{safe}.npy"
        common.save_npy(os.path.join(cdir, fname), codes.astype(dtype))
        code_files.append({"tensor": node.output[0], "node": node.name, "file": fname,
                           "dtype": np.dtype(dtype).name, "shape": list(codes.shape)})
        k += 1

    files = {
        "digits_test_x.npy": xte.astype(np.float32),
        "digits_test_y.npy": yte.astype(np.int64),
        "brevitas_cnn.ref.npy": ref,
    }
    for name, arr in files.items():
        common.save_npy(os.path.join(HERE, name), arr)
    import onnx
    # bitmac-onnx-ref/1 (read by bitmac::import::reference; docs/onnx.md §6).
    meta = {
        "format": "bitmac-onnx-ref/1",
        "model": "brevitas_cnn.onnx",
        "runtime": "qonnx.core.onnx_exec.execute_onnx, one sample at a time",
        "input": "digits_test_x.npy",
        "labels": "digits_test_y.npy",
        "logits": "brevitas_cnn.ref.npy",
        "accuracy": accuracy(ref, yte),
        "codes_dir": "brevitas_cnn.codes",
        "codes": code_files,
        "provenance": {
            "script": "models/onnx/brevitas_cnn.py",
            "versions": {"torch": torch.__version__, "brevitas": brevitas.__version__,
                         "qonnx": importlib.metadata.version("qonnx"),
                         "onnx": onnx.__version__, "numpy": np.__version__},
            "seed": SEED, "epochs": EPOCHS,
            "accuracy_brevitas_torch": accuracy(torch_logits, yte),
            "prediction_agreement_torch_vs_qonnx": float(
                (np.argmax(ref, 1) == np.argmax(torch_logits, 1)).mean()),
            "sha256": {n: common.sha256_file(os.path.join(HERE, n))
                       for n in ["brevitas_cnn.onnx", *files]},
        },
    }
    with open(os.path.join(HERE, "brevitas_cnn.ref.json"), "w") as f:
        json.dump(meta, f, indent=2, sort_keys=True)
        f.write("\n")
    print(json.dumps({k: v for k, v in meta.items() if k != "codes"}, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
