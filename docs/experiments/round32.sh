#!/bin/bash
# Round 32: the key encoder's momentum in the demo's short runs (60 steps), which round 31 (700
# steps, the benchmark's recipes) did not measure. The demo's arms as `drasclr demo` trains them
# (PipelineConfig defaults: B 32, K 256, lr 0.03 with min(20, 60 // 10) = 6 warm-up steps,
# tau 0.2): DrasCLR with two nearest neighbours, and plain MoCo; each at m 0.95 and 0.99,
# pretraining seeds 1-4, on a demo-preset store of cohort seed 1 (make_store.py RUN 1 demo).
# Two runs at a time, one thread each.
# Usage: round32.sh RUN. Rule: docs/experiments/prereg23.md, quoted in docs/results.md.
set -euo pipefail
STEPS=${STEPS:-60}
. "$(dirname "$0")/common.sh"
R=$1; E=$R/recipe_round32; mkdir -p "$E"
DEMO_DRASCLR="lr_warmup_steps=6"
DEMO_MOCO="lr_warmup_steps=6 model=\"moco\" conditioning=\"none\" neighbours=0"
for s in 1 2 3 4; do
  for m in 0.95 0.99; do
    run "demo_drasclr_m${m}_s$s" --set probe_every=0 seed="$s" $DEMO_DRASCLR momentum=$m &
    run "demo_moco_m${m}_s$s" --set probe_every=0 seed="$s" $DEMO_MOCO momentum=$m &
    wait
  done
done
