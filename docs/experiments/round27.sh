#!/bin/bash
# Round 27: DrasCLR's per-landmark queue no older than the key encoder's horizon. A landmark gets
# 32/93 = 0.34 keys a step in the paired recipe, so the cohort cap K = N - B = 184 spans ~530
# steps of a key encoder that moves on a 1/(1-m) = 100-step horizon; K = 32 spans ~93. The
# benchmark's DrasCLR (paired, neighbour head, tau 0.2, lr 0.03) with K = 32 on seeds 2-5, and
# controls (K capped at N - B) on seeds 4 and 5; the seed 2 and 3 controls are round 26's
# pairnh_lr0.03 runs (same store and training code). 700 steps; six runs at once, one thread
# each. Usage: round27.sh RUN. Rule: docs/experiments/prereg21.md, quoted in docs/results.md.
set -euo pipefail
STEPS=${STEPS:-700}
. "$(dirname "$0")/common.sh"
R=$1; E=$R/recipe_round27; mkdir -p "$E"
for s in 2 3 4 5; do
  run pairnh_k32_s$s --set probe_every=$STEPS seed=$s $BENCH_DRASCLR queue_size=32 &
done
for s in 4 5; do
  run pairnh_k4096_s$s --set probe_every=$STEPS seed=$s $BENCH_DRASCLR &
done
wait
