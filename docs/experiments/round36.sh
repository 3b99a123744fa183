#!/bin/bash
# Round 36: translation +-8 on a second screening cohort (cohort 6), for next session's decision
# on the benchmark's default (round 35 adopted +-8 on cohort 7; the Done-when run at f542ae2 then
# lowered DrasCLR on cohort 0, which decides nothing by itself: it is the test cohort). The
# benchmark's DrasCLR (paired, neighbour head, tau 0.2, m 0.95) and plain MoCo (tau 0.5, m 0.99)
# at translate_vox 8, seeds 2 and 3, 700 steps, four runs at once, one thread each. The +-4
# controls on this store: DrasCLR m 0.95 from round 31, plain MoCo from round 26 (training code
# unchanged since). Usage: round36.sh RUN. Rule: docs/experiments/prereg24.md.
set -euo pipefail
STEPS=${STEPS:-700}
. "$(dirname "$0")/common.sh"
R=$1; E=$R/recipe_round36; mkdir -p "$E"
both t8 "2 3" translate_vox=8
wait
