#!/usr/bin/env bash
# How the cost of `bitmac gemm` and `bitmac run` grows (docs/performance.md).
#
#   benches/scaling.sh [--reps N] [--quick] [--bin PATH]
#
# Times whole processes (GNU time: wall clock, user CPU, peak RSS; best wall
# of N runs, default 3) over:
#   1. M (rows streamed), K, N of `bitmac gemm` on the default 16x16 WS array
#      (P = 32 WRAP, d = 0), fast and cycle engines, `--stage out`;
#   2. the array size R x C (8..64) at a fixed GEMM, cycle engine;
#   3. `bitmac run` on the shipped models (parameter count = model size);
# then fits time = a * work^b (least squares in log-log) per series and prints
# Markdown tables. Data: seeded numpy draws (u8 activations, i8 weights).
# The machine is shared: compare rows of one run, not runs of different days.
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=3
QUICK=0
BIN=target/release/bitmac
while [ $# -gt 0 ]; do
    case "$1" in
        --reps) REPS="$2"; shift 2 ;;
        --quick) QUICK=1; shift ;;
        --bin) BIN="$2"; shift 2 ;;
        *) echo "usage: $0 [--reps N] [--quick] [--bin PATH]" >&2; exit 2 ;;
    esac
done
for tool in python3 /usr/bin/time; do
    command -v "$tool" >/dev/null 2>&1 || { echo "error: $tool not found" >&2; exit 2; }
done
[ -x "$BIN" ] || cargo build --release --quiet
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores;" \
     "AVX-512 VNNI: $(grep -q avx512_vnni /proc/cpuinfo && echo yes || echo no)," \
     "AVX2: $(grep -q avx2 /proc/cpuinfo && echo yes || echo no); load: $(cut -d' ' -f1-3 /proc/loadavg)"

gen() { # gen M K N -> $WORK/A_M_K.npy, $WORK/W_K_N.npy
    python3 - "$WORK" "$1" "$2" "$3" <<'EOF'
import sys, os, numpy as np
work, m, k, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = np.random.default_rng(m * 1000003 + k * 1009 + n)
a, w = f"{work}/A_{m}_{k}.npy", f"{work}/W_{k}_{n}.npy"
if not os.path.exists(a):
    np.save(a, rng.integers(0, 256, size=(m, k), dtype=np.uint8))
if not os.path.exists(w):
    np.save(w, rng.integers(-128, 128, size=(k, n), dtype=np.int8))
EOF
}

hwfile() { # hwfile R C -> path
    local f="$WORK/hw_$1_$2.json"
    sed -e "s/\"rows\": 16/\"rows\": $1/" -e "s/\"cols\": 16/\"cols\": $2/" models/hw/default.json >"$f"
    echo "$f"
}

# timeit CMD...: best wall of REPS runs; prints "wall user rss_mb"
timeit() {
    local best=""
    for _ in $(seq "$REPS"); do
        /usr/bin/time -f "%e %U %M" -o "$WORK/t" "$@" >/dev/null 2>"$WORK/err" || { cat "$WORK/err" >&2; exit 1; }
        read -r w u r <"$WORK/t"
        if [ -z "$best" ] || awk "BEGIN { exit !($w < ${best%% *}) }"; then best="$w $u $((r / 1024))"; fi
    done
    echo "$best"
}

ROWS="$WORK/rows.tsv"
: >"$ROWS"
gemm_row() { # series engine R C M K N
    local series=$1 engine=$2 r=$3 c=$4 m=$5 k=$6 n=$7
    gen "$m" "$k" "$n"
    local hw; hw=$(hwfile "$r" "$c")
    local t
    t=$(timeit "$BIN" gemm --hw "$hw" --a "$WORK/A_${m}_${k}.npy" --w "$WORK/W_${k}_${n}.npy" \
        --out "$WORK/o.npy" --multiplier 0.001 --engine "$engine")
    local io=$(( m * k + k * n + m * n ))
    printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n" "$series" "$engine" "${r}x${c}" "$m" "$k" "$n" "$(( m * k * n ))" "$io" "${t// /$'\t'}" >>"$ROWS"
}

if [ "$QUICK" = 1 ]; then MS="10000 100000"; else MS="10000 100000 1000000 4000000"; fi
for e in fast cycle; do
    for m in $MS; do gemm_row M "$e" 16 16 "$m" 16 16; done
    for k in 16 64 256 1024; do gemm_row K "$e" 16 16 16384 "$k" 16; done
    for n in 16 64 256 1024; do gemm_row N "$e" 16 16 16384 16 "$n"; done
done
for rc in 8 16 32 64; do gemm_row RC cycle "$rc" "$rc" 65536 64 64; done

python3 - "$ROWS" <<'EOF'
import sys, math
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
def fit(xs, ys):
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    n = len(xs); mx, my = sum(lx) / n, sum(ly) / n
    sxx = sum((x - mx) ** 2 for x in lx)
    return sum((x - mx) * (y - my) for x, y in zip(lx, ly)) / sxx if sxx else float("nan")
print("| series | engine | array | M | K | N | MACs | in+out bytes | wall (s) | user (s) | peak RSS (MB) | RSS / (in+out) | ns per MAC |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for s, e, arr, m, k, n, macs, io, w, u, r in rows:
    print(f"| {s} | {e} | {arr} | {m} | {k} | {n} | {int(macs):.3g} | {int(io):.3g} | {float(w):.3f} | {float(u):.3f} | {r} | {int(r) * 2**20 / int(io):.1f} | {float(w) / int(macs) * 1e9:.2f} |")
print()
print("| series | engine | fitted exponent b in wall = a * MACs^b | fitted exponent of peak RSS vs in+out bytes |")
print("|---|---|---|---|")
for s in ["M", "K", "N", "RC"]:
    for e in ["fast", "cycle"]:
        sel = [r for r in rows if r[0] == s and r[1] == e]
        if len(sel) < 2:
            continue
        xs = [int(r[6]) for r in sel]; ws = [float(r[8]) for r in sel]
        if s == "RC":
            xs = [int(r[2].split("x")[0]) ** 2 for r in sel]
        io = [int(r[7]) for r in sel]; rss = [int(r[10]) for r in sel]
        label = "R*C (PEs)" if s == "RC" else "MACs"
        print(f"| {s} | {e} | {fit(xs, ws):.2f} (vs {label}) | {fit(io, rss):.2f} |")
EOF

# Model size: `bitmac run` on the shipped models (360 test digits).
echo
echo "| model | parameters | wall (s) | user (s) | peak RSS (MB) |"
echo "|---|---|---|---|---|"
for mdl in models/mlp_w4a4.json models/cnn_w2a2.json models/cnn_w4a4.json; do
    params=$(python3 -c "
import json,sys
d=json.load(open(sys.argv[1]))
def count(x):
    if isinstance(x, dict): return sum(count(v) for k, v in x.items() if k in ('weight','w','weights','bias','b') or isinstance(v,(dict,list)))
    if isinstance(x, list): return sum(count(v) for v in x) if x and isinstance(x[0], (list, dict)) else len(x)
    return 0
print(count(d.get('layers', d)))" "$mdl")
    t=$(timeit "$BIN" run --model "$mdl" --reference none)
    read -r w u r <<<"$t"
    echo "| $(basename "$mdl") | $params | $w | $u | $r |"
done
