#!/usr/bin/env python3
"""Export an LSQ-quantized PyTorch model to the bitmac model format, plus its
references (docs/model-format.md is the normative description).

Usage from your own code (see docs/model-format.md, "Exporting your own model"):

    from export import QLayer, export_all
    qlayers = [QLayer(name="conv1", kind="conv2d", weight=m.conv1.weight, bias=m.conv1.bias,
                      w_step=m.wq1.s, w_bits=8, w_signed=True,
                      in_step=m.aq1.s, in_bits=8, in_signed=False,
                      stride=(1, 1), padding=(1, 1), relu=True), ...]
    export_all("models/my.json", "my", "description", qlayers,
               input_shape=(1, 8, 8), input_scale=1/16, raw_range=(0, 16),
               test_csv="models/data/digits_test.csv", float_logits=..., model_logits=...)

Everything is computed in float32 exactly as the fake-quant forward does it
(`torch.round` is round half to even), except the integer reference, which
uses exact integer (int64) arithmetic and a float64 round-half-even requant.
"""
import hashlib
import json
import os
import struct
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

MODEL_FORMAT = "bitmac-model/1"
REF_FORMAT = "bitmac-ref/1"
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def qrange(bits: int, signed: bool) -> Tuple[int, int]:
    """The LSQ paper's code range: signed [-2^(b-1), 2^(b-1)-1], unsigned [0, 2^b-1]."""
    if signed:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def f32(x) -> float:
    """The float32 value of a scalar tensor / number, as an exact Python float."""
    if isinstance(x, torch.Tensor):
        x = x.detach().reshape(()).to(torch.float32).item()
    return float(np.float32(x))


def f32_hex(x: float) -> str:
    return "0x%08x" % struct.unpack("<I", struct.pack("<f", np.float32(x)))[0]


def quant_codes(v: torch.Tensor, step: float, bits: int, signed: bool) -> torch.Tensor:
    """codes = round_half_even(clamp(v / s, qmin, qmax)) in float32 (the fake-quant math)."""
    lo, hi = qrange(bits, signed)
    s = torch.tensor(step, dtype=torch.float32)
    return torch.round(torch.clamp(v.detach().to(torch.float32) / s, lo, hi))


@dataclass
class QLayer:
    """One quantized layer of a plain chain (conv2d or dense).

    `weight` is the float weight (OIHW for conv2d, [out][in] for dense),
    `bias` the float bias (or None), `w_step` / `in_step` the learned LSQ
    steps of the weight quantizer and of this layer's *input* activation
    quantizer. A hidden layer's output is quantized by the next layer's input
    quantizer, after ReLU when `relu`. A dense layer whose input is a
    [C, H, W] tensor flattens it in NCHW order (C-major) first.
    """

    name: str
    kind: str
    weight: torch.Tensor
    bias: Optional[torch.Tensor]
    w_step: object
    w_bits: int
    w_signed: bool
    in_step: object
    in_bits: int
    in_signed: bool
    stride: Tuple[int, int] = (1, 1)
    padding: Tuple[int, int] = (0, 0)
    relu: bool = True
    # True when the model was trained with the bias fake-quantized onto the
    # accumulator grid (see bias_fake_quant); the fake-quant forward then uses
    # the dequantized bias, otherwise the float bias.
    bias_quantized: bool = False


def bias_codes(b: torch.Tensor, s_w: float, s_a: float) -> torch.Tensor:
    """bias_int = round_half_even(f64(b) / (f64(s_w) * f64(s_a))); the product of
    two float32 values is exact in float64. Returns float64 integer values."""
    return torch.round(b.detach().to(torch.float64) / (torch.tensor(s_w, dtype=torch.float64) * s_a))


def bias_fake_quant(b: torch.Tensor, s_w: float, s_a: float) -> torch.Tensor:
    """The dequantized bias f32(bias_int * f64(s_w) * f64(s_a)) used by the
    fake-quant forward of a bias-quantized model."""
    return (bias_codes(b, s_w, s_a) * (torch.tensor(s_w, dtype=torch.float64) * s_a)).to(torch.float32)


def _conv_out(h, k, s, p):
    return (h + 2 * p - k) // s + 1


