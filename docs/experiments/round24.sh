#!/bin/bash
# Round 24: neighbours whose patches do not overlap the anchor's. On the atlas grid (26 mm) the
# nearest neighbour's 32 mm patch shares a 6 mm slab (19 % of its voxels) with the anchor's, so
# the neighbour contrast can be solved by matching the shared structure. The benchmark's DrasCLR
# (paired recipe, neighbour head) with neighbour_min_mm=32: the nearest landmarks at least a
# patch width away (diagonal, 36.8 mm, 3.5 % shared). Seeds 2-7, 700 steps; the comparison is
# round 23's one-way arm (same store, harness and seeds). Usage: round24.sh RUN; six runs at once.
set -euo pipefail
STEPS=${STEPS:-700}
. "$(dirname "$0")/common.sh"
PAIR="batch_size=16 neighbours=1 neighbour_local_weight=1.0 queue_size=4096 neighbour_head=true"
R=$1; E=$R/recipe_round23; mkdir -p "$E"
for s in 2 3 4 5 6 7; do
  run far_s$s --set probe_every=$STEPS seed=$s $PAIR neighbour_min_mm=32.0 &
done
wait
