#!/bin/bash
# Round 10: plain MoCo and DrasCLR without its neighbour loss at 416 steps (round 7's length,
# where full DrasCLR scored 0.732 / 0.698 on seeds 0 / 1), current defaults; does DrasCLR pull
# ahead per step when training is longer?
set -euo pipefail
R=${1:?run folder}; E=$R/recipe_round10; STEPS=416
. "$(dirname "$0")/common.sh"
mkdir -p "$E"
for s in 0 1; do
  run moco_s$s --set probe_every=104 seed=$s model='"moco"' conditioning='"none"' neighbours=0 queue_size=4096 &
  run nongb_s$s --set probe_every=104 seed=$s neighbours=0 &
done
wait
