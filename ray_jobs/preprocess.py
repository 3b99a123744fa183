"""``ray job submit ... -- python ray_jobs/preprocess.py --inputs … --atlas … --store …``

Thin entry point: attaches to the cluster that runs the job (``address="auto"``) and calls the
library's preprocessing with the same arguments as ``drasclr preprocess``. ``--inputs``,
``--atlas``, ``--labels`` and ``--config`` may be ``s3://`` URIs (downloaded first); ``--store``
may be one too: an existing store is downloaded and resumed, and the result is uploaded with its
completion marker when the run succeeds (see ``_storage.py``). A remote ``--inputs`` must be a
folder (synthetic cohort or scans): an inputs *table* is downloaded alone, so the scans it lists
are not. With remote inputs on several nodes, set ``DRASCLR_SCRATCH`` to storage all nodes mount.
"""

from __future__ import annotations

import os
import sys

import ray
from _storage import run_staged, warn_if_scratch_not_shared

from drasclr.cli import main

READS = ("--inputs", "--atlas", "--labels", "--config")
WRITES = ("--store",)


def run(argv: list[str]) -> int:
    """Stage remote locations, run ``drasclr preprocess``, publish the store; exit status."""
    if os.environ.get("RAY_ADDRESS") or os.environ.get("RAY_JOB_ID"):
        ray.init(address="auto")
    warn_if_scratch_not_shared(argv, READS)
    return run_staged("ray_jobs/preprocess.py", argv, lambda a: main(["preprocess", *a]),
                      reads=READS, writes=WRITES)


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
