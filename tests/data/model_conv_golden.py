#!/usr/bin/env python3
"""Generate tests/data/model_conv_golden.json: single-layer bitmac-model/1
models over unusual conv2d / dense geometries (rectangular inputs and kernels,
stride > kernel, padding >= kernel, 1x1, 16-bit extreme codes, NCHW flatten)
with their exact accumulators computed by PyTorch in float64 (exact: every
value is an integer below 2^53). Independent reference for
bitmac::model::layer_accumulators / Layer::im2col (tests/model_load.rs).

    python3 tests/data/model_conv_golden.py
"""
import json
import os

import numpy as np
import torch
import torch.nn.functional as F

SEED = 4
# (name, C, H, W, O, KH, KW, sh, sw, ph, pw, w_bits, a_bits)
CONV = [
    ("rect_stride2w_pad1w", 2, 5, 7, 3, 3, 2, 1, 2, 0, 1, 4, 4),
    ("k5_s3_p2", 1, 6, 6, 2, 5, 5, 3, 3, 2, 2, 8, 8),
    ("k1_s2", 3, 4, 4, 4, 1, 1, 2, 2, 0, 0, 2, 2),
    ("pad_eq_kernel_16bit", 2, 3, 3, 2, 3, 3, 1, 1, 3, 3, 16, 16),
    ("row_input", 1, 1, 9, 2, 1, 4, 1, 2, 0, 3, 4, 4),
    ("stride_gt_kernel", 2, 7, 8, 3, 2, 2, 3, 4, 1, 0, 3, 5),
]


def qr(bits, signed):
    return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)


def quant(bits, signed, step):
    b = np.float32(step).tobytes()
    return {"bits": bits, "signed": signed, "step": float(np.float32(step)),
            "step_bits": "0x%08x" % int.from_bytes(b, "little")}


def main():
    rng = np.random.default_rng(SEED)
    cases = []
    for name, c, h, w, o, kh, kw, sh, sw, ph, pw, wb, ab in CONV:
        wlo, whi = qr(wb, True)
        alo, ahi = qr(ab, False)
        wc = rng.integers(wlo, whi + 1, size=(o, c, kh, kw))
        if wb == 16:  # extremes to stress exactness
            wc.flat[0], wc.flat[1] = wlo, whi
        bias = rng.integers(-(2**31), 2**31, size=o) if wb == 16 else rng.integers(-1000, 1001, size=o)
        inputs = rng.integers(alo, ahi + 1, size=(3, c, h, w))
        if ab == 16:
            inputs[0][:] = ahi
        acc = F.conv2d(torch.tensor(inputs, dtype=torch.float64), torch.tensor(wc, dtype=torch.float64),
                       torch.tensor(bias, dtype=torch.float64), stride=(sh, sw), padding=(ph, pw))
        oh, ow = acc.shape[2], acc.shape[3]
        layer = {"name": name, "type": "conv2d", "input_shape": [c, h, w], "out_channels": o,
                 "kernel": [kh, kw], "stride": [sh, sw], "padding": [ph, pw], "output_shape": [o, oh, ow],
                 "input_quant": quant(ab, False, 0.25), "weight": dict(quant(wb, True, 0.125), shape=[o, c, kh, kw],
                                                                       codes=wc.flatten().tolist()),
                 "bias": bias.tolist(), "relu": False}
        cases.append((name, [c, h, w], layer, inputs, acc))
    # Dense with NCHW flatten of a [2,3,2] input.
    c, h, w, o = 2, 3, 2, 5
    wc = rng.integers(-8, 8, size=(o, c * h * w))
    bias = rng.integers(-100, 101, size=o)
    inputs = rng.integers(0, 16, size=(3, c, h, w))
    acc = F.linear(torch.tensor(inputs, dtype=torch.float64).flatten(1), torch.tensor(wc, dtype=torch.float64),
                   torch.tensor(bias, dtype=torch.float64))
    layer = {"name": "dense_flatten", "type": "dense", "input_shape": [c, h, w], "out_features": o, "flatten": True,
             "output_shape": [o], "input_quant": quant(4, False, 0.5),
             "weight": dict(quant(4, True, 0.0625), shape=[o, c * h * w], codes=wc.flatten().tolist()),
             "bias": bias.tolist(), "relu": False}
    cases.append(("dense_flatten", [c, h, w], layer, inputs, acc))

    out = {"generator": "tests/data/model_conv_golden.py", "torch": torch.__version__, "cases": []}
    for name, shape, layer, inputs, acc in cases:
        assert acc.abs().max().item() < 2**53
        model = {"format": "bitmac-model/1", "name": name,
                 "input": {"shape": shape, "raw_min": 0, "raw_max": 255, "scale": 1.0}, "layers": [layer]}
        out["cases"].append({"model": model,
                             "inputs": [x.flatten().tolist() for x in inputs],
                             "acc": [a.flatten().to(torch.int64).tolist() for a in acc]})
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "model_conv_golden.json")
    with open(path, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {path}: {len(cases)} cases")


if __name__ == "__main__":
    main()
