#!/bin/bash
# Round 31: the key encoder's momentum, which issue 10 asks to decide with a measurement and
# round 1 changed (0.999 -> 0.99) together with the real negatives, never on its own. Both
# sides of the current 0.99 (a horizon of ~1 / (1 - m) = 100 steps): the paper's 0.999
# (~1,000 steps, longer than these 700-step runs) and 0.95 (~20 steps, keys closer to the
# query encoder). The benchmark's DrasCLR (paired, neighbour head, tau 0.2) and plain MoCo
# (tau 0.5), seeds 2 and 3, 700 steps; the m 0.99 controls are round 26's lr 0.03 runs (same
# store and training code). Eight runs at once, one thread each.
# Usage: round31.sh RUN. Rule: docs/experiments/prereg22.md, quoted in docs/results.md.
set -euo pipefail
STEPS=${STEPS:-700}
. "$(dirname "$0")/common.sh"
R=$1; E=$R/recipe_round31; mkdir -p "$E"
for m in 0.999 0.95; do both "m$m" "2 3" momentum=$m; done
wait
