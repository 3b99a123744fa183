#!/bin/bash
# Round 43: does DrasCLR's lead over plain MoCo, or its use of location, grow with training
# length? The benchmark's two arms at 700 and at 2,800 steps (4x), seeds 2 and 3, cohort 6;
# descriptive (docs/experiments/prereg28.md). Then the location check on every export.
# Usage: round43.sh STORE_RUN (holding store/ and patch_truth.parquet, cohort seed 6).
set -euo pipefail
. "$(dirname "$0")/common.sh"
R=$1; E=$R/recipe_round43; mkdir -p "$E"
for s in 2 3; do
  STEPS=2800 run "pairnh_long_s$s" --set probe_every=700 seed="$s" $BENCH_DRASCLR &
  STEPS=2800 run "moco_long_s$s" --set probe_every=700 seed="$s" $BENCH_MOCO &
done
LP="$(dirname "$0")/location_probe.py"
check() { python "$LP" --store "$R/store" --truth "$R/patch_truth.parquet" --export "$E/$1/export" \
            --out "$E/location.jsonl" > "$E/location_$1.log" 2>&1; }
(
  for s in 2 3; do
    STEPS=700 run "pairnh_base_s$s" --set probe_every=700 seed="$s" $BENCH_DRASCLR &
    STEPS=700 run "moco_base_s$s" --set probe_every=700 seed="$s" $BENCH_MOCO &
  done
  wait
  check pairnh_base_s2; check pairnh_base_s3
) &
wait
check pairnh_long_s2; check pairnh_long_s3
