#!/usr/bin/env bash
# Regenerate the whole committed golden-vector suite from testvectors/cases/.
#
#   testvectors/regen.sh            # uses `cargo run --release`
#   BITMAC=path/to/bitmac testvectors/regen.sh
#
# Each cases/NAME.json is generated into testvectors/NAME/; a case whose
# kind runs the datapath takes its hardware config from cases/NAME.hw.json.
# Case directories whose case file is gone are NOT deleted (do it by hand).
# Afterwards `bitmac check testvectors/` must pass.
set -euo pipefail
cd "$(dirname "$0")"
if [ -z "${BITMAC:-}" ]; then
    cargo build --release --quiet
    BITMAC=../target/release/bitmac
fi
n=0
for c in cases/*.json; do
    case "$c" in *.hw.json) continue ;; esac
    hw="${c%.json}.hw.json"
    if [ -f "$hw" ]; then
        "$BITMAC" gen --hw "$hw" --case "$c" --out . >/dev/null
    else
        "$BITMAC" gen --case "$c" --out . >/dev/null
    fi
    n=$((n + 1))
done
echo "regenerated $n cases"
"$BITMAC" check .
