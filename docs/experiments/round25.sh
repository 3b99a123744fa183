#!/bin/bash
# Round 25: the contrast temperature. DrasCLR's negatives are the same landmark in other subjects;
# those with a similar disease state are near-duplicates of the query in the property the
# encoder should keep, and tau = 0.2 (MoCo-v2's value) concentrates the loss on exactly those.
# A higher temperature tolerates them. The benchmark's DrasCLR (paired, neighbour head) and plain
# MoCo at tau 0.2 and 0.5, seeds 2 and 3 (never used by the benchmark), 700 steps, on the cohort-5
# store. Usage: round25.sh RUN; eight runs at once, one thread each.
set -euo pipefail
STEPS=${STEPS:-700}
. "$(dirname "$0")/common.sh"
PAIR="batch_size=16 neighbours=1 neighbour_local_weight=1.0 queue_size=4096 neighbour_head=true"
MOCO="model=\"moco\" conditioning=\"none\" neighbours=0 queue_size=4096"
R=$1; E=$R/recipe_round25; mkdir -p "$E"
for s in 2 3; do  # seed 4 was stopped at step ~60 to fit the session (prereg20.md)
  for t in 0.2 0.5; do
    run pairnh_t${t}_s$s --set probe_every=$STEPS seed=$s temperature=$t $PAIR &
    run moco_t${t}_s$s --set probe_every=$STEPS seed=$s temperature=$t $MOCO &
  done
done
wait
