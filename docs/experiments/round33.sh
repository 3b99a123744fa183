#!/bin/bash
# Round 33: DrasCLR's key-encoder momentum on a third cohort (bench preset, cohort seed 7, never
# used before), after round 31 (cohort 6: m 0.95 above 0.99 on four seeds) and the Done-when run
# at e008dfe (cohort 0: below on both seeds). The benchmark's DrasCLR (paired, neighbour head,
# tau 0.2) and its ablation (neighbour_weight 0, no neighbour head), each at m 0.95 and 0.99,
# seeds 2 and 3, 700 steps, eight runs at once, one thread each.
# Usage: round33.sh RUN (a store from make_store.py RUN 7). Rule: docs/experiments/prereg23.md.
set -euo pipefail
STEPS=${STEPS:-700}
. "$(dirname "$0")/common.sh"
R=$1; E=$R/recipe_round33; mkdir -p "$E"
for s in 2 3; do
  for m in 0.95 0.99; do
    run "pairnh_m${m}_s$s" --set probe_every="$STEPS" seed="$s" $BENCH_DRASCLR momentum=$m &
    run "pairb0_m${m}_s$s" --set probe_every="$STEPS" seed="$s" $BENCH_DRASCLR momentum=$m \
      neighbour_weight=0 neighbour_head=false &
  done
done
wait
