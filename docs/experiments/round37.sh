#!/bin/bash
# Round 37: the neighbour loss's weight beta 0.5 against 1 in the benchmark's DrasCLR (paired,
# neighbour head, tau 0.2, m 0.95, +-4), one pretraining seed (2) on each of four cohorts, 700
# steps, one thread a run. Cohorts 6 and 7 reuse their beta-1 controls (rounds 31 and 33, training
# code unchanged since); cohorts 8 and 9 (new stores) run the control and plain MoCo too.
# Usage: round37.sh STORES_DIR PART, PART one of "old" (c6, c7) or "new" (c8, c9); the run folders
# are STORES_DIR/cN. Rule: docs/experiments/prereg25.md.
set -euo pipefail
STEPS=${STEPS:-700}
. "$(dirname "$0")/common.sh"
D=$1; PART=$2
case $PART in old) COHORTS="6 7";; new) COHORTS="8 9";; *) echo "PART: old or new" >&2; exit 2;; esac
for c in $COHORTS; do
  R=$D/c$c; E=$R/recipe_round37; mkdir -p "$E"
  run "pairnh_b0.5_s2" --set probe_every="$STEPS" seed=2 $BENCH_DRASCLR neighbour_weight=0.5 &
  if [ "$PART" = new ]; then
    run "pairnh_b1_s2" --set probe_every="$STEPS" seed=2 $BENCH_DRASCLR &
    run "moco_s2" --set probe_every="$STEPS" seed=2 $BENCH_MOCO &
  fi
done
wait
