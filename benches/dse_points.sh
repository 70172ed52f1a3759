#!/usr/bin/env bash
# Whole-process benchmark: `bitmac dse` points per second on a shipped sweep,
# one binary against another in the same run (issue 14's target: >= 2x the
# binary before the issue, main at a0aa3b4).
#
#   benches/dse_points.sh --before PATH [--bin PATH] [--spec SWEEP.json] [--shard i/n] [--reps N]
#
# Default: models/sweeps/rounding-centre.json, shard 0/16 (80 points: the
# digits MLP over accumulator widths, psum drop bits, rounding modes and
# offsets). The two binaries run interleaved, --reps times each; each run
# writes a fresh --out directory and the two `results.csv` must be
# equal (every column the older binary writes, by name; the newer one may
# write more metric columns), else the script fails. Prints wall and CPU (user + sys)
# seconds, best of the runs, points per second and the ratio bin / before.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=""
BEFORE=""
SPEC=models/sweeps/rounding-centre.json
SHARD=0/16
REPS=3
while [ $# -gt 0 ]; do
    case "$1" in
        --bin) BIN="$2"; shift 2 ;;
        --before) BEFORE="$2"; shift 2 ;;
        --spec) SPEC="$2"; shift 2 ;;
        --shard) SHARD="$2"; shift 2 ;;
        --reps) REPS="$2"; shift 2 ;;
        *) echo "usage: $0 --before PATH [--bin PATH] [--spec SWEEP.json] [--shard i/n] [--reps N]" >&2; exit 2 ;;
    esac
done
[ -n "$BEFORE" ] || { echo "usage: $0 --before PATH [--bin PATH] ..." >&2; exit 2; }
command -v /usr/bin/time >/dev/null 2>&1 || { echo "error: /usr/bin/time not found" >&2; exit 2; }
if [ -z "$BIN" ]; then
    cargo build --release --quiet
    BIN=target/release/bitmac
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

echo "CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores;" \
     "AVX-512 VNNI: $(grep -q avx512_vnni /proc/cpuinfo && echo yes || echo no);" \
     "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "sweep $SPEC, shard $SHARD, best of $REPS interleaved runs"

# same A B: every column of A equals B's column of the same name, row by row
# (an older binary may write fewer metric columns; none may differ).
same() {
    python3 - "$1" "$2" <<'EOF2'
import csv, sys
a, b = (list(csv.DictReader(open(p))) for p in sys.argv[1:3])
cols = list(csv.DictReader(open(sys.argv[1])).fieldnames)
missing = [c for c in cols if c not in (b[0] if b else {})]
if len(a) != len(b) or missing:
    sys.exit(f"{len(a)} vs {len(b)} rows; columns missing: {missing}")
for i, (x, y) in enumerate(zip(a, b)):
    for c in cols:
        if x[c] != y[c]:
            sys.exit(f"row {i} column {c}: {x[c]} vs {y[c]}")
EOF2
}
declare -A WALL CPU
for i in $(seq "$REPS"); do
    for tag in bin before; do
        b=$([ "$tag" = bin ] && echo "$BIN" || echo "$BEFORE")
        out="$WORK/$tag-$i"
        /usr/bin/time -v "$b" dse --spec "$SPEC" --shard "$SHARD" --out "$out" >/dev/null 2>"$WORK/time.txt" ||
            { cat "$WORK/time.txt" >&2; exit 1; }
        wall=$(sed -n 's/^\s*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$WORK/time.txt" |
            awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; print s }')
        cpu=$(awk -F': ' '/User time|System time/ { s += $2 } END { print s }' "$WORK/time.txt")
        if [ -z "${WALL[$tag]:-}" ] || awk "BEGIN { exit !($wall < ${WALL[$tag]}) }"; then WALL[$tag]=$wall; fi
        if [ -z "${CPU[$tag]:-}" ] || awk "BEGIN { exit !($cpu < ${CPU[$tag]}) }"; then CPU[$tag]=$cpu; fi
        same "$out/results.csv" "$WORK/bin-1/results.csv" ||
            { echo "error: results.csv of $b differs from $BIN's" >&2; exit 1; }
    done
done
points=$(($(wc -l <"$WORK/bin-1/results.csv") - 1))
echo "| binary | points | wall (s) | CPU (s) | points/s (wall) | points per CPU-s |"
echo "|---|---|---|---|---|---|"
for tag in bin before; do
    b=$([ "$tag" = bin ] && echo "$BIN" || echo "$BEFORE")
    awk -v b="$b" -v p="$points" -v w="${WALL[$tag]}" -v c="${CPU[$tag]}" \
        'BEGIN { printf "| %s | %d | %.2f | %.2f | %.1f | %.1f |\n", b, p, w, c, p / w, p / c }'
done
awk -v wb="${WALL[bin]}" -v wa="${WALL[before]}" -v cb="${CPU[bin]}" -v ca="${CPU[before]}" \
    'BEGIN { printf "RATIO dse points/s bin/before: %.2fx wall, %.2fx per CPU-s\n", wa / wb, ca / cb }'
