#!/bin/bash
# Round 20: the neighbour loss at the cost of a step without it. B = 16 anchors at landmark j,
# k = 1 neighbour j' per anchor, and the neighbour patches are also queries of j''s own local
# contrast (neighbour_local_weight = 1, a second view key-encoded), so a step encodes 32 query
# and 32 key patches like no-neighbour DrasCLR at B = 32. PAIR_STEPS: the 3-minute equal-time
# step count (step_cost.py STORE nongb pair nongb pair, scaled from the run of record's 295
# no-neighbour steps). Seeds 0-3 with the neighbour loss, 0-1 without it (neighbour_weight=1e-6:
# the same two-landmark batches and local losses; 0 would skip the neighbour patches), and
# no-neighbour DrasCLR at 295 steps on seeds 0-1 (round 14's runs, repeated on this store).
# Eight runs at a time, one thread each.
set -euo pipefail
R=${1:?run folder}; E=$R/recipe_round20; P=${PAIR_STEPS:?equal-time steps of the pair recipe}
. "$(dirname "$0")/common.sh"
mkdir -p "$E"
PAIR="batch_size=16 neighbours=1 neighbour_local_weight=1.0"
for s in 0 1 2 3; do
  STEPS=$P run pair_s$s --set probe_every=$P seed=$s $PAIR &
done
for s in 0 1; do
  STEPS=$P run pairb0_s$s --set probe_every=$P seed=$s $PAIR neighbour_weight=1e-6 &
  STEPS=295 run nongb_s$s --set probe_every=295 seed=$s neighbours=0 &
done
wait
