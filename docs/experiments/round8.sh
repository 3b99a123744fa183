#!/bin/bash
# Round 8: DrasCLR with and without the neighbour loss at equal steps (238 = no-neighbour
# DrasCLR's step count in the science run of docs/results.md), current defaults (parenchyma map).
set -euo pipefail
R=${1:?run folder}; E=$R/recipe_round8; STEPS=238
. "$(dirname "$0")/common.sh"
mkdir -p "$E"
for s in 0 1; do
  run full_s$s --set probe_every=119 seed=$s &
  run nongb_s$s --set probe_every=119 seed=$s neighbours=0 &
done
wait
