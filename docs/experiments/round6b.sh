#!/bin/bash
# Round 6, more seeds: flip_prob = 0.5 with seeds 2 and 3, otherwise as round6.sh (the flip arm
# lifted seed 0's training probe from 0.00-0.01 to 0.11 by step 208).
set -euo pipefail
R=${1:?run folder}; E=$R/recipe_round4; STEPS=416
. "$(dirname "$0")/common.sh"
mkdir -p "$E"
run flip_s2 --set probe_every=104 seed=2 flip_prob=0.5 &
run flip_s3 --set probe_every=104 seed=3 flip_prob=0.5 ; wait
