#!/usr/bin/env bash
# Regenerates the committed results of the shipped sweeps (docs/dse.md):
#   bash docs/dse-tables.sh OUT          # runs the three sweeps into OUT/, prints the table
#   bash docs/dse-tables.sh --write      # also copies the plots and fronts into docs/dse/
# (rounding-centre -> docs/dse/, energy -> docs/dse/energy/, memory -> docs/dse/memory/)
# and prints the "Findings" table of docs/dse.md (rounding-centre sweep,
# P = 24, c = 0) on stdout. tests/dse_model.rs runs it in CI and fails when
# the table in docs/dse.md or any file under docs/dse/ differs from what it
# regenerates.
#   bash docs/dse-tables.sh --list       # prints what is committed: "sweep dir file" per line
set -euo pipefail
cd "$(dirname "$0")/.."
# What is committed of each sweep: its front and plots (each plot as .svg and
# .png), not results.csv. The one list: --write copies these and
# tests/dse_model.rs (through --list) compares these.
committed() {
    echo "rounding-centre docs/dse pareto.csv plot_bias plot_pareto plot_quality"
    echo "energy docs/dse/energy pareto.csv plot_bias plot_pareto plot_quality"
    echo "memory docs/dse/memory pareto.csv plot_pareto plot_pareto_cycles plot_quality"
}
files() {
    committed | while read -r sweep dir files; do
        for f in $files; do
            if [ "$f" = pareto.csv ]; then
                echo "$sweep $dir $f"
            else
                echo "$sweep $dir $f.svg"
                echo "$sweep $dir $f.png"
            fi
        done
    done
}
if [ "${1:-}" = "--list" ]; then
    files
    exit 0
fi
write=0
if [ "${1:-}" = "--write" ]; then
    write=1
    out=$(mktemp -d)
    trap 'rm -rf "$out"' EXIT
else
    out=${1:?usage: docs/dse-tables.sh OUT | --write}
fi
# BITMAC=path/to/bitmac skips the build (the test passes its own binary).
if [ -z "${BITMAC:-}" ]; then
    cargo build --release --quiet
    bin=target/release/bitmac
else
    bin=$BITMAC
fi
mkdir -p "$out"
for s in $(committed | cut -d" " -f1); do
    rm -rf "${out:?}/$s"
    "$bin" dse --spec "models/sweeps/$s.json" --out "$out/$s" >/dev/null 2>&1 ||
        { echo "dse-tables.sh: the $s sweep failed" >&2; exit 1; }
done
if [ "$write" = 1 ]; then
    files | while read -r sweep dir f; do
        cp "$out/$sweep/$f" "$dir/$f"
    done
fi
# The table: accuracy (%, 1 decimal), mean psum error (psum LSBs, 3
# decimals, signed) and ties as a share of roundings (only for the modes
# whose ties differ: the round-to-nearest modes share RND's), per mode x d.
awk -F, '
NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
$col["status"] == "ok" && $col["accumulator.bits"] == 24 && $col["psum.offset"] == 0 {
    k = $col["psum.rounding"] SUBSEP $col["psum.drop_bits"]
    acc[k] = $col["accuracy"]; bias[k] = $col["psum_bias"]
    r = $col["roundings"]; tie[k] = (r > 0) ? $col["ties"] / r : 0
}
END {
    n = split("TRN TRN_ZERO RND RND_ZERO RND_MIN_INF RND_INF RND_CONV RND_CONV_ODD", mode, " ")
    label["RND"] = "RND (half-up)"; label["RND_MIN_INF"] = "RND_MIN_INF (half-down)"
    label["RND_CONV"] = "RND_CONV (half-even)"
    print "| mode | d=2 acc / bias / ties | d=4 | d=6 | d=8 |"
    print "|---|---|---|---|---|"
    for (i = 1; i <= n; i++) {
        m = mode[i]; line = "| " ((m in label) ? label[m] : m)
        for (d = 2; d <= 8; d += 2) {
            k = m SUBSEP d
            cell = sprintf("%.1f / %+.3f", 100 * acc[k], bias[k])
            if (i <= 3) cell = cell " / " ((tie[k] == 0) ? "0%" : sprintf("%.1f%%", 100 * tie[k]))
            line = line " | " cell
        }
        print line " |"
    }
}' "$out/rounding-centre/results.csv"
