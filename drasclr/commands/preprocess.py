"""``drasclr atlas`` and ``drasclr preprocess``: build an atlas; scans -> patch store."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def _config(args: argparse.Namespace) -> Any:
    from drasclr.preprocess.config import PreprocessConfig

    cfg = PreprocessConfig.load(args.config) if args.config else PreprocessConfig()
    changes: dict[str, Any] = {}
    if getattr(args, "segmenter", None):
        changes["segment"] = cfg.segment.replace(backend=args.segmenter)
    if getattr(args, "lungmask_weights", None):
        seg = changes.get("segment", cfg.segment)
        changes["segment"] = seg.replace(lungmask_weights=str(args.lungmask_weights))
    if getattr(args, "workers", None):
        changes["workers"] = args.workers
    if getattr(args, "retry_failed", False):
        changes["retry_failed"] = True
    if getattr(args, "no_qc_figures", False):
        changes["qc_figures"] = False
    return cfg.replace(**changes) if changes else cfg


def _atlas(args: argparse.Namespace) -> int:
    from drasclr.imaging.atlas import atlas_from_files, save_atlas
    from drasclr.preprocess.subject import atlas_from_ct

    cfg = _config(args)
    if args.ct is not None and args.grid is None:
        atlas = atlas_from_ct(args.ct, cfg, atlas_id=args.id, mask_path=args.mask)
    elif args.mask is not None:
        atlas = atlas_from_files(args.mask, ct_path=args.ct, grid_path=args.grid,
                                 atlas_id=args.id)
    else:
        raise ValueError("drasclr atlas needs --ct (a subject CT) or --mask (an atlas lung mask)")
    save_atlas(atlas, args.out)
    print(f"atlas '{atlas.atlas_id}': {atlas.n_landmarks} landmarks, mask "
          f"{atlas.mask.shape[::-1]} voxels (x, y, z) -> {args.out}")
    return 0


def _preprocess(args: argparse.Namespace) -> int:
    from drasclr.preprocess.run import run_preprocess

    summary = run_preprocess(args.inputs, args.atlas, args.store, _config(args),
                             labels=args.labels, overwrite=args.overwrite,
                             progress=not args.quiet, num_cpus=args.num_cpus)
    print(summary.text())
    print(f"QC sheet: {Path(args.store) / 'reports' / 'qc_sheet.png'}; per-subject figures in "
          f"{Path(args.store) / 'qc'}")
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None, help="preprocess_config.yaml with the settings")
    p.add_argument("--segmenter", choices=["threshold", "lungmask", "auto"], default=None,
                   help="lung segmentation backend (default threshold)")
    p.add_argument("--lungmask-weights", type=Path, default=None,
                   help="local R231 weights file for the lungmask backend (never downloaded)")


def register(sub: Any) -> None:
    """Add ``atlas`` and ``preprocess``."""
    a = sub.add_parser("atlas",
                       help="build an atlas (lung mask + landmark grid) from a CT or files")
    a.add_argument("--ct", type=Path, default=None, help="atlas subject CT (its lungs segmented)")
    a.add_argument("--mask", type=Path, default=None,
                   help="atlas lung mask (instead of segmenting)")
    a.add_argument("--grid", type=Path, default=None,
                   help="published landmark grid .npy (patch corners, x y z) to use")
    a.add_argument("--id", default=None, help="atlas name (default: file name)")
    a.add_argument("--out", type=Path, required=True, help="atlas folder to write")
    _common(a)
    a.set_defaults(handler=_atlas)

    p = sub.add_parser("preprocess", help="scans -> 1 mm -> lung mask -> atlas registration -> "
                                          "landmark patches in a Zarr store, on Ray Data")
    p.add_argument("--inputs", type=Path, required=True,
                   help="folder of scans, synthetic cohort folder, or table subject_id,input_path")
    p.add_argument("--atlas", type=Path, required=True, help="atlas folder (drasclr atlas)")
    p.add_argument("--store", type=Path, required=True, help="patch store directory")
    p.add_argument("--labels", type=Path, default=None,
                   help="labels table to validate and keep with the store")
    p.add_argument("--workers", type=int, default=None, help="subject workers (default: CPUs)")
    p.add_argument("--num-cpus", type=int, default=None,
                   help="CPUs of an embedded Ray (default: all)")
    p.add_argument("--retry-failed", action="store_true",
                   help="re-process subjects that failed before")
    p.add_argument("--no-qc-figures", action="store_true", help="skip per-subject QC PNGs")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _common(p)
    p.set_defaults(handler=_preprocess)
