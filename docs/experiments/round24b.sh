#!/bin/bash
# Round 24b: round 24's check on a second cohort. The benchmark's DrasCLR with the nearest
# neighbour and with neighbours at least 32 mm away, seeds 2-4, 700 steps, on another benchmark
# store (cohort seed 4). Usage: round24b.sh RUN; six runs at once, one thread each.
set -euo pipefail
STEPS=${STEPS:-700}
. "$(dirname "$0")/common.sh"
PAIR="batch_size=16 neighbours=1 neighbour_local_weight=1.0 queue_size=4096 neighbour_head=true"
R=$1; E=$R/recipe_round24b; mkdir -p "$E"
for s in 2 3 4; do
  run near_s$s --set probe_every=$STEPS seed=$s $PAIR &
  run far_s$s --set probe_every=$STEPS seed=$s $PAIR neighbour_min_mm=32.0 &
done
wait
