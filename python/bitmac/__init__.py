"""bitmac: the bit-accurate golden model of a quantized accelerator datapath, in Python.

A thin layer over the Rust library (the same functions the ``bitmac`` CLI calls), made for
testbench scoreboards (cocotb) and scripts. NumPy arrays in and out. Every user error raises
``ValueError`` with the CLI's one-line message. Semantics: ``docs/datapath.md``,
``docs/numerics.md``, ``docs/requant.md``, ``docs/lsq.md``, ``docs/cdc.md``; this API:
``docs/abi.md`` ("Python").
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _native
from ._native import AsyncFifo

__version__ = _native.__version__

__all__ = [
    "HwConfig",
    "Model",
    "AsyncFifo",
    "Trace",
    "TraceCycle",
    "gemm",
    "gemm_trace",
    "round",
    "round_info",
    "narrow",
    "requant",
    "quantize_multiplier",
    "layer_multiplier",
    "lsq_forward",
    "lsq_backward",
    "ROUND_MODES",
    "OVERFLOW_MODES",
    "PRESETS",
]

#: The eight rounding modes (``docs/numerics.md``), in ``psum_round.v``'s ``MODE`` order.
ROUND_MODES = ("TRN", "TRN_ZERO", "RND", "RND_ZERO", "RND_MIN_INF", "RND_INF", "RND_CONV", "RND_CONV_ODD")
#: The four overflow modes, in ``psum_round.v``'s ``OVF`` order.
OVERFLOW_MODES = ("WRAP", "SAT", "SAT_ZERO", "SAT_SYM")

#: Names of the shipped hardware presets (``models/hw/*.json``, embedded), e.g. ``HwConfig("default")``.
PRESETS = tuple(_native.preset_names())


class HwConfig:
    """A validated hardware configuration (``docs/hw-config.md``).

    ``HwConfig(source)`` accepts a path to a JSON file, a ``dict`` in the JSON schema, or the
    name of a shipped preset (``PRESETS``, e.g. ``"default"``, ``"psum-round"``).
    """

    def __init__(self, source: Union[str, os.PathLike, Dict[str, Any]]):
        if isinstance(source, dict):
            self._hw = _native.HwConfig.from_json(json.dumps(source), "dict")
        elif isinstance(source, (str, os.PathLike)):
            path = os.fspath(source)
            if not os.path.exists(path) and os.sep not in path and not path.endswith(".json"):
                self._hw = _native.preset(path)  # a preset name (or the error listing them)
            else:
                self._hw = _native.HwConfig.load(path)
        else:
            raise ValueError(f"hw: expected a JSON path, a dict or a preset name, got {type(source).__name__}")

    def set(self, path: str, value: Any) -> "HwConfig":
        """Override one field as ``bitmac run --set PATH=VALUE`` does, re-validate (on error the
        config is unchanged); returns ``self``."""
        self._hw.set(path, json.dumps(value))
        return self

    def to_dict(self) -> Dict[str, Any]:
        """The config in its JSON form."""
        return json.loads(self._hw.to_json())

    @property
    def rows(self) -> int:
        return self._hw.rows

    @property
    def cols(self) -> int:
        return self._hw.cols

    @property
    def dataflow(self) -> str:
        return self._hw.dataflow

    @property
    def acc_bits(self) -> int:
        return self._hw.acc_bits

    def __repr__(self) -> str:
        return f"HwConfig({self._hw.what!r}: {self.rows}x{self.cols} {self.dataflow}, P={self.acc_bits})"


def _int64(x: Any, what: str, ndim: Optional[int] = None) -> np.ndarray:
    """Integer array -> C-contiguous little-endian int64 (every value must fit int64)."""
    arr = np.asarray(x)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{what}: expected an integer array, got dtype {arr.dtype}")
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{what} must be {ndim}-D, got shape {tuple(arr.shape)}")
    if arr.dtype.kind == "u" and arr.dtype.itemsize == 8 and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
        i = int(np.argmax(arr.reshape(-1) > np.iinfo(np.int64).max))
        raise ValueError(f"{what}[{i}]: {int(arr.reshape(-1)[i])} is out of range (allowed: int64)")
    return np.ascontiguousarray(arr, dtype="<i8")


def _f32(x: Any, what: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"{what}: expected a numeric array, got dtype {arr.dtype}")
    with np.errstate(over="ignore"):
        return np.ascontiguousarray(arr, dtype="<f4")


def _from_i64(b: bytes, shape: Sequence[int], dtype: Any = np.int64) -> np.ndarray:
    return np.frombuffer(b, dtype="<i8").reshape(shape).astype(dtype)


def _gemm(hw, a, w, bias, stage, engine, multiplier, scales, trace, max_work):
    if not isinstance(hw, HwConfig):
        hw = HwConfig(hw)
    a64 = _int64(a, "A", 2)
    w64 = _int64(w, "W", 2)
    b = None if bias is None else _int64(bias, "bias", 1).tobytes()
    if scales is not None:
        scales = tuple(float(s) for s in scales)
        if len(scales) != 3:
            raise ValueError("scales: expected (s_w, s_a, s_out)")
    vals, m, n, dtype, stats, tr, cdc = _native.gemm(
        hw._hw, a64.tobytes(), a64.shape, w64.tobytes(), w64.shape, b, stage, engine,
        None if multiplier is None else float(multiplier), scales, trace,
        *(() if max_work is None else (int(max_work),)),
    )
    out = _from_i64(vals, (m, n), np.dtype(dtype))
    st = json.loads(stats)
    if cdc is not None:
        st["cdc_summary"] = cdc
    return out, st, tr


def gemm(
    hw: Union[HwConfig, str, Dict[str, Any]],
    a: Any,
    w: Any,
    bias: Any = None,
    stage: str = "out",
    engine: str = "fast",
    multiplier: Optional[float] = None,
    scales: Optional[Tuple[float, float, float]] = None,
    max_work: Optional[int] = None,
) -> Tuple[np.ndarray, Dict[str, Any]]:
    """One integer GEMM ``A (M x K) x W (K x N)`` through the array, exactly as ``bitmac gemm``.

    ``stage="out"`` returns the requantized codes (needs ``multiplier`` M, or ``scales`` =
    ``(s_w, s_a, s_out)``); ``stage="acc"`` returns ``acc * 2^d`` before bias. The array's dtype
    is the one ``bitmac gemm`` writes (int8/16/32/64). Returns ``(array, stats)`` with the
    statistics of ``docs/datapath.md`` §6 (``bitmac gemm --stats``). ``max_work`` is
    ``bitmac gemm --max-work`` (``docs/limits.md``; default the CLI's).
    """
    out, st, _ = _gemm(hw, a, w, bias, stage, engine, multiplier, scales, False, max_work)
    return out, st


def gemm_trace(
    hw: Union[HwConfig, str, Dict[str, Any]],
    a: Any,
    w: Any,
    bias: Any = None,
    stage: str = "out",
    multiplier: Optional[float] = None,
    scales: Optional[Tuple[float, float, float]] = None,
    max_work: Optional[int] = None,
) -> Tuple[np.ndarray, Dict[str, Any], "Trace"]:
    """:func:`gemm` on the cycle engine, plus its per-cycle :class:`Trace` (``docs/datapath.md`` §7)."""
    out, st, tr = _gemm(hw, a, w, bias, stage, "cycle", multiplier, scales, True, max_work)
    return out, st, Trace(tr)


@dataclass
class TraceCycle:
    """One line of the per-cycle trace: ``<cycle> t<tile> <kind> key=value ...``."""

    cycle: int
    tile: int
    kind: str  # "load", "mac", "drain" or "wb"
    fields: Dict[str, str] = field(default_factory=dict)

    def values(self, key: str) -> List[Optional[int]]:
        """A comma-separated vector field (``in``, ``top``, ``w[r]``): ints, ``None`` for a bubble."""
        v = self.fields.get(key)
        if v is None:
            return []
        return [None if t == "." else int(t) for t in v.split(",")]

    @property
    def writebacks(self) -> List[Tuple[int, int, int, int, int]]:
        """``wb=``: (column, m, n, stored column sum S, buffer value B after the add)."""
        out = []
        for t in filter(None, self.fields.get("wb", "").split(";")):
            col, rest = t.split(":", 1)
            mn, sb = rest.split(":", 1)
            m, n = mn.split(",")
            s, b = sb.split(">")
            out.append((int(col), int(m), int(n), int(s), int(b)))
        return out

    @property
    def overflows(self) -> List[Tuple[int, int]]:
        """``ovf=``: (row, column) of every adder that overflowed (row R = psum-buffer adder)."""
        return [tuple(int(v) for v in t.split(",")) for t in filter(None, self.fields.get("ovf", "").split(";"))]


class Trace:
    """The cycle engine's per-cycle trace (``docs/datapath.md`` §7), parsed; ``text`` is the
    exact ``bitmac gemm --trace`` file content."""

    def __init__(self, text: str):
        self.text = text
        lines = text.splitlines()
        head = lines[0].split()
        if head[:3] != ["#", "bitmac", "trace"]:
            raise ValueError("trace: missing '# bitmac trace v1' header")
        self.header: Dict[str, str] = dict(t.split("=", 1) for t in head[4:])
        self.cycles: List[TraceCycle] = []
        for ln in lines[1:]:
            tok = ln.split()
            fields: Dict[str, str] = {}
            for t in tok[3:]:
                k, _, v = t.partition("=")
                fields[k] = v
            self.cycles.append(TraceCycle(int(tok[0]), int(tok[1][1:]), tok[2], fields))

    def __len__(self) -> int:
        return len(self.cycles)

    def __iter__(self) -> Iterator[TraceCycle]:
        return iter(self.cycles)

    def __getitem__(self, i: int) -> TraceCycle:
        return self.cycles[i]


def round_info(x: Any, k: int, mode: str = "RND", offset: int = 0) -> Dict[str, np.ndarray]:
    """Drop ``k`` LSBs of each value (``docs/numerics.md``) with a rounding ``mode`` and a
    rounding-centre ``offset``. Returns arrays ``value`` (exact, not narrowed), ``residue``
    (``x mod 2^k``), ``position`` (0 below, 1 at = tie, 2 above the centre), ``error``
    (``value * 2^k - x``)."""
    x64 = _int64(x, "x")
    v, r, p, e = _native.round(x64.tobytes(), int(k), mode, int(offset))
    return {
        "value": _from_i64(v, x64.shape),
        "residue": _from_i64(r, x64.shape),
        "position": _from_i64(p, x64.shape, np.int8),
        "error": _from_i64(e, x64.shape),
    }


def round(x: Any, k: int, mode: str = "RND", offset: int = 0) -> np.ndarray:  # noqa: A001
    """The rounded values of :func:`round_info` (int64)."""
    return round_info(x, k, mode, offset)["value"]


def narrow(x: Any, bits: int, signed: bool = True, mode: str = "WRAP") -> Tuple[np.ndarray, np.ndarray]:
    """Store each value into a ``bits``-bit (1..=64) format with an overflow ``mode``
    (``OVERFLOW_MODES``). Returns ``(values int64, overflowed bool)``."""
    x64 = _int64(x, "x")
    v, o = _native.narrow(x64.tobytes(), int(bits), bool(signed), mode)
    return _from_i64(v, x64.shape), _from_i64(o, x64.shape, np.bool_)


def requant(
    x: Any,
    multiplier: float,
    rounding: str = "double",
    out_bits: int = 8,
    out_signed: bool = True,
    relu: bool = False,
) -> Tuple[np.ndarray, np.ndarray]:
    """TFLite requantization (``docs/requant.md``) of accumulator-plus-bias values with the
    real ``multiplier`` (quantized to Q0.31 as TFLite does), ``rounding`` ``"double"`` or
    ``"single"``. Returns ``(codes int64, clamped bool)``."""
    x64 = _int64(x, "x")
    v, c = _native.requant(x64.tobytes(), float(multiplier), rounding, int(out_bits), bool(out_signed), bool(relu))
    return _from_i64(v, x64.shape), _from_i64(c, x64.shape, np.bool_)


def quantize_multiplier(multiplier: float) -> Tuple[int, int]:
    """TFLite ``QuantizeMultiplier``: ``(m0, shift)`` with ``M ~= m0 * 2^(shift - 31)``."""
    return _native.quantize_multiplier_q31(float(multiplier))


def layer_multiplier(s_w: float, s_a: float, s_out: float) -> float:
    """``M = f64(f32(s_a * s_w)) / f64(s_out)`` (TFLite's ``GetQuantizedConvolutionMultipler``)."""
    return _native.layer_multiplier(float(s_w), float(s_a), float(s_out))


def lsq_forward(x: Any, kind: str, nbit: int, step: float, variant: str = "seed") -> Tuple[np.ndarray, np.ndarray]:
    """LSQ quantizer forward (``docs/lsq.md``): ``kind`` ``"act"``/``"weight"``, ``variant``
    ``"seed"``/``"paper"``. ``x`` is converted to float32 first (as ``torch.tensor(x,
    dtype=torch.float32)``). Returns ``(y float32, code int32)``, bit-exact with PyTorch."""
    x32 = _f32(x, "x")
    y, c = _native.lsq_forward(x32.tobytes(), kind, variant, int(nbit), float(step))
    return np.frombuffer(y, dtype="<f4").reshape(x32.shape).copy(), _from_i64(c, x32.shape, np.int32)


def lsq_backward(
    x: Any, grad_y: Any, kind: str, nbit: int, step: float, variant: str = "seed"
) -> Tuple[np.ndarray, float]:
    """LSQ quantizer backward: ``(grad_x float32, grad_s)`` for the upstream gradient ``grad_y``."""
    x32 = _f32(x, "x")
    g32 = _f32(grad_y, "grad_y")
    gx, gs = _native.lsq_backward(x32.tobytes(), g32.tobytes(), kind, variant, int(nbit), float(step))
    return np.frombuffer(gx, dtype="<f4").reshape(x32.shape).copy(), gs


class Model:
    """A quantized model run through bitmac's one graph runner, as ``bitmac run`` runs it.

    ``Model.load(path)`` reads a ``bitmac-model/1`` JSON (the digits models), a
    ``bitmac-graph/1`` JSON, or an ONNX file (QONNX or QDQ; ``requant`` as ``bitmac run
    --requant``, ONNX only). Inputs are float32 samples in the CLI's units: raw pixel values for
    the JSON models (the rows of ``models/data/digits_test.csv`` without the label), the
    model's float input for ONNX (the ``.npy`` ``bitmac run --data`` reads); each is quantized
    by the model's own input rule.
    """

    def __init__(self, native: Any):
        self._m = native

    @classmethod
    def load(cls, path: Union[str, os.PathLike], requant: Optional[str] = None) -> "Model":
        return cls(_native.Model.load(os.fspath(path), requant))

    @property
    def format(self) -> str:
        """``"bitmac-model/1"``, ``"bitmac-graph/1"`` or ``"onnx"``."""
        return self._m.format

    @property
    def name(self) -> str:
        return self._m.name

    @property
    def input_shape(self) -> Tuple[int, ...]:
        """The per-sample input shape (without the batch dimension)."""
        return tuple(self._m.input_shape)

    def _samples(self, x: Any, what: str) -> np.ndarray:
        arr = _f32(x, what)
        n = self._m.input_len
        if arr.ndim < 2 or arr.shape[0] == 0 or int(np.prod(arr.shape[1:])) != n:
            raise ValueError(
                f"{what} shape {tuple(arr.shape)}: expected (N >= 1, {', '.join(map(str, self.input_shape))}) "
                f"or (N, {n})"
            )
        return arr

    def _hw(self, hw: Any) -> Any:
        if hw is None:
            return None
        return (hw if isinstance(hw, HwConfig) else HwConfig(hw))._hw

    def run(self, x: Any, hw: Any = None, engine: str = "fast", batch: int = 1) -> Dict[str, Any]:
        """Run every sample of ``x`` (shape ``(N, *input_shape)`` or ``(N, input_len)``).

        ``hw``: a ``HwConfig``, a path, a dict or a preset name; ``None`` is the CLI's default
        for the format (``models/hw/default.json``, ``models/hw/onnx.json`` for ONNX).
        Returns a dict: ``logits`` (N x classes int64, the output node's codes),
        ``predictions`` (N int64, argmax, lowest index on ties), ``stats`` (the array nodes'
        statistics merged in node order: ``bitmac run --json``'s ``total``), ``nodes`` (per
        node: ``name``, ``kind``, ``stats`` (array nodes, else ``None``), ``ppu``).
        ``batch`` is ``bitmac run --batch`` (samples per GEMM, default 1 as the CLI's): codes and
        predictions do not depend on it, the cycle counts do.
        """
        arr = self._samples(x, "x")
        logits, n, classes, preds, total, nodes = self._m.run(arr.tobytes(), self._hw(hw), engine, int(batch))
        return {
            "logits": _from_i64(logits, (n, classes)),
            "predictions": np.asarray(preds, dtype=np.int64),
            "stats": json.loads(total),
            "nodes": [
                {
                    "name": name,
                    "kind": kind,
                    "stats": None if st is None else json.loads(st),
                    "ppu": dict(zip(("outputs", "saturated", "overflows", "ties"), ppu)),
                }
                for name, kind, st, ppu in nodes
            ],
        }

    def dump(self, x_sample: Any, hw: Any = None, engine: str = "fast") -> List[Dict[str, Any]]:
        """One sample's values at every node, as ``bitmac run --dump DIR --sample I`` writes
        them: a list in execution order of dicts ``name``, ``kind``, ``inputs`` (one int64
        array per input, in the input tensor's shape), ``acc`` (array nodes: the hardware
        accumulators ``acc * 2^d + B'`` in the output shape, saturated to int64 as the dump's
        ``.acc.npy``; else ``None``) and ``output`` (the output codes)."""
        arr = _f32(x_sample, "x_sample")
        if arr.size != self._m.input_len:
            raise ValueError(f"x_sample: {arr.size} values, expected {self._m.input_len} (one sample)")
        nodes = self._m.dump(arr.tobytes(), self._hw(hw), engine)
        out = []
        for name, kind, ins, acc, oshape, o in nodes:
            out.append(
                {
                    "name": name,
                    "kind": kind,
                    "inputs": [_from_i64(b, tuple(sh)) for sh, b in ins],
                    "acc": None if acc is None else _from_i64(acc, tuple(oshape)),
                    "output": _from_i64(o, tuple(oshape)),
                }
            )
        return out

    def __repr__(self) -> str:
        return f"Model({self.name!r}, {self.format}, input {self.input_shape})"
