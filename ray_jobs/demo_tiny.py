"""``ray job submit ... -- python ray_jobs/demo_tiny.py --out <dir or s3://…>``

The smallest end-to-end job: a synthetic ``tiny`` cohort -> an atlas from its first subject ->
preprocessing into a patch store. Everything lands under ``--out``::

    cohort/   synthetic scans and their manifest
    atlas/    atlas folder (drasclr atlas)
    store/    patch store with manifest, QC figures and reports
    demo_summary.json

``--out`` may be an ``s3://`` URI: an existing tree is downloaded (so a re-run resumes and skips
finished work) and the result uploaded with its completion marker when the job succeeds. Used
by the job-submission test; also a quick check that a new cluster works.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from drasclr import uri
from drasclr.fsutil import atomic_write_text
from drasclr.imaging.atlas import load_atlas, save_atlas
from drasclr.preprocess.config import PreprocessConfig
from drasclr.preprocess.inputs import discover_inputs
from drasclr.preprocess.run import run_preprocess
from drasclr.preprocess.subject import atlas_from_ct
from drasclr.raytools import ray_session
from drasclr.synth.cohort import generate_cohort
from drasclr.synth.config import preset_config

SUMMARY = "demo_summary.json"


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line options of the demo job."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    p.add_argument("--out", required=True, help="output folder or s3:// prefix")
    p.add_argument("--n-subjects", type=int, default=4, help="cohort size (default 4)")
    p.add_argument("--seed", type=int, default=3, help="cohort seed")
    p.add_argument("--block-size", type=int, default=2, help="subjects per store block")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of an embedded Ray")
    p.add_argument("--overwrite", action="store_true", help="start from scratch")
    return p.parse_args(argv)


def demo(root: Path, args: argparse.Namespace) -> dict[str, object]:
    """Run the three stages under the local folder ``root``; returns the summary record."""
    t0 = time.perf_counter()
    cfg = PreprocessConfig(block_size=args.block_size)
    cohort = generate_cohort(preset_config("tiny", n_subjects=args.n_subjects, seed=args.seed),
                             root / "cohort", overwrite=args.overwrite, progress=False)
    t_synth = time.perf_counter() - t0
    atlas_dir = root / "atlas"
    if args.overwrite or not (atlas_dir / "atlas.json").is_file():
        first = discover_inputs(root / "cohort").iloc[0]
        save_atlas(atlas_from_ct(first["input_path"], cfg, atlas_id=str(first["subject_id"])),
                   atlas_dir)
    atlas = load_atlas(atlas_dir)
    t_atlas = time.perf_counter() - t0 - t_synth
    summary = run_preprocess(root / "cohort", atlas_dir, root / "store", cfg,
                             overwrite=args.overwrite, progress=False)
    print(summary.text(), flush=True)
    return {
        "n_subjects": cohort.n_subjects,
        "atlas_id": atlas.atlas_id, "n_landmarks": atlas.n_landmarks,
        "preprocess": summary.to_dict(),
        "seconds": {"synth": round(t_synth, 2), "atlas": round(t_atlas, 2),
                    "preprocess": round(summary.seconds, 2),
                    "total": round(time.perf_counter() - t0, 2)},
    }


def main(argv: list[str]) -> int:
    """Run the demo, staging ``--out`` when it is remote; exit status 1 if a subject failed."""
    args = parse_args(argv)
    in_job = bool(os.environ.get("RAY_ADDRESS") or os.environ.get("RAY_JOB_ID"))
    mode: uri.Mode = "w" if args.overwrite else "rw"
    with (ray_session(num_cpus=args.num_cpus, address="auto" if in_job else None),
          uri.local_cache(args.out, mode, require_complete=True) as root):
        root.mkdir(parents=True, exist_ok=True)
        record = demo(root, args)
        atomic_write_text(root / SUMMARY, json.dumps(record, indent=1))
        failed = int(record["preprocess"]["failed"])  # type: ignore[index]
        if failed:  # raising keeps a remote --out as it was
            print(f"demo_tiny: {failed} subject(s) failed; nothing uploaded", file=sys.stderr)
            raise SystemExit(1)
    print(f"demo_tiny: done -> {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
