#!/bin/bash
# Round 7: the parenchyma input map (PretrainConfig.input_map) on the four seeds of rounds 4-6,
# DrasCLR with every other default, 416 steps; partners: round6c.sh / the equal-steps runs.
set -euo pipefail
R=${1:?run folder}; E=$R/recipe_round7; STEPS=416
. "$(dirname "$0")/common.sh"
mkdir -p "$E"
for s in 0 1 2 3; do
  run knee_s$s --set probe_every=104 seed=$s input_map='"parenchyma"' &
done
wait
