#!/bin/bash
# Round 18: round 17's 10-minute-budget step counts (no neighbour loss 983, plain MoCo 1263) on
# pretraining seeds 2 and 3, so that every method has four seeds at that budget (full DrasCLR at
# 416 steps: round 7, seeds 0-3; seed 0 re-run in round 17). Four runs at a time, one thread each.
set -euo pipefail
R=${1:?run folder}; E=$R/recipe_round18
. "$(dirname "$0")/common.sh"
mkdir -p "$E"
for s in 2 3; do
  STEPS=1263 run moco_s$s --set probe_every=421 seed=$s model='"moco"' conditioning='"none"' neighbours=0 queue_size=4096 &
  STEPS=983 run nongb_s$s --set probe_every=328 seed=$s neighbours=0 &
done
wait
