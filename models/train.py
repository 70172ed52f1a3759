#!/usr/bin/env python3
"""Train the shipped LSQ models on the committed 8x8 digits split and export them.

    python3 models/train.py            # all three models (a few minutes on 2 cores)
    python3 models/train.py cnn_w4a4   # one model
    python3 models/train.py --export-only [name ...]   # re-export from models/ckpt/<name>.pt

Quantizers: the LSQ paper's (Esser et al., ICLR 2020), not the seed's variant:
  code = round(clamp(v / s, -Qn, Qp)), vhat = code * s
  signed weights:             Qn = 2^(b-1), Qp = 2^(b-1) - 1
  unsigned activations (after ReLU, and the input): Qn = 0, Qp = 2^b - 1
  round = torch.round = round half to even; all quantizer math in float32.
  Gradients: straight-through estimator for round (dvhat/dv = 1 inside the
  clip range, 0 outside; dvhat/ds = round(v/s) - v/s inside, -Qn / Qp outside),
  step-size gradient scaled by g = 1/sqrt(N * Qp) (N = number of weights for a
  weight quantizer, number of elements of the activation tensor including the
  batch for an activation quantizer), step initialised to 2*mean(|v|)/sqrt(Qp)
  (weights: from the float pre-trained weights; activations: from the first
  training batch). One step size per tensor.
Activations are quantized after ReLU (the seed's note): each layer's input
quantizer sees the previous layer's ReLU output. The network input is the raw
pixel (0..16) times 1/16, then an unsigned 8-bit LSQ quantizer with a learned
step. First and last layers have 8-bit weights; the input quantizer is 8-bit;
everything else is W4A4 (or W2A2 for the *_w2a2 model).
Biases are fake-quantized during QAT onto the accumulator grid s_w*s_a
(bias_int = round_half_even(b / (s_w*s_a)), straight-through gradient, steps
detached there), so the integer datapath adds exactly the bias the fake-quant
model was trained and evaluated with (docs/model-format.md).

Reproducibility: torch.manual_seed, one thread, torch.use_deterministic_algorithms,
CPU only. Hyper-parameters are fixed below; they were not tuned on the test split
beyond checking that the 4-bit models reach ~95%+.
"""
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import export  # noqa: E402

SEED = 20190525
INPUT_SCALE = 1.0 / 16.0  # raw pixel 0..16 -> [0, 1]; a power of two, so exact in float32


def grad_scale(x, scale):
    y_out = x
    y_grad = x * scale
    return (y_out - y_grad).detach() + y_grad


def round_pass(x):
    return (torch.round(x) - x).detach() + x


class LsqQuantizer(nn.Module):
    """LSQ quantizer with one learned step per tensor. In eval mode the forward
    is exactly `round(clamp(v / s, lo, hi)) * s` in float32 with the raw step
    parameter (the grad-scale trick can perturb the forward value of s by an
    ulp, so it is used only while training)."""

    def __init__(self, bits: int, signed: bool):
        super().__init__()
        self.bits, self.signed = bits, signed
        self.lo, self.hi = export.qrange(bits, signed)
        self.s = nn.Parameter(torch.tensor(1.0))
        self.register_buffer("initialized", torch.tensor(False))

    def init_from(self, v: torch.Tensor):
        with torch.no_grad():
            self.s.copy_(2 * v.detach().abs().mean() / math.sqrt(self.hi))
            self.initialized.fill_(True)

    def codes(self, v):
        return torch.round(torch.clamp(v / self.s, self.lo, self.hi))

    def forward(self, v):
        if self.training:
            if not bool(self.initialized):
                self.init_from(v)
            g = 1.0 / math.sqrt(v.numel() * self.hi)
            s = grad_scale(self.s, g)
            return round_pass(torch.clamp(v / s, self.lo, self.hi)) * s
        return self.codes(v) * self.s


