#!/bin/bash
# Round 42: the benchmark's DrasCLR arm with static convolutions (conditioning "none"), seeds 2
# and 3, cohorts 6-9, 700 steps; a diagnostic (docs/experiments/prereg27.md).
# Usage: round42.sh STORES_DIR (holding c6, c7, r37/c8, r37/c9).
set -euo pipefail
. "$(dirname "$0")/common.sh"
D=$1
STEPS=700
for c in c6 c7 r37/c8 r37/c9; do
  R=$D/$c; E=$R/recipe_round42; mkdir -p "$E"
  for s in 2 3; do
    run "pairnh_static_s$s" --set probe_every=700 seed="$s" $BENCH_DRASCLR conditioning='"none"' &
  done
done
wait
