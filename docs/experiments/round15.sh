#!/bin/bash
# Round 15: negatives from the batch only (queue_negatives=false). With 93 landmarks a landmark's
# queue is written about every 93 steps, so its keys come from a key encoder that has moved
# since (round 14's pre-filled, never-trained keys lowered the probe). DrasCLR without its
# neighbour loss at 295 steps and full DrasCLR at 125 steps (the run of record's equal-time step
# counts), four seeds each, and full DrasCLR with its queue on seeds 0 and 1 in this harness
# (round 13 has seeds 2 and 3; round 14 no-neighbour DrasCLR on seeds 0 and 1).
# Ten runs at a time, one thread each.
set -euo pipefail
R=${1:?run folder}; E=$R/recipe_round15
. "$(dirname "$0")/common.sh"
mkdir -p "$E"
for s in 0 1 2 3; do
  STEPS=295 run nqnongb_s$s --set probe_every=295 seed=$s neighbours=0 queue_negatives=false &
  STEPS=125 run nqfull_s$s --set probe_every=125 seed=$s queue_negatives=false &
done
for s in 0 1; do
  STEPS=125 run full_s$s --set probe_every=125 seed=$s &
done
wait
