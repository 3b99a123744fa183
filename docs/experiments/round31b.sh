#!/bin/bash
# Round 31b (descriptive): DrasCLR at key-encoder momentum 0.95, the value round 31 adopted for
# it, on seeds 4 and 5 of the same store; the m 0.99 controls are round 27's (same store and
# training code). Two runs at once, one thread each.
# Usage: round31b.sh RUN. docs/experiments/prereg22.md.
set -euo pipefail
STEPS=${STEPS:-700}
. "$(dirname "$0")/common.sh"
R=$1; E=$R/recipe_round31b; mkdir -p "$E"
for s in 4 5; do
  run pairnh_m0.95_s$s --set probe_every=$STEPS seed=$s $BENCH_DRASCLR momentum=0.95 &
done
wait
