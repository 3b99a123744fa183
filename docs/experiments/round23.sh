#!/bin/bash
# Round 23: the neighbour contrast both ways. In the paired recipe each anchor x_ij comes with
# its neighbour patch x_ij', and both are keyed (the neighbours' own local losses), so the
# neighbour contrast can run from the anchor too: g_n(e(x_ij)) must pick the subject's key at j'
# among j''s negatives, at the cost of one head pass. Three arms at the benchmark's ~700 steps on
# seeds the benchmark never runs (2-4): the paired DrasCLR as the benchmark builds it (one way),
# both ways with L_ngb their mean (same beta), and both ways summed (beta 2: the dose).
# Usage: round23.sh RUN (a benchmark run folder: store/ and patch_truth.parquet); one thread per
# run, all runs at once. SEEDS and ARMS choose a subset (round23b.sh).
set -euo pipefail
STEPS=${STEPS:-700}
SEEDS=${SEEDS:-"2 3 4"}
ARMS=${ARMS:-"oneway both both2"}
. "$(dirname "$0")/common.sh"
PAIR="batch_size=16 neighbours=1 neighbour_local_weight=1.0 queue_size=4096 neighbour_head=true"
declare -A EXTRA=([oneway]="" [both]="neighbour_symmetric=true"
                  [both2]="neighbour_symmetric=true neighbour_weight=2.0")
R=$1; E=$R/recipe_round23; mkdir -p "$E"
for s in $SEEDS; do
  for a in $ARMS; do
    # shellcheck disable=SC2086
    run ${a}_s$s --set probe_every=$STEPS seed=$s $PAIR ${EXTRA[$a]} &
  done
done
wait
