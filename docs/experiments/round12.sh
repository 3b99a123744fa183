#!/bin/bash
# Round 12: DrasCLR with a neighbour-loss warm-up (DESIGN.md §4.8: local loss only at first),
# sized to the bench's 3-minute budget from the calibrated step costs of the run of record
# (local-only step 0.58 s, full step 1.43 s): half the time local-only (155 + 63 = 218 steps,
# warm-up 155) and three quarters local-only (233 + 31 = 264 steps, warm-up 233); seeds 0 / 1.
set -euo pipefail
R=${1:?run folder}; E=$R/recipe_round12
. "$(dirname "$0")/common.sh"
mkdir -p "$E"
for s in 0 1; do
  STEPS=218 run warm50_s$s --set probe_every=109 seed=$s warmup_steps=155 &
  STEPS=264 run warm75_s$s --set probe_every=132 seed=$s warmup_steps=233 &
done
wait
