#!/usr/bin/env bash
# Whole-process benchmark: `bitmac gemm --engine cycle` against Verilator
# simulating an equivalent RTL array (benches/rtl/ws_array.v, a minimal
# 16x16 weight-stationary array written for this bench: u8 activations, i8
# weights, P = 32 WRAP, d = 0) on the same GEMM and the same .npy data, in
# one run. Both processes read the .npy inputs and write the accumulators
# (int32 .npy); the outputs must be equal, else the script fails.
#
#   benches/verilator_ws.sh [--m M] [--reps N] [--bin PATH]
#
# Default GEMM 1,000,000 x 16 x 16 on models/hw/default.json. Verilator:
# -O3, --x-assign fast, --x-initial fast, C++ -O3 -march=native, single
# thread; its build is not timed. Best wall time of N runs (default 3) by GNU
# time; peak RSS of that run.
set -euo pipefail
cd "$(dirname "$0")/.."
M=1000000
REPS=3
BIN=target/release/bitmac
while [ $# -gt 0 ]; do
    case "$1" in
        --m) M="$2"; shift 2 ;;
        --reps) REPS="$2"; shift 2 ;;
        --bin) BIN="$2"; shift 2 ;;
        *) echo "usage: $0 [--m M] [--reps N] [--bin PATH]" >&2; exit 2 ;;
    esac
done
for tool in verilator python3 /usr/bin/time; do
    command -v "$tool" >/dev/null 2>&1 || { echo "error: $tool not found" >&2; exit 2; }
done
[ -x "$BIN" ] || cargo build --release --quiet
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores;" \
     "AVX-512 VNNI: $(grep -q avx512_vnni /proc/cpuinfo && echo yes || echo no)," \
     "AVX2: $(grep -q avx2 /proc/cpuinfo && echo yes || echo no); load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "$(verilator --version)"
python3 - "$WORK" "$M" <<'PY'
import sys, numpy as np
work, m = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(20261201)
np.save(f"{work}/A.npy", rng.integers(0, 256, size=(m, 16), dtype=np.uint8))
np.save(f"{work}/W.npy", rng.integers(-128, 128, size=(16, 16), dtype=np.int8))
PY
SRC="$PWD/benches/rtl"
verilator --cc --exe --build -j 2 -O3 --x-assign fast --x-initial fast -Wno-fatal \
    --top-module ws_array -GR=16 -GC=16 -CFLAGS "-O3 -march=native -DBM_R=16 -DBM_C=16" \
    -Mdir "$WORK/obj" "$SRC/ws_array.v" "$SRC/ws_main.cpp" >"$WORK/vbuild.log" 2>&1 \
    || { cat "$WORK/vbuild.log" >&2; exit 1; }

best() { # best NAME CMD... -> "wall user rss_mb"
    local name=$1; shift
    local b=""
    for _ in $(seq "$REPS"); do
        /usr/bin/time -f "%e %U %M" -o "$WORK/$name.t" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" \
            || { cat "$WORK/$name.err" >&2; exit 1; }
        read -r w u r <"$WORK/$name.t"
        if [ -z "$b" ] || awk "BEGIN { exit !($w < ${b%% *}) }"; then b="$w $u $((r / 1024))"; fi
    done
    echo "$b"
}
# Interleave the two so that both see the same machine load.
V=$(best verilator "$WORK/obj/Vws_array" "$WORK/A.npy" "$WORK/W.npy" "$WORK/out_v.npy")
B=$(best bitmac "$BIN" gemm --hw models/hw/default.json --a "$WORK/A.npy" --w "$WORK/W.npy" \
    --engine cycle --stage acc --out "$WORK/out_b.npy" --stats "$WORK/stats.json")
python3 - "$WORK" <<'PY'
import sys, numpy as np
w = sys.argv[1]
a, b = np.load(f"{w}/out_v.npy"), np.load(f"{w}/out_b.npy")
if a.shape != b.shape or not np.array_equal(a, b):
    sys.exit("error: the Verilator and bitmac outputs differ")
PY
VC=$(sed -n 's/^cycles=//p' "$WORK/verilator.out")
BC=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['cycles'])" "$WORK/stats.json")
read -r vw vu vr <<<"$V"
read -r bw bu br <<<"$B"
echo "GEMM $M x 16 x 16, 16x16 WS: outputs equal; cycles: Verilator $VC, bitmac $BC"
echo "| process | wall (s) | user (s) | peak RSS (MB) | simulated cycles/s (wall) |"
echo "|---|---|---|---|---|"
awk -v c="$VC" -v w="$vw" -v u="$vu" -v r="$vr" 'BEGIN { printf "| Verilator (benches/rtl/ws_array.v) | %.2f | %.2f | %d | %.3g |\n", w, u, r, c / w }'
awk -v c="$BC" -v w="$bw" -v u="$bu" -v r="$br" 'BEGIN { printf "| bitmac gemm --engine cycle | %.2f | %.2f | %d | %.3g |\n", w, u, r, c / w }'
awk -v vw="$vw" -v bw="$bw" -v vu="$vu" -v bu="$bu" 'BEGIN { printf "ratio Verilator / bitmac: wall %.2fx, user CPU %.2fx (target >= 10x)\n", vw / bw, vu / (bu > 0 ? bu : 0.01) }'
