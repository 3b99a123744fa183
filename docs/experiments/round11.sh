#!/bin/bash
# Round 11: DrasCLR whose neighbour patches are also local-contrast queries of their own
# landmarks (neighbour_local_weight gamma), at the step count the bench's 3-minute budget buys it
# (1.83 s/step at two threads -> about 100 steps; the full paper loss got 125, no neighbour loss
# 295, plain MoCo 379 in the run of record). gamma 1 (every landmark's local loss counts fully)
# and gamma 0.5, seeds 0 / 1.
set -euo pipefail
R=${1:?run folder}; E=$R/recipe_round11; STEPS=100
. "$(dirname "$0")/common.sh"
mkdir -p "$E"
for s in 0 1; do
  run nlocal1_s$s --set probe_every=25 seed=$s neighbour_local_weight=1.0 &
  run nlocal05_s$s --set probe_every=25 seed=$s neighbour_local_weight=0.5 &
done
wait
