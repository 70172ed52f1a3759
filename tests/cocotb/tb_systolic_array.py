"""cocotb testbench: tests/rtl/systolic_array.v (runtime-configured) against bitmac, cycle by cycle.

For random configurations (dataflow, signedness, accumulator width and overflow mode, psum drop
bits, rounding mode and centre offset) and random matrices (a share of them at the code
extremes, so narrow accumulators overflow and saturate), the testbench loads A and W through
the host port, starts the GEMM and, after every cycle, compares the RTL's writebacks (column,
output index, new buffer value) with the writebacks the cycle engine's per-cycle trace
(bitmac.gemm_trace) lists for that cycle; then the cycle count and every final accumulator
(B * 2^d) with bitmac.gemm(stage="acc").
"""

import json
import os
import random

import numpy as np

import cocotb
from cocotb.triggers import ReadOnly, Timer

import bitmac

P = json.loads(os.environ["TB_PARAMS"])
GEMMS = int(os.environ.get("TB_GEMMS", "12"))
DF = {"ws": 0, "is": 1, "os": 2}


def rand_cfg(rng):
    p = rng.choice([6, 8, 10, 12, 16, 20, 32, 40])
    d = rng.choice([0, 0, 1, 2, 3, 4]) if p > 8 else rng.choice([0, 1, 2])
    d = min(d, p - 1, 65 - p)
    mode = rng.choice(bitmac.ROUND_MODES)
    if d == 0:
        off = 0
    elif mode.startswith("TRN"):
        off = rng.randint(-(2**d - 1), 2**d - 1)
    else:
        off = rng.randint(-(2 ** (d - 1)), 2 ** (d - 1) - 1)
    return {
        "array": {"rows": P["R"], "cols": P["C"], "dataflow": rng.choice(["ws", "is", "os"])},
        "weights": {"bits": 8, "signed": rng.random() < 0.7},
        "activations": {"bits": 8, "signed": rng.random() < 0.5},
        "accumulator": {"bits": p, "overflow": rng.choice(bitmac.OVERFLOW_MODES)},
        "psum": {"drop_bits": d, "rounding": mode, "offset": off},
        "requant": {"rounding": "double", "relu": False, "out_bits": 8, "out_signed": True},
        "clock": {"period_ps": 1000},
    }


def codes(rng, shape, signed):
    lo, hi = (-128, 127) if signed else (0, 255)
    x = np.array([[rng.randint(lo, hi) for _ in range(shape[1])] for _ in range(shape[0])], dtype=np.int64)
    if rng.random() < 0.5:  # extremes: overflow and saturation
        mask = np.array([[rng.random() < 0.6 for _ in range(shape[1])] for _ in range(shape[0])])
        x[mask] = lo if signed and rng.random() < 0.5 else hi
    return x


async def edge(dut):
    await Timer(1, unit="ns")
    dut.clk.value = 1
    await ReadOnly()


async def fall(dut):
    await Timer(1, unit="ns")
    dut.clk.value = 0


@cocotb.test()
async def systolic_array_matches_bitmac(dut):
    rng = random.Random(P["SEED"])
    dut.clk.value = 0
    for s in ("start", "mem_we", "mem_sel", "mem_addr", "mem_data"):
        getattr(dut, s).value = 0
    total_wb = total_ovf = 0
    for g in range(GEMMS):
        spec = rand_cfg(rng)
        hw = bitmac.HwConfig(spec)
        m, k, n = rng.randint(1, 7), rng.randint(1, 9), rng.randint(1, 7)
        a = codes(rng, (m, k), spec["activations"]["signed"])
        w = codes(rng, (k, n), spec["weights"]["signed"])
        acc, stats, trace = bitmac.gemm_trace(hw, a, w, stage="acc")
        want_wb = {}
        for c in trace:
            want_wb[c.cycle] = sorted((col, mm * n + nn, b) for col, mm, nn, _, b in c.writebacks)
        d = spec["psum"]["drop_bits"]
        # Reset, configure, load the memories.
        dut.rst.value = 1
        for _ in range(2):
            await edge(dut)
            await fall(dut)
        dut.rst.value = 0
        dut.cfg_df.value = DF[spec["array"]["dataflow"]]
        dut.cfg_a_signed.value = int(spec["activations"]["signed"])
        dut.cfg_w_signed.value = int(spec["weights"]["signed"])
        dut.cfg_p.value = spec["accumulator"]["bits"]
        dut.cfg_ovf.value = bitmac.OVERFLOW_MODES.index(spec["accumulator"]["overflow"])
        dut.cfg_d.value = d
        dut.cfg_rmode.value = bitmac.ROUND_MODES.index(spec["psum"]["rounding"])
        dut.cfg_offset.value = spec["psum"]["offset"] & (2**64 - 1)
        dut.cfg_m.value, dut.cfg_k.value, dut.cfg_n.value = m, k, n
        for sel, mat in ((0, a), (1, w)):
            for i, v in enumerate(mat.reshape(-1).tolist()):
                dut.mem_we.value, dut.mem_sel.value, dut.mem_addr.value = 1, sel, i
                dut.mem_data.value = v & 0xFFFF
                await edge(dut)
                await fall(dut)
        dut.mem_we.value = 0
        dut.start.value = 1
        await edge(dut)
        await fall(dut)
        dut.start.value = 0
        final = {}
        cyc = 0
        while True:
            await edge(dut)
            got = []
            valid = dut.wb_valid.value.to_unsigned()
            # Lanes of idle columns may hold x: decode only the valid ones.
            addr, vals = str(dut.wb_addr.value), str(dut.wb_value.value)
            for col in range(P["C"]):
                if valid >> col & 1:
                    ad = int(addr[len(addr) - 32 * (col + 1):len(addr) - 32 * col], 2)
                    b = int(vals[len(vals) - 64 * (col + 1):len(vals) - 64 * col], 2)
                    b = b - 2**64 if b >> 63 else b
                    got.append((col, ad, b))
                    final[ad] = b
            got.sort()
            assert got == want_wb.get(cyc, []), (
                f"GEMM {g} ({spec['array']['dataflow']}, {m}x{k}x{n}, P={spec['accumulator']['bits']} "
                f"{spec['accumulator']['overflow']}, d={d} {spec['psum']['rounding']} c={spec['psum']['offset']}): "
                f"cycle {cyc}: RTL writebacks (col, m*N+n, B) {got}, bitmac {want_wb.get(cyc, [])}")
            total_wb += len(got)
            done = int(dut.done.value)
            await fall(dut)
            if done:
                break
            cyc += 1
            assert cyc <= stats["cycles"] + 4, f"GEMM {g}: RTL still running after bitmac's {stats['cycles']} cycles"
        assert cyc + 1 == stats["cycles"] == dut.cycles.value.to_unsigned(), f"GEMM {g}: cycle count"
        assert {i: v << d for i, v in final.items()} == {i: int(v) for i, v in enumerate(acc.reshape(-1))}
        total_ovf += stats["overflows"]
    dut._log.info(f"{GEMMS} GEMMs match cycle by cycle: {total_wb} writebacks, {total_ovf} overflows")
    assert total_ovf > 0, "the stimulus overflows some accumulators"
