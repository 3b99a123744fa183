"""``ray job submit ... -- python ray_jobs/preprocess.py --inputs … --atlas … --store …``

Thin entry point: attaches to the cluster that runs the job (``address="auto"``) and calls the
library's preprocessing with the same arguments as ``drasclr preprocess``.
"""

from __future__ import annotations

import os
import sys

import ray

from drasclr.cli import main

if __name__ == "__main__":
    if os.environ.get("RAY_ADDRESS") or os.environ.get("RAY_JOB_ID"):
        ray.init(address="auto")
    sys.exit(main(["preprocess", *sys.argv[1:]]))