def build_model_json(name: str, description: str, qlayers: Sequence[QLayer], input_shape, input_scale: float,
                     raw_range=(0, 16), training: Optional[dict] = None) -> dict:
    """The model file as a dict (see docs/model-format.md)."""
    layers = []
    shape = list(input_shape)
    for i, q in enumerate(qlayers):
        last = i == len(qlayers) - 1
        if last and q.relu:
            raise ValueError(f"layer {i} ({q.name}): the last layer outputs logits and must not have relu")
        s_w, s_a = f32(q.w_step), f32(q.in_step)
        codes = quant_codes(q.weight, s_w, q.w_bits, q.w_signed).to(torch.int64)
        out_ch = q.weight.shape[0]
        b = q.bias.detach().to(torch.float32) if q.bias is not None else torch.zeros(out_ch)
        bias_int = bias_codes(b, s_w, s_a).numpy().astype(np.int64)
        if bias_int.min(initial=0) < INT32_MIN or bias_int.max(initial=0) > INT32_MAX:
            raise ValueError(f"layer {i} ({q.name}): bias does not fit int32: {bias_int.min()}..{bias_int.max()}")
        d = {"name": q.name, "type": q.kind, "input_shape": list(shape)}
        if q.kind == "conv2d":
            o, c, kh, kw = q.weight.shape
            assert len(shape) == 3 and shape[0] == c, (q.name, shape, q.weight.shape)
            oh = _conv_out(shape[1], kh, q.stride[0], q.padding[0])
            ow = _conv_out(shape[2], kw, q.stride[1], q.padding[1])
            out_shape = [o, oh, ow]
            d.update({"out_channels": o, "kernel": [kh, kw], "stride": list(q.stride), "padding": list(q.padding)})
        elif q.kind == "dense":
            o, n = q.weight.shape
            assert int(np.prod(shape)) == n, (q.name, shape, q.weight.shape)
            out_shape = [o]
            d.update({"out_features": o, "flatten": len(shape) != 1})
        else:
            raise ValueError(f"layer {i} ({q.name}): unknown kind {q.kind}")
        d["output_shape"] = out_shape
        d["input_quant"] = {"bits": q.in_bits, "signed": q.in_signed, "step": s_a, "step_bits": f32_hex(s_a)}
        d["weight"] = {"bits": q.w_bits, "signed": q.w_signed, "step": s_w, "step_bits": f32_hex(s_w),
                       "shape": list(q.weight.shape), "codes": codes.flatten().tolist()}
        d["bias"] = bias_int.tolist()
        d["bias_float"] = [float(v) for v in b.numpy().astype(np.float32)]
        d["relu"] = bool(q.relu)
        layers.append(d)
        shape = out_shape
    m = {"format": MODEL_FORMAT, "name": name, "description": description,
         "input": {"shape": list(input_shape), "raw_min": int(raw_range[0]), "raw_max": int(raw_range[1]),
                   "scale": f32(input_scale), "scale_bits": f32_hex(input_scale)},
         "layers": layers}
    if training is not None:
        m["training"] = training
    return m


# ----------------------------------------------------------------------------
# Fake-quant forward (float32, from the exported description)

def fake_quant_forward(qlayers: Sequence[QLayer], raw: torch.Tensor, input_scale: float):
    """Fake-quant forward of a plain chain in float32, as LSQ training does it
    in eval mode. Returns (logits[N, classes] f32, input_codes[N, ...],
    hidden_codes: list per hidden layer of output codes [N, ...])."""
    x = raw.to(torch.float32) * torch.tensor(f32(input_scale), dtype=torch.float32)
    hidden = []
    input_codes = None
    for i, q in enumerate(qlayers):
        s_a = torch.tensor(f32(q.in_step), dtype=torch.float32)
        codes = quant_codes(x, f32(q.in_step), q.in_bits, q.in_signed)
        if i == 0:
            input_codes = codes
        else:
            hidden.append(codes)
        a = codes * s_a
        s_w = torch.tensor(f32(q.w_step), dtype=torch.float32)
        w = quant_codes(q.weight, f32(q.w_step), q.w_bits, q.w_signed) * s_w
        b = q.bias.detach().to(torch.float32) if q.bias is not None else None
        if b is not None and q.bias_quantized:
            b = bias_fake_quant(b, f32(q.w_step), f32(q.in_step))
        if q.kind == "conv2d":
            y = F.conv2d(a, w, b, stride=tuple(q.stride), padding=tuple(q.padding))
        else:
            y = F.linear(a.flatten(1), w, b)
        x = F.relu(y) if q.relu else y
    return x, input_codes, hidden


# ----------------------------------------------------------------------------
# Integer reference (exact int64 math, float64 round-half-even requant)

