#!/bin/bash
# Round 28: views that stay closer still. At translate_vox 4 the two views of a 32^3 patch can
# be 8 voxels apart per axis, so their lesion content differs; +-2 continues round 3's
# +-12 -> +-4. The benchmark's DrasCLR (paired, neighbour head, tau 0.2) and plain MoCo
# (tau 0.5) at translate_vox 2, seeds 2 and 3, 700 steps; the translate_vox 4 controls are
# round 26's lr 0.03 runs (same store and training code). Four runs at once, one thread each.
# Usage: round28.sh RUN. Rule: docs/experiments/prereg21.md, quoted in docs/results.md.
set -euo pipefail
STEPS=${STEPS:-700}
. "$(dirname "$0")/common.sh"
R=$1; E=$R/recipe_round28; mkdir -p "$E"
both t2 "2 3" translate_vox=2
wait
