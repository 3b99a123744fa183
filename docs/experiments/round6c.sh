#!/bin/bash
# Round 6, the paired baseline: the current recipe (no mirroring) at 416 steps on seeds 2 and 3,
# the partners of round6b.sh's mirrored runs.
set -euo pipefail
R=${1:?run folder}; E=$R/recipe_round4; STEPS=416
. "$(dirname "$0")/common.sh"
mkdir -p "$E"
run base_s2 --set probe_every=104 seed=2 &
run base_s3 --set probe_every=104 seed=3 ; wait
