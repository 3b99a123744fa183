#!/bin/bash
# Round 13: the three trained methods of the science benchmark at the step counts its 3-minute
# budget gave them in the run of record (c04e092: DrasCLR 125, no neighbour loss 295, plain MoCo
# 379), on two more pretraining seeds (2 and 3): how large is the seed-to-seed spread at equal
# wall-clock? Six runs at a time, one thread each.
set -euo pipefail
R=${1:?run folder}; E=$R/recipe_round13
. "$(dirname "$0")/common.sh"
mkdir -p "$E"
for s in 2 3; do
  STEPS=125 run full_s$s --set probe_every=125 seed=$s &
  STEPS=295 run nongb_s$s --set probe_every=295 seed=$s neighbours=0 &
  STEPS=379 run moco_s$s --set probe_every=379 seed=$s model='"moco"' conditioning='"none"' neighbours=0 queue_size=4096 &
done
wait
