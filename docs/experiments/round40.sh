#!/bin/bash
# Round 40: B 64 at equal time (DrasCLR 362 steps, plain MoCo 372; the B 32 controls ran 700),
# lr 0.06 (linear scaling), the benchmark's arms otherwise, seed 2, one thread a run, cohorts
# 6-9. Usage: round40.sh STORES_DIR (run folders STORES_DIR/c6 ... c9). Rule:
# docs/experiments/prereg26.md.
set -euo pipefail
. "$(dirname "$0")/common.sh"
D=$1
for c in 6 7 8 9; do
  R=$D/c$c; E=$R/recipe_round40; mkdir -p "$E"
  STEPS=362 run "pairnh_b64_s2" --set probe_every=362 seed=2 $BENCH_DRASCLR batch_size=32 lr=0.06 &
  STEPS=372 run "moco_b64_s2" --set probe_every=372 seed=2 $BENCH_MOCO batch_size=64 lr=0.06 &
done
wait
