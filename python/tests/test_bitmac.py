"""Tests of the Python package against the CLI (bit for bit), the committed PyTorch LSQ
references, and independent transcriptions of the normative docs.

The CLI binary is $BITMAC_BIN, else target/release/bitmac (built with `cargo build --release`
if missing). Run from anywhere: `python3 -m pytest python/tests`.
"""

import json
import os
import re
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

import bitmac

ROOT = Path(__file__).resolve().parents[2]


def cli_bin() -> str:
    b = os.environ.get("BITMAC_BIN")
    if b:
        return b
    p = ROOT / "target" / "release" / "bitmac"
    if not p.exists():
        subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "bitmac"], cwd=ROOT, check=True)
    return str(p)


def cli(*args, check=True):
    r = subprocess.run([cli_bin(), *map(str, args)], cwd=ROOT, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise AssertionError(f"bitmac {' '.join(map(str, args))}: exit {r.returncode}: {r.stderr}")
    return r


def rand_fmt(rng, shape, bits, signed):
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    return rng.integers(lo, hi + 1, size=shape, dtype=np.int64)


# Presets with distinct arithmetic: psum rounding with an offset, a narrow saturating
# accumulator, WRAP, os/is dataflows, a cdc domain crossing.
GEMM_PRESETS = ["default", "psum-round-offset", "narrow-acc", "wrap16", "os", "is", "cdc", "double-relu"]


@pytest.mark.parametrize("preset", GEMM_PRESETS)
def test_gemm_reproduces_the_cli_bit_for_bit(tmp_path, preset):
    hw = bitmac.HwConfig(preset)
    spec = hw.to_dict()
    rng = np.random.default_rng(zlib.crc32(preset.encode()))
    m, k, n = int(rng.integers(1, 40)), int(rng.integers(1, 50)), int(rng.integers(1, 30))
    a = rand_fmt(rng, (m, k), spec["activations"]["bits"], spec["activations"]["signed"])
    w = rand_fmt(rng, (k, n), spec["weights"]["bits"], spec["weights"]["signed"])
    bias = rng.integers(-5000, 5000, size=n, dtype=np.int64).astype(np.int32)
    np.save(tmp_path / "a.npy", a.astype(np.int16))
    np.save(tmp_path / "w.npy", w.astype(np.int16))
    np.save(tmp_path / "b.npy", bias)
    hw_path = ROOT / "models" / "hw" / f"{preset}.json"
    for stage in ["out", "acc"]:
        for engine in ["fast", "cycle"]:
            args = ["gemm", "--hw", hw_path, "--a", tmp_path / "a.npy", "--w", tmp_path / "w.npy",
                    "--out", tmp_path / "o.npy", "--stage", stage, "--engine", engine,
                    "--bias", tmp_path / "b.npy", "--stats", tmp_path / "s.json", "--multiplier", "0.0123"]
            if engine == "cycle":
                args += ["--trace", tmp_path / "t.txt"]
            cli(*args)
            want = np.load(tmp_path / "o.npy")
            got, stats = bitmac.gemm(hw, a, w, bias=bias, stage=stage, engine=engine, multiplier=0.0123)
            assert got.dtype == want.dtype and got.shape == want.shape
            assert got.tobytes() == want.tobytes(), f"{preset} {stage} {engine}"
            want_stats = json.loads((tmp_path / "s.json").read_text())
            stats.pop("cdc_summary", None)
            assert stats == want_stats
            if engine == "cycle":
                got2, _, trace = bitmac.gemm_trace(hw, a, w, bias=bias, stage=stage, multiplier=0.0123)
                assert got2.tobytes() == want.tobytes()
                assert trace.text == (tmp_path / "t.txt").read_text()
                assert len(trace) == stats["cycles"], "one trace line per cycle"
                assert trace.header["M"] == str(m) and trace.header["dataflow"] == spec["array"]["dataflow"]


def test_gemm_scales_and_trace_fields(tmp_path):
    hw = bitmac.HwConfig("default").set("array.rows", 4).set("array.cols", 3).set("accumulator.bits", 12)
    hw.set("accumulator.overflow", "SAT")
    a = np.full((3, 9), 127, dtype=np.int8)
    w = np.full((9, 2), 127, dtype=np.int8)
    out1, _ = bitmac.gemm(hw, a, w, scales=(0.01, 0.02, 0.5))
    out2, _ = bitmac.gemm(hw, a, w, multiplier=bitmac.layer_multiplier(0.01, 0.02, 0.5))
    assert np.array_equal(out1, out2)
    acc, st, tr = bitmac.gemm_trace(hw, a, w, stage="acc")
    assert st["overflows"] > 0
    assert (acc == 2047).all(), "12-bit SAT accumulators saturate at 2^11 - 1"
    ovf = [o for c in tr for o in c.overflows]
    assert len(ovf) == st["overflows"]
    wbs = [wb for c in tr for wb in c.writebacks]
    assert {(m, n) for _, m, n, _, _ in wbs} == {(i, j) for i in range(3) for j in range(2)}
    assert any(c.kind == "load" for c in tr) and any(c.values("in") for c in tr)


def test_user_errors_raise_value_error_with_the_cli_message(tmp_path):
    bad = {"array": {"rows": 0, "cols": 4, "dataflow": "ws"}}
    spec = bitmac.HwConfig("default").to_dict()
    spec["accumulator"]["bits"] = 70
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(spec))
    np.save(tmp_path / "a.npy", np.zeros((2, 2), np.int8))
    r = cli("gemm", "--hw", p, "--a", tmp_path / "a.npy", "--w", tmp_path / "a.npy", "--out", tmp_path / "o.npy",
            "--multiplier", "1", check=False)
    assert r.returncode == 2
    cli_msg = r.stderr.strip().removeprefix("bitmac: ")
    with pytest.raises(ValueError) as e:
        bitmac.HwConfig(str(p))
    assert str(e.value) == cli_msg
    assert "accumulator.bits: 70 is out of range (allowed: 2..=64)" in cli_msg
    with pytest.raises(ValueError, match=r"weights: missing \(a required field\)"):
        bitmac.HwConfig(bad)
    hw = bitmac.HwConfig("default")
    with pytest.raises(ValueError, match=r"^models/hw/default.json: psum.drop_bits: 40 is out of range \(allowed: 0..=31\)$"):
        hw.set("psum.drop_bits", 40)
    assert hw.to_dict()["psum"]["drop_bits"] == 0, "a failed set leaves the config unchanged"
    with pytest.raises(ValueError, match=r"^A\[0,1\]: 300 is out of range"):
        bitmac.gemm(hw, np.array([[0, 300]]), np.zeros((2, 2), np.int64), multiplier=1.0)
    with pytest.raises(ValueError, match="--stage out needs the requant multiplier"):
        bitmac.gemm(hw, np.zeros((2, 2), np.int8), np.zeros((2, 2), np.int8))
    with pytest.raises(ValueError, match=r'^--stage: "x" is out of range \(allowed: out, acc\)'):
        bitmac.gemm(hw, np.zeros((2, 2), np.int8), np.zeros((2, 2), np.int8), stage="x")
    with pytest.raises(ValueError, match=r"raise the limit with --max-work N"):
        bitmac.gemm(hw, np.zeros((8, 8), np.int8), np.zeros((8, 8), np.int8), stage="acc", max_work=100)
    with pytest.raises(ValueError, match="integer array"):
        bitmac.gemm(hw, np.zeros((2, 2)), np.zeros((2, 2), np.int8), multiplier=1.0)
    with pytest.raises(ValueError, match="neither a file nor a preset"):
        bitmac.HwConfig("no-such-preset")
    with pytest.raises(ValueError, match=r"^psum: .*offset|offset"):
        bitmac.round([1], 2, "RND", 5)
    with pytest.raises(ValueError):
        bitmac.narrow([1], 3, True, "CLAMP")