class QNet(nn.Module):
    """A plain chain of conv2d / dense layers with LSQ quantizers.
    spec: list of dicts {name, kind, in, out, k, stride, pad, w_bits, a_bits}
    where a_bits is the bit width of the layer's *input* quantizer."""

    def __init__(self, spec, input_shape):
        super().__init__()
        self.spec = spec
        self.input_shape = input_shape
        self.layers = nn.ModuleList()
        self.wq = nn.ModuleList()
        self.aq = nn.ModuleList()
        for L in spec:
            if L["kind"] == "conv2d":
                self.layers.append(nn.Conv2d(L["in"], L["out"], L["k"], stride=L["stride"], padding=L["pad"]))
            else:
                self.layers.append(nn.Linear(L["in"], L["out"]))
            self.wq.append(LsqQuantizer(L["w_bits"], True))
            self.aq.append(LsqQuantizer(L["a_bits"], False))
        self.quant = False

    def forward(self, raw):
        x = raw * torch.tensor(INPUT_SCALE, dtype=torch.float32)
        n = len(self.layers)
        for i, (layer, L) in enumerate(zip(self.layers, self.spec)):
            b = layer.bias
            if self.quant:
                x = self.aq[i](x)
                w = self.wq[i](layer.weight)
                if self.training:
                    # Bias on the accumulator grid s_w*s_a (steps detached), STE round.
                    scale = (self.wq[i].s * self.aq[i].s).detach()
                    b = round_pass(b / scale) * scale
                else:
                    b = export.bias_fake_quant(b, export.f32(self.wq[i].s), export.f32(self.aq[i].s))
            else:
                w = layer.weight
            if L["kind"] == "conv2d":
                x = F.conv2d(x, w, b, stride=layer.stride, padding=layer.padding)
            else:
                x = F.linear(x.flatten(1), w, b)
            if i < n - 1:
                x = F.relu(x)
        return x

    def start_quant(self):
        for layer, q in zip(self.layers, self.wq):
            q.init_from(layer.weight)
        self.quant = True

    def qlayers(self):
        out = []
        n = len(self.layers)
        for i, (layer, L) in enumerate(zip(self.layers, self.spec)):
            out.append(export.QLayer(
                name=L["name"], kind=L["kind"], weight=layer.weight, bias=layer.bias,
                w_step=self.wq[i].s, w_bits=self.wq[i].bits, w_signed=True,
                in_step=self.aq[i].s, in_bits=self.aq[i].bits, in_signed=False,
                stride=tuple(layer.stride) if L["kind"] == "conv2d" else (1, 1),
                padding=tuple(layer.padding) if L["kind"] == "conv2d" else (0, 0),
                relu=i < n - 1, bias_quantized=True))
        return out


def mlp_spec(b):
    return [
        dict(name="fc1", kind="dense", **{"in": 64, "out": 64}, w_bits=8, a_bits=8),
        dict(name="fc2", kind="dense", **{"in": 64, "out": 32}, w_bits=b, a_bits=b),
        dict(name="fc3", kind="dense", **{"in": 32, "out": 10}, w_bits=8, a_bits=b),
    ]


def cnn_spec(b):
    return [
        dict(name="conv1", kind="conv2d", **{"in": 1, "out": 8}, k=3, stride=1, pad=1, w_bits=8, a_bits=8),
        dict(name="conv2", kind="conv2d", **{"in": 8, "out": 16}, k=3, stride=2, pad=1, w_bits=b, a_bits=b),
        dict(name="fc", kind="dense", **{"in": 256, "out": 10}, w_bits=8, a_bits=b),
    ]


MODELS = {
    "mlp_w4a4": dict(spec=mlp_spec(4), input_shape=(64,),
                     desc="MLP 64-64-32-10 (dense, fused ReLU); W8/A8 first layer, W4A4 middle, W8 last (A4 input)"),
    "cnn_w4a4": dict(spec=cnn_spec(4), input_shape=(1, 8, 8),
                     desc="CNN conv3x3 1->8 p1, conv3x3 8->16 s2 p1, dense 256->10 (fused ReLU, NCHW flatten); "
                          "W8/A8 first layer, W4A4 middle, W8 last (A4 input)"),
    "cnn_w2a2": dict(spec=cnn_spec(2), input_shape=(1, 8, 8),
                     desc="CNN conv3x3 1->8 p1, conv3x3 8->16 s2 p1, dense 256->10 (fused ReLU, NCHW flatten); "
                          "W8/A8 first layer, W2A2 middle, W8 last (A2 input)"),
}

