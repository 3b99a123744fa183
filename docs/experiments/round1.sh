#!/bin/bash
# Round 1 of the recipe experiments in docs/results.md (one seed, 100 steps, B = 32, 1 thread each).
# Usage: docs/experiments/round1.sh RUN   where RUN holds cohort/, store/ and patch_truth.parquet
# made by `drasclr bench science --out RUN` (its first stages) on the bench preset, n = 200, seed 0.
set -euo pipefail
R=${1:?run folder}; E=$R/recipe_round1; STEPS=100
. "$(dirname "$0")/common.sh"
mkdir -p "$E"
run random --random --set probe_every=25 &
run old --set probe_every=25 batch_negatives=false mask_queue=false prefill_queue=false \
    momentum=0.999 queue_cap_by_cohort=false contrast_prob=0.25 ; wait
run new --set probe_every=25 momentum=0.99 contrast_prob=0.25 &
run new_noc --set probe_every=25 momentum=0.99 contrast_prob=0.0 ; wait
