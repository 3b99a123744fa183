#!/bin/bash
# Round 44b: round 44's cohort-7 controls, DrasCLR and plain MoCo on DrasCLR's one-landmark
# batches (BENCH_MOCO_LANDMARK), seeds 2 and 3, 700 steps. Re-run because the cohort-6 store
# rebuilt on a fresh machine did not reproduce the recorded values exactly (prereg28.md).
# Usage: round44b.sh STORES_DIR (holding c7).
set -euo pipefail
. "$(dirname "$0")/common.sh"
R=$1/c7; E=$R/recipe_round44; mkdir -p "$E"
STEPS=700
for s in 2 3; do
  run "pairnh_base_s$s" --set probe_every=700 seed="$s" $BENCH_DRASCLR &
  run "mocolm_base_s$s" --set probe_every=700 seed="$s" $BENCH_MOCO_LANDMARK &
done
wait
