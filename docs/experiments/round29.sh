#!/bin/bash
# Round 29: the local contrast's target shared with the nearest other subject's key
# (nn_positive_weight 0.5). DrasCLR's negatives are other subjects at the same landmark, and
# many of them hold the same healthy tissue: the one-hot target asks the encoder to tell such
# patches apart by their individual layout. With 1 - w on the own key and w on the nearest
# usable key (key-key cosine), a patch is also drawn toward its most similar peer, which at
# one landmark differs from it mostly in what a group of similar patches shares (density).
# Plain MoCo gets the same term (nearest key in its global queue). The benchmark's DrasCLR
# (paired, neighbour head, tau 0.2) and plain MoCo (tau 0.5), seeds 2-5, 700 steps; the
# controls are rounds 26 / 27 / 27b's runs of the same store and training code.
# Eight runs at once, one thread each.
# Usage: round29.sh RUN. Rule: docs/experiments/prereg22.md, quoted in docs/results.md.
set -euo pipefail
STEPS=${STEPS:-700}
. "$(dirname "$0")/common.sh"
R=$1; E=$R/recipe_round29; mkdir -p "$E"
both nn05 "2 3 4 5" nn_positive_weight=0.5
wait
