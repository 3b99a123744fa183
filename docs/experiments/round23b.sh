#!/bin/bash
# Round 23b: round 23's one-way and both-ways arms on three more seeds (5-7), the second look
# registered after round 23 (docs/results.md). Usage: round23b.sh RUN; six runs at once.
SEEDS="5 6 7" ARMS="oneway both" exec "$(dirname "$0")/round23.sh" "$@"
