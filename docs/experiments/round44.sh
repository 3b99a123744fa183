#!/bin/bash
# Round 44: the benchmark's plain MoCo on mixed batches (batch_mode "mixed"), seeds 2 and 3,
# cohorts 6 and 7, 700 steps; descriptive (docs/experiments/prereg28.md).
# Usage: round44.sh STORES_DIR [COHORT ...] (folders under STORES_DIR; default c6 c7).
set -euo pipefail
. "$(dirname "$0")/common.sh"
D=$1; shift
COHORTS=${*:-c6 c7}
STEPS=700
for c in $COHORTS; do
  R=$D/$c; E=$R/recipe_round44; mkdir -p "$E"
  for s in 2 3; do
    run "mocomix_s$s" --set probe_every=700 seed="$s" $BENCH_MOCO &
  done
done
wait
