#!/bin/bash
# Round 5 of the recipe experiments in docs/results.md: a scan-level shortcut. Same harness and
# settings as round4.sh (DrasCLR, every current default, 416 steps, seeds 0 and 1).
#   density : density_scale = 0.25: each view's lung density is scaled about air by 1 + U(-0.25,
#             0.25) (healthy lung -850 HU moves by up to +-38 HU, air-filled voxels stay at about
#             -1000 HU), so a scan's inspiration level stops telling two scans apart
set -euo pipefail
R=${1:?run folder}; E=$R/recipe_round4; STEPS=416
. "$(dirname "$0")/common.sh"
mkdir -p "$E"
run density_s0 --set probe_every=104 seed=0 density_scale=0.25 &
run density_s1 --set probe_every=104 seed=1 density_scale=0.25 ; wait
