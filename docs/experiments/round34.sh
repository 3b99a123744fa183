#!/bin/bash
# Round 34: DrasCLR's paired recipe (the benchmark's since round 20) in the demo's 60-step runs,
# where it was never measured. The demo trains the paper's recipe (two nearest neighbours, B 32,
# three query patches per subject and step); the paired recipe trains two neighbouring landmarks
# a step with B/2 = 16 subjects each, both landmarks' local contrast, and the neighbour loss
# through its own head. Demo settings otherwise (K 256, lr 0.03 with 6 warm-up steps, tau 0.2),
# at m 0.99 (the demo's DrasCLR momentum) and 0.95; the paired ablation (the same batches,
# neighbour_weight 0) at both. Pretraining seeds 1-4 on the demo-preset store of cohort seed 1
# (make_store.py RUN 1 demo), the store round 32 used; its demo_drasclr_m0.99 runs are the
# control. Two runs at a time, one thread each.
# Usage: round34.sh RUN. Rule: docs/experiments/prereg24.md, quoted in docs/results.md.
set -euo pipefail
STEPS=${STEPS:-60}
. "$(dirname "$0")/common.sh"
R=$1; E=$R/recipe_round34; mkdir -p "$E"
PAIRED="lr_warmup_steps=6 batch_size=16 neighbours=1 neighbour_local_weight=1.0"
for s in 1 2 3 4; do
  for m in 0.99 0.95; do
    run "demo_paired_m${m}_s$s" --set probe_every=0 seed="$s" $PAIRED neighbour_head=true momentum=$m &
    run "demo_pairedabl_m${m}_s$s" --set probe_every=0 seed="$s" $PAIRED neighbour_weight=0.0 momentum=$m &
    wait
  done
done
