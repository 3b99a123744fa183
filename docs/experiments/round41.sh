#!/bin/bash
# Round 41: DrasCLR at B 64 (lr 0.06, 362 steps: round 40's equal-time count) on seed 3, cohorts
# 6-9, and the benchmark's DrasCLR (B 32, 700 steps) on seed 3 where no run exists (cohorts 8,
# 9). Usage: round41.sh STORES_DIR. Rule: docs/experiments/prereg26.md.
set -euo pipefail
. "$(dirname "$0")/common.sh"
D=$1
for c in 6 7 8 9; do
  R=$D/c$c; E=$R/recipe_round41; mkdir -p "$E"
  STEPS=362 run "pairnh_b64_s3" --set probe_every=362 seed=3 $BENCH_DRASCLR batch_size=32 lr=0.06 &
  if [ "$c" -ge 8 ]; then
    STEPS=700 run "pairnh_b32_s3" --set probe_every=700 seed=3 $BENCH_DRASCLR &
  fi
done
wait
