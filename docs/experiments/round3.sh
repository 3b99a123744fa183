#!/bin/bash
# Round 3 of the recipe experiments in docs/results.md: how far the two views of a patch are
# moved apart (two seeds, 150 steps, B = 32, 1 thread per run, two runs at a time).
# Usage: docs/experiments/round3.sh RUN   (RUN as in round2.sh; base_s0/base_s1 of round 2 are
# the translate_vox=12 arm).
#   shift4 : the official affine but translations of +-4 voxels instead of +-12 on 32^3
#            patches; with +-12 the two views of one patch can be 24 voxels apart, sharing a
#            quarter of their extent along an axis, and round 2's top-1 stayed near chance.
set -euo pipefail
R=${1:?run folder}; E=$R/recipe_round2; STEPS=150
. "$(dirname "$0")/common.sh"
mkdir -p "$E"
run shift4_s0 --set probe_every=50 seed=0 translate_vox=4.0 &
run shift4_s1 --set probe_every=50 seed=1 translate_vox=4.0 ; wait
