"""cocotb testbench: tests/rtl/psum_round.v against bitmac.round + bitmac.narrow, live.

Parameters come from $TB_PARAMS (JSON, the Verilog parameters of this build). Every cycle a
random x (biased towards ties, the range ends and overflow) is driven; after the edge the
registered y, ovf and pos are compared with the golden model's prediction for that x.
"""

import json
import os
import random

import cocotb
from cocotb.triggers import ReadOnly, Timer

import bitmac

P = json.loads(os.environ["TB_PARAMS"])
N = int(os.environ.get("TB_N", "1500"))


def to_signed(v, w):
    return v - (1 << w) if v >> (w - 1) else v


def draw(rng, w, k):
    r = rng.random()
    if r < 0.3 and k > 0:  # ties and near-ties: residue at the centre +-1
        q = rng.getrandbits(max(w - k, 1))
        c = (1 << (k - 1)) + P["OFFSET"] + rng.choice([-1, 0, 0, 1])
        return ((q << k) + c) & ((1 << w) - 1)
    if r < 0.4:
        return rng.choice([0, 1, (1 << w) - 1, 1 << (w - 1), (1 << (w - 1)) - 1])
    return rng.getrandbits(w)


@cocotb.test()
async def psum_round_matches_bitmac(dut):
    rng = random.Random(P["SEED"])
    iw, k, ow = P["IN_W"], P["K"], P["OUT_W"]
    mode = bitmac.ROUND_MODES[P["MODE"]]
    ovf_mode = bitmac.OVERFLOW_MODES[P["OVF"]]
    dut.clk.value = 0
    checked = ties = ovfs = 0
    for i in range(N):
        bits = draw(rng, iw, k)
        x = to_signed(bits, iw) if P["IN_SIGNED"] else bits
        dut.x.value = bits
        await Timer(1, unit="ns")
        dut.clk.value = 1
        await ReadOnly()
        # The golden model, one transaction at a time, as a scoreboard would call it.
        info = bitmac.round_info([x], k, mode, P["OFFSET"])
        y, o = bitmac.narrow(info["value"], ow, bool(P["OUT_SIGNED"]), ovf_mode)
        want_y = int(y[0]) & ((1 << ow) - 1)
        got = (dut.y.value.to_unsigned(), int(dut.ovf.value), dut.pos.value.to_unsigned())
        want = (want_y, int(o[0]), int(info["position"][0]))
        assert got == want, f"x={x} ({mode}, c={P['OFFSET']}, {ovf_mode}): RTL (y, ovf, pos)={got}, bitmac {want}"
        checked += 1
        ties += want[2] == 1
        ovfs += want[1]
        await Timer(1, unit="ns")
        dut.clk.value = 0
    dut._log.info(f"{checked} transactions match ({ties} ties, {ovfs} overflows)")
    if k > 0 and mode not in ("TRN", "TRN_ZERO"):
        assert ties > 0, "the draw hits ties"
