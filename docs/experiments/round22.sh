#!/bin/bash
# Round 22: is plain MoCo's weak seed 1 in the run of record (0.655; 0.557 and 0.647 in the two
# before it) a property of the method or of that seed? The benchmark's three learned arms at the
# steps the run of record gave them in 3 minutes (about 700: DrasCLR 685 / 655, ablation
# 699 / 702, MoCo 697 / 693), on four seeds the benchmark never ran (2-5): the paired DrasCLR
# with its neighbour head, the same batches without the neighbour loss, and plain MoCo as the
# benchmark builds it (global queue of 4096, static convolutions, no neighbours, B = 32).
# Usage: round22.sh RUN (a benchmark run folder: store/ and patch_truth.parquet); twelve runs
# at once, one thread each.
set -euo pipefail
STEPS=${STEPS:-700}
. "$(dirname "$0")/common.sh"
PAIR="batch_size=16 neighbours=1 neighbour_local_weight=1.0 queue_size=4096"
R=$1; E=$R/recipe_round22; mkdir -p "$E"
for s in 2 3 4 5; do
  run pairnh_s$s --set probe_every=$STEPS seed=$s $PAIR neighbour_head=true &
  run pairb0_s$s --set probe_every=$STEPS seed=$s $PAIR neighbour_weight=0 &
  run moco_s$s --set probe_every=$STEPS seed=$s model='"moco"' conditioning='"none"' neighbours=0 queue_size=4096 &
done
wait
