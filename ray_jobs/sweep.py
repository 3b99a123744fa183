"""``ray job submit ... -- python ray_jobs/sweep.py --store … --labels … --out …``

Thin entry point: attaches to the job's cluster and runs ``drasclr sweep`` with the same
arguments (trials are scheduled by Ray Tune across the cluster's CPUs/GPUs).
"""

from __future__ import annotations

import os
import sys

import ray

from drasclr.cli import main

if __name__ == "__main__":
    if os.environ.get("RAY_ADDRESS") or os.environ.get("RAY_JOB_ID"):
        ray.init(address="auto")
    sys.exit(main(["sweep", *sys.argv[1:]]))
