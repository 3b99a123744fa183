"""``drasclr extract``: patch and image features of a patch store with a trained encoder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def _extract(args: argparse.Namespace) -> int:
    from drasclr.features import FeaturesError
    from drasclr.store.layout import StoreError

    try:
        return _run(args)
    except (FeaturesError, StoreError) as err:
        print(f"drasclr extract: error: {err}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from drasclr.features import FeaturesConfig, export_dir, extract_features_ray
    from drasclr.raytools import ray_session

    cfg = FeaturesConfig.load(args.config) if args.config else FeaturesConfig()
    changes: dict[str, Any] = {}
    for name in (
        "batch_size",
        "order",
        "seed",
        "device",
        "num_actors",
        "cpus_per_actor",
        "gpus_per_actor",
        "bn_stats",
    ):
        value = getattr(args, name)
        if value is not None:
            changes[name] = value
    if args.random_locations:
        changes["random_locations"] = True
    cfg = cfg.replace(**changes) if changes else cfg
    export_dir(args.run)  # fail fast, naming the folder, before starting Ray
    with ray_session(num_cpus=args.num_cpus, address=args.address):
        res = extract_features_ray(args.run, args.store, args.out, cfg, overwrite=args.overwrite)
    if res.skipped:
        print(f"features {res.out_dir}: already done (fingerprint {res.fingerprint}), skipped")
    else:
        rate = res.n_patches / max(res.seconds, 1e-9)
        print(
            f"features {res.out_dir}: {res.n_subjects} subjects, {res.n_patches} patches in "
            f"{res.seconds:.1f} s ({rate:.0f} patches/s)\n  image features: {res.image_path}\n"
            f"  patch features: {res.patch_path}"
        )
    return 0


def register(sub: Any) -> None:
    """Add ``extract`` to the subcommand parsers."""
    p = sub.add_parser(
        "extract",
        help="patch and image features of a patch store (Ray Data batch inference)",
        description="Encode every valid patch of a store with a trained encoder; write patch "
        "features (subject x landmark x 128) and image features (their mean) as Parquet.",
    )
    p.add_argument(
        "--run", type=Path, required=True, help="training run folder or its export/ folder"
    )
    p.add_argument("--store", type=Path, required=True, help="patch store (preprocessing output)")
    p.add_argument("--out", type=Path, required=True, help="output folder for the feature tables")
    p.add_argument(
        "--random-locations",
        action="store_true",
        help="perturbation ablation: condition every patch on a random location (seeded)",
    )
    p.add_argument(
        "--seed", type=int, default=None, help="seed of the random locations (default 0)"
    )
    p.add_argument("--config", type=Path, default=None, help="a features_config.yaml to start from")
    p.add_argument("--batch-size", type=int, default=None, help="patches per encoder call (64)")
    p.add_argument("--order", choices=["landmark", "subject"], default=None,
                   help="batch order: landmark (default; many subjects at one landmark per "
                        "batch) or subject")
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--bn-stats", choices=["running", "landmark"], default=None,
                   help="BatchNorm statistics: the training run's averages (running, default) "
                        "or recomputed per landmark over the extracted subjects (landmark)")
    p.add_argument("--num-actors", type=int, default=None, help="encoder actors (default 1)")
    p.add_argument("--cpus-per-actor", type=float, default=None, help="CPUs per actor (1)")
    p.add_argument("--gpus-per-actor", type=float, default=None, help="GPUs per actor (0)")
    p.add_argument("--num-cpus", type=int, default=None,
                   help="CPUs for an embedded Ray instance (default: all)")
    p.add_argument("--address", default=None, help="connect to this Ray cluster (e.g. auto)")
    p.add_argument(
        "--overwrite", action="store_true", help="replace features of another run in --out"
    )
    p.set_defaults(handler=_extract)
