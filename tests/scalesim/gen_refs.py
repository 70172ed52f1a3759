#!/usr/bin/env python3
"""Regenerate the SCALE-Sim v3 reference reports under tests/scalesim/refs/.

Runs the real SCALE-Sim v3 (the `scalesim` package from PyPI) on every
topology in tests/scalesim/topologies/ with every config in
tests/scalesim/configs/ and copies its reports verbatim:
COMPUTE_REPORT.csv to refs/<topology>__<config>.csv, BANDWIDTH_REPORT.csv to
refs/<topology>__<config>.bandwidth.csv and DETAILED_ACCESS_REPORT.csv to
refs/<topology>__<config>.detailed.csv. The Rust test tests/scalesim_compat.rs
compares bitmac's `--timing scalesim` against these files; no Python runs at
test time.

Set-up (keeps the project's own numpy/torch untouched):

    python3 -m venv /work/venv-scalesim
    /work/venv-scalesim/bin/pip install scalesim "numpy<2.4"
    /work/venv-scalesim/bin/python tests/scalesim/gen_refs.py

`--write-configs` (re)writes the nine config files first (3 array shapes x
3 dataflows). Topologies whose file name starts with `gemm_` are run in
SCALE-Sim's GEMM (M, N, K) input mode, the others in conv mode.

SCALE-Sim needs a layout file even when custom layouts are off; we pass the
topology itself (its layout parser accepts it, and with IfmapCustomLayout and
FilterCustomLayout False the layout never affects timing).
"""

import argparse
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TOPO_DIR = os.path.join(HERE, "topologies")
CFG_DIR = os.path.join(HERE, "configs")
REF_DIR = os.path.join(HERE, "refs")
# Real-size layers, run only on the 32x32 configs (SCALE-Sim needs minutes
# for them on smaller arrays); references go to refs_large/.
TOPO_LARGE_DIR = os.path.join(HERE, "topologies_large")
REF_LARGE_DIR = os.path.join(HERE, "refs_large")
LARGE_CFG_PREFIX = "a32x32_"

# (name, rows, cols, ifmap kB, filter kB, ofmap kB). The SRAM sizes differ per
# shape on purpose: small ones make SCALE-Sim's estimate-bandwidth read buffers
# fill their active half (the other prefetch-start branch) and make the ofmap
# write buffer drain many times, which the "Total Cycles (incl. prefetch)"
# column depends on.
SHAPES = [
    ("a32x32", 32, 32, 64, 64, 64),
    ("a8x16", 8, 16, 8, 8, 2),
    ("a16x4", 16, 4, 2, 1, 1),
]
DATAFLOWS = ["os", "ws", "is"]

# USER bandwidth mode (`--user`): (name, rows, cols, ifmap kB, filter kB,
# ofmap kB) x DRAM bandwidths in words/cycle. SCALE-Sim 3.0.0 takes the ifmap
# and filter DRAM bandwidth from [layout] IfmapSRAMBankBandwidth /
# FilterSRAMBankBandwidth and only the ofmap's from `Bandwidth`; the configs
# set all three to the same value (bank count 1, so any value divides).
# The 1 kB SRAMs are too small to hold most layers' operands.
USER_SHAPES = [
    ("u8x16", 8, 16, 1, 1, 1),
    ("u16x4", 16, 4, 2, 1, 1),
]
USER_BANDWIDTHS = [1, 4, 16]
# 13 layers (7 conv incl. edge windows, 6 GEMM), kept small: SCALE-Sim's USER
# read buffers are slow.
USER_TOPOLOGIES = ["gemm_small.csv", "odd_shapes.csv"]
# Conv layers of real-network shape (overlapping windows, strides, an edge
# window, 16-64 channels) that stall heavily with 1-2 kB SRAMs; SCALE-Sim
# needs minutes per run here, so only at one bandwidth (6 runs).
USER_TOPOLOGIES_ONE_BW = ["resnet_mini.csv"]
USER_ONE_BW = 4
USER_CFG_DIR = os.path.join(HERE, "configs_user")
REF_USER_DIR = os.path.join(HERE, "refs_user")

CFG_TEMPLATE = """[general]
run_name = {name}

[architecture_presets]
ArrayHeight:    {rows}
ArrayWidth:     {cols}
IfmapSramSzkB:    {ifmap}
FilterSramSzkB:   {filt}
OfmapSramSzkB:    {ofmap}
IfmapOffset:    0
FilterOffset:   10000000
OfmapOffset:    20000000
Bandwidth : 10
Dataflow : {df}
ReadRequestBuffer: 32
WriteRequestBuffer: 32

[layout]
IfmapCustomLayout: False
IfmapSRAMBankBandwidth: 10
IfmapSRAMBankNum: 10
IfmapSRAMBankPort: 2
FilterCustomLayout: False
FilterSRAMBankBandwidth: 10
FilterSRAMBankNum: 10
FilterSRAMBankPort: 2

[sparsity]
SparsitySupport : false
SparseRep : ellpack_block
OptimizedMapping : false
BlockSize : 8
RandomNumberGeneratorSeed : 40

[run_presets]
InterfaceBandwidth: CALC
UseRamulatorTrace: False
"""