def test_presets_are_the_shipped_files():
    assert set(bitmac.PRESETS) == {p.stem for p in (ROOT / "models" / "hw").glob("*.json")}
    for name in bitmac.PRESETS:
        assert bitmac.HwConfig(name).to_dict() == bitmac.HwConfig(ROOT / "models" / "hw" / f"{name}.json").to_dict()


def tie_table():
    """The tie table of docs/numerics.md (k = 1, c = 0): mode -> results for x = -5,-3,-1,1,3,5."""
    text = (ROOT / "docs" / "numerics.md").read_text()
    body = text.split("<!-- tie-table -->")[1].split("<!-- end tie-table -->")[0]
    rows = {}
    for line in body.strip().splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0].strip("`")] = [int(c) for c in cells[1:]]
    return rows


def test_round_matches_the_docs_tie_table_and_definitions():
    table = tie_table()
    assert set(table) == set(bitmac.ROUND_MODES)
    x = np.array([-5, -3, -1, 1, 3, 5])
    for mode, want in table.items():
        assert bitmac.round(x, 1, mode).tolist() == want, mode
        info = bitmac.round_info(x, 1, mode)
        pos_want = 0 if mode.startswith("TRN") else 1  # truncation has no ties at c = 0
        assert (info["position"] == pos_want).all(), mode
        assert (info["error"] == info["value"] * 2 - x).all()
    # Definitions of docs/numerics.md with an offset, written independently here.
    rng = np.random.default_rng(5)
    xs = rng.integers(-(1 << 40), 1 << 40, size=3000)
    for k in [1, 3, 7]:
        n = 1 << k
        for c in [-(n // 2), 0, n // 2 - 1]:
            got = bitmac.round(xs, k, "RND", c)
            want = [(int(v) - c + (n >> 1)) >> k for v in xs]  # RND: (x - c + 2^(k-1)) >> k
            assert got.tolist() == want
            got = bitmac.round(xs, k, "TRN", c)
            assert got.tolist() == [(int(v) + c) >> k for v in xs]  # TRN: floor((x + c) / n)


def test_narrow_matches_the_overflow_table():
    x = np.arange(-300, 300)
    for signed in [True, False]:
        bits = 7
        lo, hi = (-64, 63) if signed else (0, 127)
        for mode in bitmac.OVERFLOW_MODES:
            v, o = bitmac.narrow(x, bits, signed, mode)
            for xi, vi, oi in zip(x.tolist(), v.tolist(), o.tolist()):
                if mode == "WRAP":
                    want = (xi - lo) % 128 + lo
                elif mode == "SAT":
                    want = min(max(xi, lo), hi)
                elif mode == "SAT_ZERO":
                    want = xi if lo <= xi <= hi else 0
                else:
                    slo = -hi if signed else 0
                    want = min(max(xi, slo), hi)
                assert vi == want and oi == (vi != xi), (mode, signed, xi)


def ref_requant(x, m0, shift, scheme, lo, hi):
    """docs/requant.md, transcribed with Python's exact integers."""
    if scheme == "double":
        left, right = max(shift, 0), max(-shift, 0)
        ab = (x << left) * m0
        nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
        t = ab + nudge
        high = t // (1 << 31) if t >= 0 else -((-t) // (1 << 31))  # trunc toward zero
        mask = (1 << right) - 1
        rem = high & mask
        thr = (mask >> 1) + (1 if high < 0 else 0)
        y = (high >> right) + (1 if rem > thr else 0)
    else:
        t = 31 - shift
        y = (x * m0 + (1 << (t - 1))) >> t
    return min(max(y, lo), hi)


def test_requant_matches_the_docs_formulas():
    rng = np.random.default_rng(7)
    x = rng.integers(-(1 << 33), 1 << 33, size=4000)
    x[:7] = [0, 1, -1, 2**31 - 1, -(2**31), 12345, -12345]
    for mult in [0.0123, 0.75, 3.5, 1e-7]:
        m0, shift = bitmac.quantize_multiplier(mult)
        for scheme in ["double", "single"]:
            for bits, signed, relu in [(8, True, False), (8, False, False), (16, True, True)]:
                lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
                lo = max(lo, 0) if relu else lo
                codes, clamped = bitmac.requant(x, mult, scheme, bits, signed, relu)
                want = [ref_requant(int(v), m0, shift, scheme, lo, hi) for v in x]
                assert codes.tolist() == want, (mult, scheme, bits)
    assert bitmac.quantize_multiplier(0.5) == (1 << 30, 0)


def f32(h):
    return struct.unpack(">f", bytes.fromhex(h))[0]


@pytest.mark.parametrize("name", ["seed_act", "seed_weight", "paper_act", "paper_weight"])
def test_lsq_matches_the_pytorch_references(name):
    d = json.loads((ROOT / "testvectors" / "lsq" / f"{name}.json").read_text())
    assert d["cases"]
    for c in d["cases"]:
        x = np.array([f32(v) for v in c["x"]], dtype=np.float32)
        g = np.array([f32(v) for v in c["grad_y"]], dtype=np.float32)
        step = f32(c["step"])
        y, code = bitmac.lsq_forward(x, c["kind"], c["nbit"], step, variant=c["variant"])
        assert [f"{v:08x}" for v in y.view(np.uint32).tolist()] == c["y"], c["name"]
        assert code.tolist() == c["code"], c["name"]
        gx, gs = bitmac.lsq_backward(x, g, c["kind"], c["nbit"], step, variant=c["variant"])
        assert [f"{v:08x}" for v in gx.view(np.uint32).tolist()] == c["grad_x"], c["name"]
        # grad_s is a float32 sum whose order differs from torch's (testvectors/lsq/README.md):
        # within the float32 summation bound of the sum of |terms|.
        bound = abs(f32(c["grad_s_abs_terms"])) * len(x) * 2.0**-23 + 1e-30
        assert abs(gs - f32(c["grad_s_exact_sum"])) <= bound, c["name"]


def test_async_fifo_replays_a_cli_trace(tmp_path):
    for wclk, rclk, depth, sync, wen, ren in [(10000, 13700, 16, 2, 90, 80), (2000, 4000, 4, 3, 100, 60),
                                              (3000, 3000, 2, 2, 70, 100)]:
        t = tmp_path / "t.txt"
        cli("cdc", "--wclk-ps", wclk, "--rclk-ps", rclk, "--depth", depth, "--sync", sync, "--data-width", 8,
            "--words", 300, "--wen", wen, "--ren", ren, "--seed", 3, "--trace", t)
        lines = [ln.split() for ln in t.read_text().splitlines() if ln and not ln.startswith("#")]
        f = bitmac.AsyncFifo(depth, sync, 8)
        word = 0
        i = 0
        both = 0
        while i < len(lines):
            ln = lines[i]
            pair = i + 1 < len(lines) and lines[i + 1][0] == ln[0] and ln[1] == "W"
            if pair:
                pushed, popped = f.both_edges(ln[7] == "1", word % 256, lines[i + 1][7] == "1")
                got = [("W", pushed, None), ("R", None, popped)]
                both += 1
            elif ln[1] == "W":
                got = [("W", f.write_edge(ln[7] == "1", word % 256), None)]
            else:
                got = [("R", None, f.read_edge(ln[7] == "1"))]
            for j, (dom, pushed, popped) in enumerate(got):
                want = lines[i + j]
                assert want[1] == dom
                if dom == "W":
                    assert (want[6] != "-") == pushed
                    if pushed:
                        assert int(want[6]) == word % 256
                        word += 1
                else:
                    assert want[6] == ("-" if popped is None else str(popped))
                state = [str(int(f.wfull)), str(int(f.rempty)), f.wptr, f.rptr, f.wq_rptr, f.rq_wptr]
                want_state = [want[2], want[3], int(want[4], 16), int(want[5], 16), int(want[8], 16),
                              int(want[9], 16)]
                assert state == want_state, f"{t}: line {want}"
            i += len(got)
        assert word == 300
        if wclk == rclk:
            assert both > 0
    with pytest.raises(ValueError, match=r"^--depth: 3 is out of range"):
        bitmac.AsyncFifo(3, 2, 8)
    f = bitmac.AsyncFifo(4, 2, 4)
    with pytest.raises(ValueError, match=r"^data: 16 is out of range \(allowed: 0..=15"):
        f.write_edge(True, 16)
