"""Builds tests/dpi/dpi_tb.sv with Verilator against the C ABI (libbitmac_capi.so, built here
with `cargo build --release -p bitmac-capi`) and runs it: the SystemVerilog testbench checks
psum_round, pe_column and async_fifo through DPI-C. Needs verilator (apt-get install
verilator); fails without it, on purpose.
"""

import os
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def test_dpi_testbench_under_verilator(tmp_path):
    assert shutil.which("verilator"), "verilator is not installed (apt-get install -y verilator)"
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "bitmac-capi"], cwd=ROOT, check=True)
    lib = ROOT / "target" / "release"
    assert (lib / "libbitmac_capi.so").exists()
    rtl = ROOT / "tests" / "rtl"
    cmd = ["verilator", "--binary", "-j", "2", "--timing", "-Wno-fatal", "-Wno-lint", "-Wno-style",
           "--timescale", "1ps/1ps", "--top-module", "dpi_tb", "--Mdir", str(tmp_path / "obj"),
           "-o", "dpi_tb", str(HERE / "bitmac_dpi.sv"), str(HERE / "dpi_tb.sv"),
           str(rtl / "psum_round.v"), str(rtl / "pe_column.v"), str(rtl / "async_fifo.v"),
           "-LDFLAGS", f"-L{lib} -lbitmac_capi -Wl,-rpath,{lib}"]
    b = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)
    assert b.returncode == 0, f"verilator build failed:\n{b.stdout[-4000:]}\n{b.stderr[-4000:]}"
    r = subprocess.run([str(tmp_path / "obj" / "dpi_tb")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    print(r.stdout)
    lines = r.stdout.splitlines()
    assert r.returncode == 0, r.stdout + r.stderr
    assert not any(l.startswith("FAIL") for l in lines), r.stdout
    assert any(l.startswith("PASS psum_round 2000 cycles") for l in lines), r.stdout
