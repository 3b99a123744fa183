"""``ray job submit ... -- python ray_jobs/run.py --inputs … --labels … --out …``

The real-data chain on a cluster: the same arguments as ``drasclr run`` (labels check → atlas →
preprocess → pretrain → extract → evaluate → report), attached to the cluster that runs the job
(``address="auto"``). ``--inputs`` (a folder of scans), ``--labels`` and ``--atlas`` may be
``s3://`` URIs (downloaded first); ``--out`` may be one too: an existing run folder is downloaded
and resumed, and the run is uploaded with its completion marker when it succeeds (see
``_storage.py``). With remote inputs on several nodes, set ``DRASCLR_SCRATCH`` to storage all
nodes mount.
"""

from __future__ import annotations

import os
import sys

import ray
from _storage import run_staged, warn_if_scratch_not_shared

from drasclr.cli import main

READS = ("--inputs", "--labels", "--atlas")
WRITES = ("--out",)


def run(argv: list[str]) -> int:
    """Stage remote locations, run ``drasclr run``, publish the run folder; exit status."""
    if os.environ.get("RAY_ADDRESS") or os.environ.get("RAY_JOB_ID"):
        ray.init(address="auto")
    warn_if_scratch_not_shared(argv, READS)
    return run_staged("ray_jobs/run.py", argv, lambda a: main(["run", *a]),
                      reads=READS, writes=WRITES)


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
