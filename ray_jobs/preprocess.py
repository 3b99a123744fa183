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
from _storage import staged_argv, warn_if_scratch_not_shared

from drasclr import uri
from drasclr.cli import main

READS = ("--inputs", "--atlas", "--labels", "--config")
WRITES = ("--store",)


def run(argv: list[str]) -> int:
    """Stage remote locations, run ``drasclr preprocess``, publish the store; exit status."""
    if os.environ.get("RAY_ADDRESS") or os.environ.get("RAY_JOB_ID"):
        ray.init(address="auto")
    warn_if_scratch_not_shared(argv, READS)
    try:
        with staged_argv(argv, reads=READS, writes=WRITES) as local_argv:
            status = main(["preprocess", *local_argv])
            if status != 0:  # raising leaves a remote store as it was
                raise SystemExit(status)
    except (uri.RemoteError, FileNotFoundError) as err:
        print(f"ray_jobs/preprocess.py: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