def user_config_text(name, rows, cols, ifmap, filt, ofmap, df, bw):
    text = CFG_TEMPLATE.format(name=name, rows=rows, cols=cols, ifmap=ifmap, filt=filt, ofmap=ofmap, df=df)
    text = text.replace("Bandwidth : 10", f"Bandwidth : {bw}")
    for op in ("Ifmap", "Filter"):
        text = text.replace(f"{op}SRAMBankBandwidth: 10", f"{op}SRAMBankBandwidth: {bw}")
        text = text.replace(f"{op}SRAMBankNum: 10", f"{op}SRAMBankNum: 1")
    return text.replace("InterfaceBandwidth: CALC", "InterfaceBandwidth: USER")


def write_user_configs():
    os.makedirs(USER_CFG_DIR, exist_ok=True)
    for name, rows, cols, ifmap, filt, ofmap in USER_SHAPES:
        for df in DATAFLOWS:
            for bw in USER_BANDWIDTHS:
                cfg_name = f"{name}_{df}_bw{bw}"
                with open(os.path.join(USER_CFG_DIR, cfg_name + ".cfg"), "w") as f:
                    f.write(user_config_text(cfg_name, rows, cols, ifmap, filt, ofmap, df, bw))


def write_configs():
    os.makedirs(CFG_DIR, exist_ok=True)
    for name, rows, cols, ifmap, filt, ofmap in SHAPES:
        for df in DATAFLOWS:
            cfg_name = f"{name}_{df}"
            text = CFG_TEMPLATE.format(name=cfg_name, rows=rows, cols=cols, ifmap=ifmap,
                                       filt=filt, ofmap=ofmap, df=df)
            with open(os.path.join(CFG_DIR, cfg_name + ".cfg"), "w") as f:
                f.write(text)


def run_one(scalesim_cls, cfg_path, topo_path, gemm, workdir):
    sim = scalesim_cls(save_disk_space=True, verbose=False, config=cfg_path,
                       topology=topo_path, layout=topo_path, input_type_gemm=gemm)
    sim.run_scale(top_path=workdir)
    run_name = sim.config.get_run_name()
    return os.path.join(workdir, run_name)


# SCALE-Sim's report file -> suffix of the committed copy.
REPORTS = [("COMPUTE_REPORT.csv", ".csv"), ("BANDWIDTH_REPORT.csv", ".bandwidth.csv"),
           ("DETAILED_ACCESS_REPORT.csv", ".detailed.csv")]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write-configs", action="store_true", help="rewrite configs/*.cfg first")
    ap.add_argument("--only", default="", help="only topologies whose name contains this")
    ap.add_argument("--user", action="store_true",
                    help="run topologies/ on configs_user/ (USER bandwidth mode) into refs_user/ instead")
    ap.add_argument("--large", action="store_true",
                    help="run topologies_large/ on the 32x32 configs into refs_large/ instead")
    args = ap.parse_args()

    from scalesim.scale_sim import scalesim  # imported late: --help works without it
    from importlib.metadata import version

    if args.write_configs:
        write_configs()
        write_user_configs()
    topo_dir, ref_dir = (TOPO_LARGE_DIR, REF_LARGE_DIR) if args.large else (TOPO_DIR, REF_DIR)
    cfg_dir = CFG_DIR
    if args.user:
        ref_dir, cfg_dir = REF_USER_DIR, USER_CFG_DIR
    os.makedirs(ref_dir, exist_ok=True)
    cfgs = sorted(f for f in os.listdir(cfg_dir) if f.endswith(".cfg")
                  and (not args.large or f.startswith(LARGE_CFG_PREFIX)))
    topos = sorted(f for f in os.listdir(topo_dir) if f.endswith(".csv") and args.only in f
                   and (not args.user or f in USER_TOPOLOGIES or f in USER_TOPOLOGIES_ONE_BW))
    print(f"scalesim {version('scalesim')}, numpy {version('numpy')}: "
          f"{len(topos)} topologies x {len(cfgs)} configs", file=sys.stderr)
    for topo in topos:
        gemm = topo.startswith("gemm_")
        for cfg in cfgs:
            if args.user and topo in USER_TOPOLOGIES_ONE_BW and not cfg.endswith(f"_bw{USER_ONE_BW}.cfg"):
                continue
            with tempfile.TemporaryDirectory() as work:
                run_dir = run_one(scalesim, os.path.join(cfg_dir, cfg), os.path.join(topo_dir, topo),
                                  gemm, work)
                for report, suffix in REPORTS:
                    out = os.path.join(ref_dir, f"{topo[:-4]}__{cfg[:-4]}{suffix}")
                    shutil.copyfile(os.path.join(run_dir, report), out)
            print(f"  {topo} x {cfg} -> {os.path.relpath(out, HERE)}", file=sys.stderr)


if __name__ == "__main__":
    main()
