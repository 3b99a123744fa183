#!/bin/bash
# Round 4 of the recipe experiments in docs/results.md: how fast DrasCLR learns, per step and per
# second. DrasCLR with every current default at 416 steps (no-neighbour DrasCLR's step count in
# the science run of 21aea86), seeds 0 and 1, B = 32, 1 thread per run, two runs at a time. The
# SGD arm at lr 0.03 is the equal-steps run of docs/results.md (seed 0: 0.065, seed 1: 0.518).
#   adamw : AdamW, lr 1e-3, same warm-up (20 steps), cosine decay and weight decay (1e-4)
# Usage: docs/experiments/round4.sh RUN   (RUN: a `drasclr bench science` folder with store/ and
# patch_truth.parquet)
set -euo pipefail
R=${1:?run folder}; E=$R/recipe_round4; STEPS=416
. "$(dirname "$0")/common.sh"
mkdir -p "$E"
run adamw_s0 --set probe_every=104 seed=0 optimizer='"adamw"' lr=0.001 &
run adamw_s1 --set probe_every=104 seed=1 optimizer='"adamw"' lr=0.001 ; wait
