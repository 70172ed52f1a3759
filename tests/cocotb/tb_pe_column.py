"""cocotb testbench: tests/rtl/pe_column.v against bitmac.gemm, live.

The column is a K x 1 weight-stationary array with a P-bit accumulator and overflow applied
at every adder, which is bitmac's array with rows = K, cols = 1, d = 0
(docs/datapath.md). Each pass loads random weights, streams M random activation rows with the
skew of pe_column_tb.v (A[m][k] reaches PE k at cycle 1+m+k, output m leaves after cycle m+K)
and compares every output (value and the OR of overflows along the chain) with
bitmac.gemm(stage="acc") on that one row, called as the output appears.
"""

import json
import os
import random

import numpy as np

import cocotb
from cocotb.triggers import ReadOnly, Timer

import bitmac

P = json.loads(os.environ["TB_PARAMS"])
PASSES = int(os.environ.get("TB_PASSES", "12"))


def rand_code(rng, w, signed):
    if rng.random() < 0.3:  # extremes, so narrow accumulators overflow
        return -(1 << (w - 1)) if signed else (1 << w) - 1
    return rng.randint(-(1 << (w - 1)), (1 << (w - 1)) - 1) if signed else rng.randint(0, (1 << w) - 1)


@cocotb.test()
async def pe_column_matches_bitmac(dut):
    rng = random.Random(P["SEED"])
    k, aw, ww, accw = P["K"], P["AW"], P["WW"], P["ACCW"]
    hw = bitmac.HwConfig("default")
    for path, v in [("array.rows", k), ("array.cols", 1), ("array.dataflow", "ws"),
                    ("weights.bits", ww), ("weights.signed", bool(P["W_SIGNED"])),
                    ("activations.bits", aw), ("activations.signed", bool(P["A_SIGNED"])),
                    ("accumulator.bits", accw), ("accumulator.overflow", bitmac.OVERFLOW_MODES[P["OVF"]]),
                    ("psum.drop_bits", 0)]:
        hw.set(path, v)
    dut.clk.value = 0
    checked = overflowed = 0
    for _ in range(PASSES):
        m_rows = rng.randint(1, 8)
        w = [rand_code(rng, ww, P["W_SIGNED"]) for _ in range(k)]
        a = [[rand_code(rng, aw, P["A_SIGNED"]) for _ in range(k)] for _ in range(m_rows)]
        w_bits = sum((w[i] & ((1 << ww) - 1)) << (i * ww) for i in range(k))
        for e in range(m_rows + k):
            dut.load.value = int(e == 0)
            dut.w_in.value = w_bits
            a_bits = 0
            for i in range(k):
                m = e - 1 - i
                if 0 <= m < m_rows:
                    a_bits |= (a[m][i] & ((1 << aw) - 1)) << (i * aw)
            dut.a_in.value = a_bits
            await Timer(1, unit="ns")
            dut.clk.value = 1
            await ReadOnly()
            m = e - k
            if 0 <= m < m_rows:
                acc, st = bitmac.gemm(hw, np.array([a[m]]), np.array([w]).T, stage="acc")
                want = (int(acc[0, 0]) & ((1 << accw) - 1), int(st["overflows_array"] > 0))
                got = (dut.psum_out.value.to_unsigned(), int(dut.ovf_out.value))
                assert got == want, f"a={a[m]} w={w}: RTL (psum, ovf)={got}, bitmac {want}"
                checked += 1
                overflowed += want[1]
            await Timer(1, unit="ns")
            dut.clk.value = 0
    dut._log.info(f"{checked} outputs match ({overflowed} with overflow)")
