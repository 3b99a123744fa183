#!/bin/bash
# Round 16: the neighbour loss with the mean of the k neighbour embeddings instead of the
# official sum (whose norm, up to k = 2, halves the neighbour logits' effective temperature),
# full DrasCLR at 125 steps (the run of record's equal-time count), four seeds. The sum's
# four seeds at 125 steps are rounds 13 and 15. Four runs at a time, one thread each.
set -euo pipefail
R=${1:?run folder}; E=$R/recipe_round16
. "$(dirname "$0")/common.sh"
mkdir -p "$E"
export STEPS=125
for s in 0 1 2 3; do
  run mean_s$s --set probe_every=125 seed=$s neighbour_reduce='"mean"' &
done
wait
