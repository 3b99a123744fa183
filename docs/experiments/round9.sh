#!/bin/bash
# Round 9: at equal steps (238, as round 8), DrasCLR with neighbour patches on 8 of the batch's
# 32 rows (neighbour_rows=8), and plain MoCo as the science benchmark builds it (global queue
# of 4096, static convolutions, pre-filled queue); seeds 0 and 1, current defaults. Together
# with round 8 (full neighbour loss / none) this gives every variant's probe at equal steps and
# its step cost measured under the same load (four runs at a time, one thread each).
set -euo pipefail
R=${1:?run folder}; E=$R/recipe_round9; STEPS=238
. "$(dirname "$0")/common.sh"
mkdir -p "$E"
for s in 0 1; do
  run ngbrows8_s$s --set probe_every=119 seed=$s neighbour_rows=8 &
  run moco_s$s --set probe_every=119 seed=$s model='"moco"' conditioning='"none"' neighbours=0 queue_size=4096 &
done
wait
