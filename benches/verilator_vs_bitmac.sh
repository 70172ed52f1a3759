#!/usr/bin/env bash
# Whole-process benchmark: the project's RTL array (tests/rtl/systolic_array.v)
# under Verilator against `bitmac gemm --engine cycle`, on the same GEMM and the
# same .npy data, in one run. Reports wall time, peak RSS and simulated cycles
# per second of each process and their ratio (docs/performance.md).
#
#   benches/verilator_vs_bitmac.sh [--m M] [--reps N] [--keep DIR]
#
# Default GEMM: 1,000,000 x 16 x 16 (A: u8 activations, W: i8 weights, seeded
# numpy draw) on models/hw/default.json (16x16 weight-stationary, P = 32 WRAP,
# d = 0). Both write acc (--stage acc) and the two outputs must be
# byte-identical, else the script fails. Verilator model: -O3, no tracing,
# --x-assign fast, --x-initial fast, C++ at -O3 -march=native, single thread,
# configuration fixed by parameters (RUNTIME_CFG=0) so it constant-folds;
# its build time is not counted. Each process is timed by /usr/bin/time -v
# (wall clock, maximum resident set size); with --reps N the best wall time of
# N runs is reported. Needs: cargo, verilator, python3 with numpy, GNU time.
set -euo pipefail
cd "$(dirname "$0")/.."

M=1000000
REPS=1
KEEP=""
while [ $# -gt 0 ]; do
    case "$1" in
        --m) M="$2"; shift 2 ;;
        --reps) REPS="$2"; shift 2 ;;
        --keep) KEEP="$2"; shift 2 ;;
        *) echo "usage: $0 [--m M] [--reps N] [--keep DIR]" >&2; exit 2 ;;
    esac
done
K=16
N=16
R=16
C=16

for tool in verilator python3 /usr/bin/time cargo; do
    command -v "$tool" >/dev/null 2>&1 || { echo "error: $tool not found" >&2; exit 2; }
done

if [ -n "$KEEP" ]; then
    WORK="$KEEP"
    mkdir -p "$WORK"
else
    WORK="$(mktemp -d)"
    trap 'rm -rf "$WORK"' EXIT
fi

echo "CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores;" \
     "AVX-512 VNNI: $(grep -q avx512_vnni /proc/cpuinfo && echo yes || echo no)," \
     "AVX2: $(grep -q avx2 /proc/cpuinfo && echo yes || echo no)"
echo "$(verilator --version); $(rustc --version)"

cargo build --release --quiet
BITMAC=target/release/bitmac

python3 - "$WORK" "$M" "$K" "$N" <<'EOF'
import sys, numpy as np
work, m, k, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = np.random.default_rng(20261201)
np.save(f"{work}/A.npy", rng.integers(0, 256, size=(m, k), dtype=np.uint8))
np.save(f"{work}/W.npy", rng.integers(-128, 128, size=(k, n), dtype=np.int8))
EOF

# The Verilator model for this GEMM size (built once; not timed).
ADEPTH=$((M * K)); WDEPTH=$((K * N)); BDEPTH=$((M * N))
OBJ="$WORK/vobj"
echo "building the Verilator model (not timed) ..."
verilator --cc --exe --build -j 2 -O3 --x-assign fast --x-initial fast --noassert \
    -Wno-fatal -Wno-lint -Wno-style --unroll-count 1024 --unroll-stmts 10000000 \
    --top-module systolic_array -DBITMAC_DPI_MEM \
    -GR=$R -GC=$C -GAW=8 -GWW=8 -GPW=32 -GDMAX=0 \
    -GADEPTH=$ADEPTH -GWDEPTH=$WDEPTH -GBDEPTH=$BDEPTH \
    -GRUNTIME_CFG=0 -GDATAFLOW=0 -GA_SIGNED=0 -GW_SIGNED=1 -GACC_BITS=32 -GOVF=0 -GDROP=0 -GRMODE=2 -GOFFSET=0 \
    -CFLAGS "-O3 -march=native -DBM_ADEPTH=$ADEPTH -DBM_WDEPTH=$WDEPTH -DBM_BDEPTH=$BDEPTH -DBM_C=$C" \
    -Mdir "$OBJ" "$PWD/tests/rtl/systolic_array.v" "$PWD/tests/rtl/systolic_array_main.cpp" >"$WORK/vbuild.log" 2>&1 \
    || { cat "$WORK/vbuild.log" >&2; exit 1; }
VMODEL="$OBJ/Vsystolic_array"

# run NAME CMD...: time one process; sets WALL (s), CPU (user + sys, s) and
# RSS (kB) of the run with the best wall time.
run() {
    local name="$1"; shift
    local best_wall="" best_rss="" best_cpu=""
    for _ in $(seq "$REPS"); do
        /usr/bin/time -v -o "$WORK/$name.time" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" \
            || { cat "$WORK/$name.err" >&2; exit 1; }
        local wall rss cpu
        wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$WORK/$name.time" |
               awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; print s }')
        rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$WORK/$name.time")
        cpu=$(awk -F': ' '/User time|System time/ { s += $2 } END { print s }' "$WORK/$name.time")
        if [ -z "$best_wall" ] || awk "BEGIN { exit !($wall < $best_wall) }"; then
            best_wall=$wall; best_rss=$rss; best_cpu=$cpu
        fi
    done
    WALL=$best_wall
    CPU=$best_cpu
    RSS=$best_rss
}

run verilator "$VMODEL" "$WORK/A.npy" "$WORK/W.npy" --d 0 --out "$WORK/out_verilator.npy"
V_WALL=$WALL; V_RSS=$RSS; V_CPU=$CPU
V_CYC=$(sed -n 's/^cycles=//p' "$WORK/verilator.out")

run bitmac "$BITMAC" gemm --hw models/hw/default.json --a "$WORK/A.npy" --w "$WORK/W.npy" \
    --engine cycle --stage acc --out "$WORK/out_bitmac.npy" --stats "$WORK/stats.json"
B_WALL=$WALL; B_RSS=$RSS; B_CPU=$CPU
B_CYC=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['cycles'])" "$WORK/stats.json")

if ! cmp -s "$WORK/out_verilator.npy" "$WORK/out_bitmac.npy"; then
    echo "error: the Verilator and bitmac outputs differ" >&2
    exit 1
fi
if [ "$V_CYC" != "$B_CYC" ]; then
    echo "error: cycle counts differ: Verilator $V_CYC, bitmac $B_CYC" >&2
    exit 1
fi

awk -v m="$M" -v k="$K" -v n="$N" -v cyc="$B_CYC" -v vw="$V_WALL" -v vr="$V_RSS" -v vc="$V_CPU" \
    -v bw="$B_WALL" -v br="$B_RSS" -v bc="$B_CPU" 'BEGIN {
    printf "GEMM %d x %d x %d on 16x16 ws (models/hw/default.json), %d cycles; outputs byte-identical\n", m, k, n, cyc
    printf "| process | wall (s) | CPU user+sys (s) | peak RSS (MB) | simulated cycles/s (wall) |\n|---|---|---|---|---|\n"
    printf "| Verilator (RTL) | %.2f | %.2f | %.0f | %.3g |\n", vw, vc, vr / 1024, cyc / vw
    printf "| bitmac gemm --engine cycle | %.2f | %.2f | %.0f | %.3g |\n", bw, bc, br / 1024, cyc / bw
    printf "ratio bitmac / Verilator, whole process: %.2fx (wall), %.2fx (CPU time)\n", vw / bw, vc / bc
}'
