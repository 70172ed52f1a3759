"""pytest entry point of the cocotb testbenches (cocotb 2.x on Icarus Verilog): each RTL block
of tests/rtl/ is built with several parameter sets and checked live against the in-process
golden model (the `bitmac` Python package). Run: `python3 -m pytest tests/cocotb`.
"""

import json
import os
from pathlib import Path

import pytest
from cocotb_tools.runner import get_results, get_runner

HERE = Path(__file__).resolve().parent
RTL = HERE.parent / "rtl"
ROOT = HERE.parents[1]


def run(toplevel, source, module, params, tmp_path, verilog_params=None):
    runner = get_runner("icarus")
    vparams = verilog_params if verilog_params is not None else {k: v for k, v in params.items() if k.isupper() and k != "SEED"}
    build = tmp_path / "build"
    runner.build(sources=[RTL / source], hdl_toplevel=toplevel, parameters=vparams, build_dir=build,
                 always=True, timescale=("1ps", "1ps"))
    env = {"TB_PARAMS": json.dumps(params), "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    xml = runner.test(hdl_toplevel=toplevel, test_module=module, build_dir=build, test_dir=tmp_path,
                      extra_env=env, seed=params.get("SEED", 1))
    n, failed = get_results(xml)
    assert n > 0, f"{module}: no cocotb test ran"
    assert failed == 0, f"{module}: {failed} of {n} cocotb tests failed (see the log above)"


# (MODE, OVF, K, OFFSET, IN_W, IN_SIGNED, OUT_W, OUT_SIGNED): every rounding mode and every
# overflow mode, offsets on both sides, K = 0, unsigned input and output.
PSUM = [
    (0, 0, 4, 0, 24, 1, 16, 1), (1, 1, 4, 3, 24, 1, 12, 1), (2, 1, 4, 0, 24, 1, 16, 1),
    (2, 3, 5, -3, 20, 1, 10, 1), (3, 2, 3, 1, 16, 1, 8, 1), (4, 1, 6, -8, 32, 1, 20, 1),
    (5, 0, 2, 0, 12, 0, 8, 0), (6, 3, 4, 2, 24, 1, 12, 1), (7, 1, 3, 0, 16, 0, 10, 1),
    (6, 1, 0, 0, 16, 1, 12, 1),
]


@pytest.mark.parametrize("cfg", PSUM, ids=lambda c: "mode{}_ovf{}_k{}_c{}".format(*c[:4]))
def test_psum_round(tmp_path, cfg):
    mode, ovf, k, off, iw, isg, ow, osg = cfg
    p = dict(MODE=mode, OVF=ovf, K=k, OFFSET=off, IN_W=iw, IN_SIGNED=isg, OUT_W=ow, OUT_SIGNED=osg, SEED=11 + mode)
    run("psum_round", "psum_round.v", "tb_psum_round", p, tmp_path)


# (K, AW, A_SIGNED, WW, W_SIGNED, ACCW, OVF): wide and narrow accumulators under all modes.
PE = [(4, 8, 1, 8, 1, 20, 0), (5, 4, 1, 4, 1, 8, 1), (3, 8, 0, 8, 1, 14, 2), (6, 4, 1, 3, 1, 7, 3),
      (4, 8, 1, 8, 1, 12, 0)]


@pytest.mark.parametrize("cfg", PE, ids=lambda c: "k{}_a{}_w{}_acc{}_ovf{}".format(c[0], c[1], c[3], c[5], c[6]))
def test_pe_column(tmp_path, cfg):
    k, aw, asg, ww, wsg, accw, ovf = cfg
    p = dict(K=k, AW=aw, A_SIGNED=asg, WW=ww, W_SIGNED=wsg, ACCW=accw, OVF=ovf, SEED=100 + k + accw)
    run("pe_column", "pe_column.v", "tb_pe_column", p, tmp_path)


# (ASIZE, SYNC, DSIZE, WPER, RPER, WPHASE, RPHASE, WEN, REN): unrelated and harmonic clocks
# (coincident edges), depth 2, longer synchronizers, fast writer, fast reader.
FIFO = [(4, 2, 8, 10000, 13700, 0, 3000, 0.9, 0.8), (2, 2, 8, 2000, 2000, 0, 0, 0.7, 0.6),
        (1, 2, 4, 3000, 7000, 0, 500, 1.0, 1.0), (3, 3, 8, 1000, 4100, 0, 0, 0.95, 0.9),
        (3, 4, 16, 5300, 1200, 700, 0, 0.8, 0.95), (2, 2, 8, 2000, 6000, 0, 0, 0.8, 0.7)]


@pytest.mark.parametrize("cfg", FIFO, ids=lambda c: "d{}_s{}_w{}_r{}".format(1 << c[0], c[1], c[3], c[4]))
def test_async_fifo(tmp_path, cfg):
    asize, sync, dsize, wper, rper, wph, rph, wen, ren = cfg
    p = dict(ASIZE=asize, SYNC=sync, DSIZE=dsize, WPER=wper, RPER=rper, WPHASE=wph, RPHASE=rph, WEN=wen,
             REN=ren, SEED=7 + asize + sync)
    run("async_fifo", "async_fifo.v", "tb_async_fifo", p, tmp_path,
        verilog_params=dict(ASIZE=asize, SYNC=sync, DSIZE=dsize))
