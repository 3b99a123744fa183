#!/bin/bash
# Round 2 of the recipe experiments in docs/results.md: nuisance-invariant views (two seeds,
# 150 steps, B = 32, 1 thread per run, two runs at a time).
# Usage: docs/experiments/round2.sh RUN   where RUN holds store/ and patch_truth.parquet made by
# `drasclr bench science --out RUN --preset bench --n 200 --seed 0` (its first stages).
#   base     : the current defaults (real negatives, m = 0.99, no gamma contrast, official noise:
#              sigma 50 HU on 25 % of views)
#   nuisance : every view gets noise with sigma ~ U(0, 50) HU and a whole-view offset
#              U(-30, 30) HU, so a view's noise level and overall density no longer identify
#              its scan (the synthetic scans, like real ones, differ in noise and inspiration)
set -euo pipefail
R=${1:?run folder}; E=$R/recipe_round2; STEPS=150
. "$(dirname "$0")/common.sh"
mkdir -p "$E"
NUIS="noise_prob=1.0 noise_sample_std=true shift_hu=30.0"
for seed in 0 1; do
  run base_s$seed --set probe_every=50 seed=$seed &
  run nuisance_s$seed --set probe_every=50 seed=$seed $NUIS ; wait
done
