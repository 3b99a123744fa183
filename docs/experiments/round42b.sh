#!/bin/bash
# Round 42b: the benchmark's plain MoCo arm on seed 3, cohorts 8 and 9, 700 steps (descriptive;
# docs/experiments/prereg27.md). Usage: round42b.sh STORES_DIR (holding r37/c8, r37/c9).
set -euo pipefail
. "$(dirname "$0")/common.sh"
D=$1
STEPS=700
for c in r37/c8 r37/c9; do
  R=$D/$c; E=$R/recipe_round42; mkdir -p "$E"
  run "moco_s3" --set probe_every=700 seed=3 $BENCH_MOCO &
done
wait
