#!/bin/bash
# Round 17: where does the paper's loss overtake at equal wall-clock? The science benchmark's
# calibrated step costs (run of record c04e092: DrasCLR 125, no neighbour loss 295, plain MoCo 379
# steps in 3 minutes) scaled to a 10-minute budget: DrasCLR 416 (round 7's length, seeds 0-3
# there), no neighbour loss 983, plain MoCo 1263. Full DrasCLR seed 0 is re-run on the current
# code to check that round 7 still stands. Five runs at a time, one thread each.
set -euo pipefail
R=${1:?run folder}; E=$R/recipe_round17
. "$(dirname "$0")/common.sh"
mkdir -p "$E"
for s in 0 1; do
  STEPS=1263 run moco_s$s --set probe_every=421 seed=$s model='"moco"' conditioning='"none"' neighbours=0 queue_size=4096 &
  STEPS=983 run nongb_s$s --set probe_every=328 seed=$s neighbours=0 &
done
STEPS=416 run full_s0 --set probe_every=104 seed=0 &
wait
