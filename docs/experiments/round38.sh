#!/bin/bash
# Round 38: the benchmark's DrasCLR at key-encoder momentum 0.99 and its ablation (beta 0, no
# neighbour head) at 0.95, seed 2, 700 steps, one thread a run, on cohorts 8 and 9 (round 37's
# stores; its beta-1 runs are the m 0.95 controls). Usage: round38.sh STORES_DIR (run folders
# STORES_DIR/c8, STORES_DIR/c9). Rule: docs/experiments/prereg25.md.
set -euo pipefail
STEPS=${STEPS:-700}
. "$(dirname "$0")/common.sh"
D=$1
for c in 8 9; do
  R=$D/c$c; E=$R/recipe_round38; mkdir -p "$E"
  run "pairnh_m0.99_s2" --set probe_every="$STEPS" seed=2 $BENCH_DRASCLR momentum=0.99 &
  run "pairb0_m0.95_s2" --set probe_every="$STEPS" seed=2 $BENCH_DRASCLR neighbour_weight=0 \
    neighbour_head=false &
done
wait
