#!/bin/bash
# Round 20b: round 20's control (the paired batches with the neighbour loss's weight at 1e-6) on
# seeds 2 and 3, at the same 295 steps. Two runs at a time, one thread each.
set -euo pipefail
R=${1:?run folder}; E=$R/recipe_round20; STEPS=295
. "$(dirname "$0")/common.sh"
mkdir -p "$E"
PAIR="batch_size=16 neighbours=1 neighbour_local_weight=1.0"
for s in 2 3; do
  run pairb0_s$s --set probe_every=295 seed=$s $PAIR neighbour_weight=1e-6 &
done
wait