FLOAT_EPOCHS, QAT_EPOCHS, BATCH = 60, 60, 32
FLOAT_LR, QAT_LR = 3e-3, 1e-3


def run_epochs(model, X, y, epochs, lr, gen):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    n = len(y)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, BATCH):
            idx = perm[i:i + BATCH]
            loss = F.cross_entropy(model(X[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()


def evaluate(model, X):
    model.eval()
    with torch.no_grad():
        return model(X)


def load_split(shape):
    ytr, Xtr = export.load_csv(os.path.join(HERE, "data", "digits_train.csv"))
    yte, Xte = export.load_csv(os.path.join(HERE, "data", "digits_test.csv"))
    Xtr = torch.tensor(Xtr, dtype=torch.float32).reshape([-1] + shape)
    Xte = torch.tensor(Xte, dtype=torch.float32).reshape([-1] + shape)
    return Xtr, torch.tensor(ytr), Xte, torch.tensor(yte)


def train_one(name):
    cfg = MODELS[name]
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    Xtr, ytr, Xte, yte_t = load_split(list(cfg["input_shape"]))
    t0 = time.time()
    model = QNet(cfg["spec"], cfg["input_shape"])
    run_epochs(model, Xtr, ytr, FLOAT_EPOCHS, FLOAT_LR, gen)
    float_logits = evaluate(model, Xte)
    float_acc = (float_logits.argmax(1) == yte_t).float().mean().item()
    model.start_quant()
    run_epochs(model, Xtr, ytr, QAT_EPOCHS, QAT_LR, gen)
    fq_logits = evaluate(model, Xte)
    fq_acc = (fq_logits.argmax(1) == yte_t).float().mean().item()
    dt = time.time() - t0
    print(f"{name}: float test accuracy {float_acc:.4f}, fake-quant test accuracy {fq_acc:.4f} "
          f"({dt:.1f} s training)", flush=True)
    os.makedirs(os.path.join(HERE, "ckpt"), exist_ok=True)
    # The QAT state dict plus the float model's test logits (for the float accuracy).
    torch.save({"state_dict": model.state_dict(), "float_logits": float_logits},
               os.path.join(HERE, "ckpt", f"{name}.pt"))
    export_one(name, model, float_logits, fq_logits)


def export_one(name, model, float_logits, fq_logits):
    cfg = MODELS[name]
    training = {"script": "models/train.py", "seed": SEED, "torch": torch.__version__,
                "float_epochs": FLOAT_EPOCHS, "qat_epochs": QAT_EPOCHS, "batch": BATCH,
                "optimizer": f"Adam, cosine lr, float lr {FLOAT_LR}, QAT lr {QAT_LR}",
                "quantizer": "LSQ paper (Esser et al. 2020), round half to even, per-tensor step"}
    stats = export.export_all(os.path.join(HERE, f"{name}.json"), name, cfg["desc"], model.qlayers(),
                              cfg["input_shape"], INPUT_SCALE, (0, 16),
                              os.path.join(HERE, "data", "digits_test.csv"), float_logits,
                              model_logits=fq_logits, training=training)
    print(f"{name}: exported; integer-reference accuracy {stats['integer_accuracy']:.4f}, "
          f"fake-quant vs integer agreement {stats['agreement']}/{stats['samples']}, "
          f"max |fq code - int code| per hidden layer {stats['fq_vs_int_hidden_code_max_diff']}", flush=True)


def reexport(name):
    cfg = MODELS[name]
    ck = torch.load(os.path.join(HERE, "ckpt", f"{name}.pt"), weights_only=True)
    model = QNet(cfg["spec"], cfg["input_shape"])
    model.quant = True
    model.load_state_dict(ck["state_dict"])
    _, _, Xte, _ = load_split(list(cfg["input_shape"]))
    export_one(name, model, ck["float_logits"], evaluate(model, Xte))


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    args = sys.argv[1:]
    only_export = "--export-only" in args
    names = [a for a in args if a != "--export-only"] or list(MODELS)
    for name in names:
        if name not in MODELS:
            sys.exit(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
        if only_export:
            reexport(name)
        else:
            train_one(name)


if __name__ == "__main__":
    main()
