#!/bin/bash
# Round 1 of the recipe experiments in docs/results.md (one seed, 100 steps, B = 32, 1 thread each).
# Usage: docs/experiments/round1.sh RUN   where RUN holds cohort/, store/ and patch_truth.parquet
# made by `drasclr bench science --out RUN` (its first stages) on the bench preset, n = 200, seed 0.
set -euo pipefail
R=${1:?run folder}; S=$R/store; T=$R/patch_truth.parquet; E=$R/recipe_round1
H="$(dirname "$0")/recipe_probe.py"
mkdir -p "$E"
run() { python "$H" --store "$S" --truth "$T" --out "$E/$1" --steps 100 --threads 1 \
          --eval-landmarks 40 "${@:2}" > "$E/$1.log" 2>&1; }
run random --random --set probe_every=25 &
run old --set probe_every=25 batch_negatives=false mask_queue=false prefill_queue=false \
    momentum=0.999 queue_cap_by_cohort=false contrast_prob=0.25 ; wait
run new --set probe_every=25 momentum=0.99 contrast_prob=0.25 &
run new_noc --set probe_every=25 momentum=0.99 contrast_prob=0.0 ; wait
