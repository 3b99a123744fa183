#!/bin/bash
# Round 26: the SGD learning rate (0.03, current, vs 0.01, the paper's) for DrasCLR and plain MoCo,
# and, on the same runs, the key (momentum) encoder against the query encoder as the encoder that
# is exported (an EMA of the query weights over ~1/(1-m) = 100 steps, which may smooth late-run
# swings such as plain MoCo's training-probe dip in session 20's benchmark). Seeds 2 and 3, 700
# steps, on a store never used by a benchmark. Usage: round26.sh RUN; eight runs at once, one
# thread each. Rules: docs/experiments/prereg21.md, quoted in docs/results.md.
set -euo pipefail
STEPS=${STEPS:-700}
. "$(dirname "$0")/common.sh"
R=$1; E=$R/recipe_round26; mkdir -p "$E"
for s in 2 3; do
  for lr in 0.03 0.01; do
    run pairnh_lr${lr}_s$s --momentum-encoder --set probe_every=$STEPS seed=$s $BENCH_DRASCLR lr=$lr &
    run moco_lr${lr}_s$s --momentum-encoder --set probe_every=$STEPS seed=$s $BENCH_MOCO lr=$lr &
  done
done
wait
