#!/bin/bash
# Round 6 of the recipe experiments in docs/results.md: structure or intensity. Same harness and
# settings as round4.sh (DrasCLR, every current default, 416 steps, seeds 0 and 1).
#   flip : flip_prob = 0.5, each view mirrored along each axis independently (after the affine).
#          Round 4's seed-0 encoders encoded neither emphysema nor the scan's density level;
#          seed 1's encoded both. Mirrored views make matching the layout of vessels and walls
#          harder and leave intensity statistics unchanged.
set -euo pipefail
R=${1:?run folder}; E=$R/recipe_round4; STEPS=416
. "$(dirname "$0")/common.sh"
mkdir -p "$E"
run flip_s0 --set probe_every=104 seed=0 flip_prob=0.5 &
run flip_s1 --set probe_every=104 seed=1 flip_prob=0.5 ; wait
