#!/bin/bash
# Round 39: views that share no layout (shuffle_block_vox=8), the benchmark's DrasCLR and plain
# MoCo arms, seed 2, 700 steps, one thread a run, on cohorts 6-9. Usage: round39.sh STORES_DIR
# (run folders STORES_DIR/c6 ... c9). Rule: docs/experiments/prereg26.md.
set -euo pipefail
STEPS=${STEPS:-700}
. "$(dirname "$0")/common.sh"
D=$1
for c in 6 7 8 9; do
  R=$D/c$c; E=$R/recipe_round39; mkdir -p "$E"
  run "pairnh_shuf8_s2" --set probe_every="$STEPS" seed=2 $BENCH_DRASCLR shuffle_block_vox=8 &
  run "moco_shuf8_s2" --set probe_every="$STEPS" seed=2 $BENCH_MOCO shuffle_block_vox=8 &
done
wait