def _conv_int(a: np.ndarray, w: np.ndarray, stride, padding) -> np.ndarray:
    """a: [N, C, H, W] int64 codes, w: [O, C, KH, KW] int64 -> [N, O, OH, OW] int64 (exact)."""
    n, c, h, wd = a.shape
    o, _, kh, kw = w.shape
    ph, pw = padding
    sh, sw = stride
    ap = np.zeros((n, c, h + 2 * ph, wd + 2 * pw), dtype=np.int64)
    ap[:, :, ph:ph + h, pw:pw + wd] = a
    oh, ow = _conv_out(h, kh, sh, ph), _conv_out(wd, kw, sw, pw)
    out = np.zeros((n, o, oh, ow), dtype=np.int64)
    for ky in range(kh):
        for kx in range(kw):
            patch = ap[:, :, ky:ky + sh * (oh - 1) + 1:sh, kx:kx + sw * (ow - 1) + 1:sw]  # [N, C, OH, OW]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, ky, kx])
    return out


def integer_forward(model_json: dict, input_codes: np.ndarray):
    """The integer reference: exactly the semantics of docs/model-format.md.
    acc = sum(w*a) + bias (int64, exact); hidden layers:
    out = clamp(round_half_even(f64(acc) * M), lo, hi) with
    M = (f64(s_w) * f64(s_a)) / f64(s_out) and lo = 0 when relu.
    This requant is an approximation of the hardware requant (which is defined
    by the datapath docs). Returns (logits int64 [N, K], hidden codes list)."""
    layers = model_json["layers"]
    n = input_codes.shape[0]
    a = input_codes.astype(np.int64).reshape([n] + model_json["input"]["shape"])
    hidden = []
    for i, L in enumerate(layers):
        w = np.array(L["weight"]["codes"], dtype=np.int64).reshape(L["weight"]["shape"])
        bias = np.array(L["bias"], dtype=np.int64)
        if L["type"] == "conv2d":
            acc = _conv_int(a, w, L["stride"], L["padding"]) + bias[None, :, None, None]
        else:
            acc = a.reshape(n, -1) @ w.T + bias[None, :]
        if i == len(layers) - 1:
            return acc, hidden
        nxt = layers[i + 1]["input_quant"]
        m = (np.float64(L["weight"]["step"]) * np.float64(L["input_quant"]["step"])) / np.float64(nxt["step"])
        lo, hi = qrange(nxt["bits"], nxt["signed"])
        if L["relu"]:
            lo = max(lo, 0)
        a = np.clip(np.rint(acc.astype(np.float64) * m), lo, hi).astype(np.int64)
        hidden.append(a)
    raise ValueError("model has no layers")


def _check_integer_reference(model_json: dict, input_codes: np.ndarray, logits: np.ndarray):
    """Independent cross-check of the accumulators: torch float64 conv/linear
    on the integer codes is exact for these magnitudes (< 2^53)."""
    layers = model_json["layers"]
    n = input_codes.shape[0]
    a = torch.tensor(input_codes, dtype=torch.float64).reshape([n] + model_json["input"]["shape"])
    for i, L in enumerate(layers):
        w = torch.tensor(L["weight"]["codes"], dtype=torch.float64).reshape(L["weight"]["shape"])
        b = torch.tensor(L["bias"], dtype=torch.float64)
        if L["type"] == "conv2d":
            acc = F.conv2d(a, w, b, stride=tuple(L["stride"]), padding=tuple(L["padding"]))
        else:
            acc = F.linear(a.flatten(1), w, b)
        if i == len(layers) - 1:
            assert np.array_equal(acc.numpy().astype(np.int64), logits), "integer reference self-check failed"
            return
        nxt = layers[i + 1]["input_quant"]
        m = (float(L["weight"]["step"]) * float(L["input_quant"]["step"])) / float(nxt["step"])
        lo, hi = qrange(nxt["bits"], nxt["signed"])
        lo = max(lo, 0) if L["relu"] else lo
        a = torch.clamp(torch.round(acc * m), lo, hi)


# ----------------------------------------------------------------------------
# Data and file writing

def load_csv(path: str):
    """Read a digits CSV (header `label,p0..p63`) -> (labels int64 [N], pixels int64 [N, 64])."""
    with open(path) as f:
        header = f.readline().strip()
        assert header == "label," + ",".join(f"p{i}" for i in range(64)), header
        rows = [list(map(int, line.split(","))) for line in f if line.strip()]
    arr = np.array(rows, dtype=np.int64)
    return arr[:, 0], arr[:, 1:]


def sha256_file(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def argmax_first(x: np.ndarray) -> np.ndarray:
    """argmax along the last axis; the lowest index wins ties (numpy's rule)."""
    return np.argmax(x, axis=-1)


def _dumps(obj, indent=0) -> str:
    """Deterministic JSON: objects one key per line, lists of scalars on one
    line, lists of lists one inner list per line (readable, compact diffs)."""
    pad = " " * indent
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f'{pad} {json.dumps(k)}: {_dumps(v, indent + 1)}' for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list):
        if obj and all(isinstance(v, (list, dict)) for v in obj):
            items = [pad + " " + _dumps(v, indent + 1) for v in obj]
            return "[\n" + ",\n".join(items) + "\n" + pad + "]"
        return "[" + ",".join(json.dumps(v, allow_nan=False) for v in obj) + "]"
    return json.dumps(obj, allow_nan=False)


