#!/usr/bin/env bash
# Whole-process benchmark: peak resident memory of `bitmac gemm` against the
# bytes of its inputs plus outputs (issue 14's target: <= 2x), both engines,
# both stages, on the 1,000,000 x 16 x 16 GEMM of benches/verilator_vs_bitmac.sh
# (u8 A, i8 W, seeded numpy draw, models/hw/default.json).
#
#   benches/gemm_rss.sh [--m M] [--bin PATH] [--before PATH] [--reps N]
#
# --bin: the bitmac binary measured (default: this tree's release build).
# --before: a second binary, run interleaved with the first on the same data;
# its outputs must be byte-identical to --bin's, else the script fails.
# Prints one table row per (binary, engine, stage): wall and CPU (user + sys)
# seconds, peak RSS (MB, /usr/bin/time -v "Maximum resident set size", best
# of --reps runs) and the ratio RSS / (A + W + output file bytes).
set -euo pipefail
cd "$(dirname "$0")/.."

M=1000000
REPS=1
BIN=""
BEFORE=""
while [ $# -gt 0 ]; do
    case "$1" in
        --m) M="$2"; shift 2 ;;
        --bin) BIN="$2"; shift 2 ;;
        --before) BEFORE="$2"; shift 2 ;;
        --reps) REPS="$2"; shift 2 ;;
        *) echo "usage: $0 [--m M] [--bin PATH] [--before PATH] [--reps N]" >&2; exit 2 ;;
    esac
done
for tool in python3 /usr/bin/time; do
    command -v "$tool" >/dev/null 2>&1 || { echo "error: $tool not found" >&2; exit 2; }
done
if [ -z "$BIN" ]; then
    cargo build --release --quiet
    BIN=target/release/bitmac
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

echo "CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores;" \
     "AVX-512 VNNI: $(grep -q avx512_vnni /proc/cpuinfo && echo yes || echo no);" \
     "load average: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$WORK" "$M" <<'EOF'
import sys, numpy as np
work, m = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(20261201)
np.save(f"{work}/A.npy", rng.integers(0, 256, size=(m, 16), dtype=np.uint8))
np.save(f"{work}/W.npy", rng.integers(-128, 128, size=(16, 16), dtype=np.int8))
EOF

inbytes=$(( $(stat -c %s "$WORK/A.npy") + $(stat -c %s "$WORK/W.npy") ))
echo "| binary | engine | stage | wall (s) | CPU (s) | peak RSS (MB) | in + out (MB) | RSS / (in + out) |"
echo "|---|---|---|---|---|---|---|---|"
bins=("$BIN")
[ -n "$BEFORE" ] && bins+=("$BEFORE")
for engine in fast cycle; do
    for stage in acc out; do
        for b in "${bins[@]}"; do
            tag=$([ "$b" = "$BIN" ] && echo bin || echo before)
            best_rss=""; best_wall=""; best_cpu=""
            for _ in $(seq "$REPS"); do
                /usr/bin/time -v "$b" gemm --hw models/hw/default.json --a "$WORK/A.npy" --w "$WORK/W.npy" \
                    --engine "$engine" --stage "$stage" --multiplier 0.001 \
                    --out "$WORK/$tag-$engine-$stage.npy" >/dev/null 2>"$WORK/time.txt" ||
                    { cat "$WORK/time.txt" >&2; exit 1; }
                rss=$(sed -n 's/^\s*Maximum resident set size (kbytes): //p' "$WORK/time.txt")
                wall=$(sed -n 's/^\s*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$WORK/time.txt" |
                    awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; print s }')
                cpu=$(awk -F': ' '/User time|System time/ { s += $2 } END { print s }' "$WORK/time.txt")
                if [ -z "$best_rss" ] || [ "$rss" -lt "$best_rss" ]; then best_rss=$rss; fi
                if [ -z "$best_wall" ] || awk "BEGIN { exit !($wall < $best_wall) }"; then
                    best_wall=$wall; best_cpu=$cpu
                fi
            done
            outbytes=$(stat -c %s "$WORK/$tag-$engine-$stage.npy")
            awk -v b="$b" -v e="$engine" -v s="$stage" -v w="$best_wall" -v c="$best_cpu" -v r="$best_rss" \
                -v io="$((inbytes + outbytes))" 'BEGIN {
                printf "| %s | %s | %s | %.2f | %.2f | %.1f | %.1f | %.2fx |\n",
                    b, e, s, w, c, r / 1024, io / 1048576, r * 1024 / io }'
        done
        if [ -n "$BEFORE" ]; then
            cmp "$WORK/bin-$engine-$stage.npy" "$WORK/before-$engine-$stage.npy" ||
                { echo "error: $engine --stage $stage outputs differ between $BIN and $BEFORE" >&2; exit 1; }
        fi
    done
    cmp "$WORK/bin-$engine-acc.npy" "$WORK/bin-fast-acc.npy" ||
        { echo "error: the $engine and fast engines' accumulators differ" >&2; exit 1; }
done
