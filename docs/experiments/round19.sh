#!/bin/bash
# Round 19: full DrasCLR with the mean of its neighbour embeddings (neighbour_reduce=mean, round
# 16's candidate) at the 10-minute budget's 416 steps, seeds 0 and 1 (sum: round 7 and 17).
# Two runs at a time, one thread each.
set -euo pipefail
R=${1:?run folder}; E=$R/recipe_round19; STEPS=416
. "$(dirname "$0")/common.sh"
mkdir -p "$E"
for s in 0 1; do
  run mean_s$s --set probe_every=104 seed=$s neighbour_reduce='"mean"' &
done
wait
