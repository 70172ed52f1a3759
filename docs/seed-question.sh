#!/usr/bin/env bash
# Regenerates the table in docs/seed-question.md:
#   bash docs/seed-question.sh > /tmp/table.md
# Runs the shipped default model (cnn_w4a4) on the digits test split through
# the default hardware preset, varying only the partial-sum path.
set -euo pipefail
cd "$(dirname "$0")/.."
# BITMAC=path/to/bitmac skips the build (tests/run_model.rs runs the script
# this way and fails when the committed table differs from its output).
if [ -z "${BITMAC:-}" ]; then
    cargo build --release --quiet
    bin=target/release/bitmac
else
    bin=$BITMAC
fi
echo "| d | psum rounding | c | requant | accuracy | agree w/ fake-quant | psum ties / roundings | conv1 psum / out bias | conv2 psum / out bias | fc psum / logit bias |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for d in 2 4 6; do
    half=$((1 << (d - 1)))
    for spec in "RND 0" "RND_CONV 0" "RND 1" "RND -1" "TRN 0" "TRN $half"; do
        set -- $spec
        $bin run --row --set psum.drop_bits=$d --set psum.rounding=$1 --set psum.offset=$2
    done
done