def write_json(path: str, obj):
    """Write `obj` as deterministic JSON atomically (temp file + rename)."""
    text = _dumps(obj)
    json.loads(text)  # self-check: valid JSON
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text + "\n")
    os.replace(tmp, path)


def _rows(a) -> List[list]:
    return [list(map(int, r)) for r in a]


def export_all(model_path: str, name: str, description: str, qlayers: Sequence[QLayer], input_shape,
               input_scale: float, raw_range, test_csv: str, float_logits: torch.Tensor,
               model_logits: Optional[torch.Tensor] = None, training: Optional[dict] = None) -> dict:
    """Write `<model>.json` and `<model>.ref.json` (next to it). `float_logits`
    are the float (unquantized) model's logits on the test split, for the
    float accuracy; `model_logits`, if given, are the user's own fake-quant
    module's logits, which must equal the exported chain's fake-quant logits
    bit for bit (a check that the export describes the trained model)."""
    m = build_model_json(name, description, qlayers, input_shape, input_scale, raw_range, training)
    write_json(model_path, m)
    labels, pixels = load_csv(test_csv)
    n = len(labels)
    raw = torch.tensor(pixels, dtype=torch.float32).reshape([n] + list(input_shape))
    with torch.no_grad():
        fq_logits, in_codes, fq_hidden = fake_quant_forward(qlayers, raw, input_scale)
    if model_logits is not None:
        if not torch.equal(model_logits.to(torch.float32), fq_logits):
            diff = (model_logits - fq_logits).abs().max().item()
            raise AssertionError(f"exported chain differs from the model's own forward (max |diff| {diff})")
    in_codes_np = in_codes.to(torch.int64).reshape(n, -1).numpy()
    int_logits, int_hidden = integer_forward(m, in_codes_np)
    _check_integer_reference(m, in_codes_np, int_logits)
    fq_np = fq_logits.numpy().astype(np.float32)
    fq_pred = argmax_first(fq_np)
    int_pred = argmax_first(int_logits)
    fl_pred = argmax_first(float_logits.detach().numpy())
    agree = int(np.sum(fq_pred == int_pred))
    ref_dir = os.path.dirname(os.path.abspath(model_path))
    hidden_names = [q.name for q in qlayers[:-1]]
    ref = {
        "format": REF_FORMAT,
        "model": name,
        "model_file": os.path.basename(model_path),
        "model_sha256": sha256_file(model_path),
        "data_file": os.path.relpath(os.path.abspath(test_csv), ref_dir),
        "data_sha256": sha256_file(test_csv),
        "samples": n,
        "labels": labels.tolist(),
        "float_accuracy": float(np.mean(fl_pred == labels)),
        "fake_quant": {
            "accuracy": float(np.mean(fq_pred == labels)),
            "predictions": fq_pred.tolist(),
            "logits": [[float(v) for v in r] for r in fq_np],
            "hidden_codes": [
                {"layer": hn, "codes": _rows(h.to(torch.int64).reshape(n, -1).numpy())}
                for hn, h in zip(hidden_names, fq_hidden)
            ],
        },
        "integer": {
            "requant": "f64-round-half-even",
            "note": "exact int64 accumulation; hidden outputs clamp(round_half_even(f64(acc) * M)) with "
                    "M = (f64(s_w) * f64(s_a)) / f64(s_out): an approximation of the hardware requant, "
                    "which the datapath docs define",
            "accuracy": float(np.mean(int_pred == labels)),
            "predictions": int_pred.tolist(),
            "logits": _rows(int_logits),
        },
        "agreement": {"matching_predictions": agree, "fraction": agree / n},
        "input_codes": _rows(in_codes_np),
    }
    ref_path = model_path[:-len(".json")] + ".ref.json"
    write_json(ref_path, ref)
    return {"float_accuracy": ref["float_accuracy"], "fake_quant_accuracy": ref["fake_quant"]["accuracy"],
            "integer_accuracy": ref["integer"]["accuracy"], "agreement": agree, "samples": n,
            "fq_vs_int_hidden_code_max_diff": [int(np.abs(h.to(torch.int64).reshape(n, -1).numpy() - ih.reshape(n, -1)).max())
                                             for h, ih in zip(fq_hidden, int_hidden)]}
