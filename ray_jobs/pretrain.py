"""``ray job submit -- python ray_jobs/pretrain.py --store ... --out ...``: pretraining on a cluster.

A thin entry point: parses the same options as ``drasclr pretrain`` and calls
:func:`drasclr.train.run.pretrain`, connecting to the running cluster (``address="auto"``) when one
exists, otherwise starting an embedded Ray instance. ``--store`` and ``--config`` may be ``s3://``
URIs (downloaded first) and ``--out`` too (an existing run is downloaded and resumed; the run folder
is uploaded with its completion marker when training succeeds; see ``_storage.py``). Local paths
must be on storage every node sees.
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    """Parse options, pretrain, print where the export went."""
    from drasclr.commands.pretrain import _pretrain, add_arguments

    parser = argparse.ArgumentParser(prog="ray_jobs/pretrain.py", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.address is None and not args.local and (
        os.environ.get("RAY_ADDRESS") or os.path.exists("/tmp/ray/ray_current_cluster")
    ):
        args.address = "auto"
    return _pretrain(args)


def run(argv: list[str]) -> int:
    """Stage remote locations, pretrain, publish the run folder; exit status."""
    from _storage import run_staged

    return run_staged("ray_jobs/pretrain.py", argv, main, reads=("--store", "--config"),
                      writes=("--out",))

if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
