#!/bin/bash
# Round 30: ghost BatchNorm (bn_groups 2), the single-process stand-in for MoCo's shuffle-BN
# that issue 10 asks to decide with a measurement and round 1 left unmeasured. Without it a
# step's keys share one batch statistic, computed over the very subjects whose queries are
# contrasted against them, while queued keys carry older batches' statistics: the positive can
# be told from queued negatives by its batch's signature (the leak shuffle-BN removes). With
# bn_groups 2 the queries are normalised in two groups in batch order and the keys in two
# groups after a random permutation, so a query and its key mostly see different statistics.
# The benchmark's DrasCLR (paired, neighbour head, tau 0.2) and plain MoCo (tau 0.5), seeds 2
# and 3, 700 steps; the controls are round 26's lr 0.03 runs (same store and training code).
# Four runs at once, one thread each.
# Usage: round30.sh RUN. Rule: docs/experiments/prereg22.md, quoted in docs/results.md.
set -euo pipefail
STEPS=${STEPS:-700}
. "$(dirname "$0")/common.sh"
R=$1; E=$R/recipe_round30; mkdir -p "$E"
both gbn2 "2 3" bn_groups=2
wait
