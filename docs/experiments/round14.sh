#!/bin/bash
# Round 14: the neighbour contrast read from the neighbours' queues (neighbour_source=bank: the
# anchor query picks its subject's queued key at each neighbour landmark among the other
# subjects' keys there; a step costs what a step without neighbours costs), at the step count
# the benchmark's 3-minute budget gives a step of that cost (295, no-neighbour DrasCLR's count in
# the run of record c04e092), four seeds. Controls on seeds 0 and 1: the same pre-filled queues
# without the neighbour contrast (neighbour_weight=0), and no-neighbour DrasCLR as benchmarked.
# Eight runs at a time, one thread each.
set -euo pipefail
R=${1:?run folder}; E=$R/recipe_round14
. "$(dirname "$0")/common.sh"
mkdir -p "$E"
export STEPS=295
for s in 0 1 2 3; do
  run bank_s$s --set probe_every=295 seed=$s neighbour_source='"bank"' &
done
for s in 0 1; do
  run bankb0_s$s --set probe_every=295 seed=$s neighbour_source='"bank"' neighbour_weight=0 &
  run nongb_s$s --set probe_every=295 seed=$s neighbours=0 &
done
wait
