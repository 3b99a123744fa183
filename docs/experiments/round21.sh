#!/bin/bash
# Round 21: the neighbour loss with a projection head of its own (neighbour_head=true) against
# the paired recipe as it is (the neighbour loss shares the local contrast's head g) and its
# ablation (neighbour_weight 0, the same batches). The benchmark's paired DrasCLR settings
# (B = 16 anchors + their k = 1 neighbour, neighbour_local_weight 1, queue_size 4096), STEPS
# equal steps for all three (the neighbour head costs one 128-d MLP on 16 rows). Seeds 0 and 1.
# Usage: round21.sh RUN [RUN ...]: one benchmark run folder per cohort (store/ and
# patch_truth.parquet); all runs of all cohorts at once, one thread each.
set -euo pipefail
STEPS=${STEPS:-450}
. "$(dirname "$0")/common.sh"
PAIR="batch_size=16 neighbours=1 neighbour_local_weight=1.0 queue_size=4096"
for R in "$@"; do
  E=$R/recipe_round21; mkdir -p "$E"
  for s in 0 1; do
    R=$R E=$E run pair_s$s --set probe_every=$STEPS seed=$s $PAIR &
    R=$R E=$E run pairb0_s$s --set probe_every=$STEPS seed=$s $PAIR neighbour_weight=0 &
    R=$R E=$E run pairnh_s$s --set probe_every=$STEPS seed=$s $PAIR neighbour_head=true &
  done
done
wait
