"""cocotb testbench: tests/rtl/async_fifo.v against bitmac.AsyncFifo, edge by edge, live.

The testbench makes both clocks itself (periods and phases from $TB_PARAMS, so edges
coincide when the periods are harmonic) and drives random enables and data. At every rising
edge it steps the golden model with the inputs the RTL sampled (write_edge, read_edge, or
both_edges at a coincident instant) and compares wfull, rempty, wptr, rptr, wq_rptr, rq_wptr
and each popped word (the RTL's show-ahead rdata before the edge) with the model.
"""

import json
import os
import random

import cocotb
from cocotb.triggers import ReadOnly, Timer

import bitmac

P = json.loads(os.environ["TB_PARAMS"])
EDGES = int(os.environ.get("TB_EDGES", "3000"))


@cocotb.test()
async def async_fifo_matches_bitmac(dut):
    rng = random.Random(P["SEED"])
    dw, depth, sync = P["DSIZE"], 1 << P["ASIZE"], P["SYNC"]
    wper, rper = P["WPER"], P["RPER"]
    model = bitmac.AsyncFifo(depth, sync, dw)
    for s in (dut.wclk, dut.rclk, dut.winc, dut.rinc, dut.wdata):
        s.value = 0
    dut.wrst_n.value = 0
    dut.rrst_n.value = 0
    await Timer(1, unit="ps")
    dut.wrst_n.value = 1
    dut.rrst_n.value = 1
    now = 1
    tw, tr = P["WPHASE"] + 10, P["RPHASE"] + 10
    wen = ren = 0
    wdata = 0
    pushes = pops = both = 0
    for _ in range(EDGES):
        t = min(tw, tr)
        await Timer(t - now, unit="ps")
        now = t
        wedge, redge = tw == t, tr == t
        rdata_before = dut.rdata.value
        if wedge:
            dut.wclk.value = 1
        if redge:
            dut.rclk.value = 1
        await ReadOnly()
        popped = None
        if wedge and redge:
            pushed, popped = model.both_edges(bool(wen), wdata, bool(ren))
            both += 1
        elif wedge:
            pushed = model.write_edge(bool(wen), wdata)
        else:
            popped = model.read_edge(bool(ren))
        if wedge:
            pushes += pushed
        if redge and popped is not None:
            pops += 1
            got = rdata_before.to_unsigned()
            assert got == popped, f"t={t}ps: RTL popped {got}, bitmac {popped}"
        got = (int(dut.wfull.value), int(dut.rempty.value), dut.wptr.value.to_unsigned(),
               dut.rptr.value.to_unsigned(), dut.wq_rptr.value.to_unsigned(), dut.rq_wptr.value.to_unsigned())
        want = (int(model.wfull), int(model.rempty), model.wptr, model.rptr, model.wq_rptr, model.rq_wptr)
        assert got == want, f"t={t}ps ({'W' if wedge else ''}{'R' if redge else ''}): RTL (wfull, rempty, wptr, rptr, wq_rptr, rq_wptr)={got}, bitmac {want}"
        await Timer(1, unit="ps")
        now += 1
        # New inputs for the next edges, and the clocks fall.
        if wedge:
            dut.wclk.value = 0
            wen = int(rng.random() < P["WEN"])
            wdata = rng.getrandbits(dw)
            dut.winc.value = wen
            dut.wdata.value = wdata
            tw += wper
        if redge:
            dut.rclk.value = 0
            ren = int(rng.random() < P["REN"])
            dut.rinc.value = ren
            tr += rper
    dut._log.info(f"{EDGES} instants match: {pushes} pushes, {pops} pops, {both} coincident instants")
    assert pushes > 0 and pops > 0
