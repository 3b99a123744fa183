#!/bin/bash
# Huge pages on / off for the training step: docs/experiments/step_cost.py (the science
# benchmark's step timing) run in fresh processes, alternating THP_MEM_ALLOC_ENABLE=0 / 1
# (PyTorch reads it once per process), with the process's kernel time and page faults.
#   docs/experiments/thp_ab.sh STORE [ROUNDS]
set -euo pipefail
STORE=${1:?store}; ROUNDS=${2:-2}
H="$(dirname "$0")/step_cost.py"
for r in $(seq "$ROUNDS"); do
  for thp in 0 1; do
    out=$(THP_MEM_ALLOC_ENABLE=$thp /usr/bin/time -f '%e s wall, %U s user, %S s sys, %R minor faults' \
          python "$H" "$STORE" nongb full moco 2>&1 | grep -E 's/step|faults' | tr '\n' ' ')
    echo "round $r THP_MEM_ALLOC_ENABLE=$thp: $out"
  done
done
