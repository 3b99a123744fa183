#!/bin/bash
# Round 27b: plain MoCo as the benchmark trains it (tau 0.5, lr 0.03) on seeds 4 and 5 of the
# cohort-6 store, so that DrasCLR (round 27's controls s4/s5, round 26's s2/s3) and MoCo are
# paired on four seeds there. Descriptive only: no setting is decided by it.
# Usage: round27b.sh RUN; two runs at once, one thread each.
set -euo pipefail
STEPS=${STEPS:-700}
. "$(dirname "$0")/common.sh"
R=$1; E=$R/recipe_round27b; mkdir -p "$E"
for s in 4 5; do
  run moco_s$s --set probe_every=$STEPS seed=$s $BENCH_MOCO &
done
wait
