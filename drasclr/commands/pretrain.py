"""``drasclr pretrain``: DrasCLR pretraining on Ray Train (or in one process with ``--local``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def config_from_args(args: argparse.Namespace) -> Any:
    """The PretrainConfig of ``--config`` (YAML) with the command-line overrides applied."""
    from drasclr.train.config import PretrainConfig

    cfg = PretrainConfig.load(args.config) if args.config else PretrainConfig()
    overrides: dict[str, Any] = {}
    for name in ("workers", "steps", "epochs", "batch_size", "lr", "seed", "checkpoint_every",
                 "queue_size", "neighbours", "conditioning", "model", "cpus_per_worker",
                 "batch_mode"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    if args.steps is not None and args.epochs is None:
        overrides["steps"] = args.steps
    if args.epochs is not None and args.steps is None:
        overrides["steps"] = 0
    if getattr(args, "time_budget_minutes", None) is not None:
        overrides["time_budget_s"] = 60.0 * args.time_budget_minutes
    if args.gpu:
        overrides["use_gpu"] = True
    if args.deterministic:
        overrides["deterministic"] = True
    if getattr(args, "amp", False):
        overrides["amp"] = True
    return cfg.replace(**overrides) if overrides else cfg


def _pretrain(args: argparse.Namespace) -> int:
    from drasclr.store.layout import StoreError
    from drasclr.train.checkpoint import CheckpointError
    from drasclr.train.loader import LoaderError
    from drasclr.train.loop import NonFiniteLossError
    from drasclr.train.run import PretrainError, pretrain, train_single_process

    cfg = config_from_args(args)
    try:
        if args.local:
            res = train_single_process(cfg, args.store, args.out, overwrite=args.overwrite,
                                       progress=not args.quiet)
        else:
            res = pretrain(cfg, args.store, args.out, address=args.address,
                           storage_path=args.storage_path, overwrite=args.overwrite,
                           progress=not args.quiet)
    except (StoreError, CheckpointError, LoaderError, NonFiniteLossError, PretrainError) as err:
        print(f"drasclr pretrain: error: {err}", file=sys.stderr)
        return 2
    assert res is not None
    m = res.metrics
    print(
        f"pretrained {res.steps} steps{' (resumed)' if res.resumed else ''} in "
        f"{res.seconds:.1f} s: loss {m.get('loss', float('nan')):.4f}, "
        f"top-1 {m.get('top1', float('nan')):.3f}\nencoder export: {res.export_dir}"
    )
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``drasclr pretrain`` (shared with ``ray_jobs/pretrain.py``)."""
    p.add_argument("--store", required=True, type=Path, help="patch store directory")
    p.add_argument("--out", required=True, type=Path, help="run folder (re-running resumes)")
    p.add_argument("--config", type=Path, default=None, help="pretrain_config.yaml")
    p.add_argument("--workers", type=int, default=None,
                   help="Ray Train workers, one landmark shard each (default 1)")
    p.add_argument("--gpu", action="store_true", help="one GPU per worker, NCCL")
    p.add_argument("--steps", type=int, default=None,
                   help="total optimizer steps (default: derived from --epochs)")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs over the store (when --steps is not given)")
    p.add_argument("--time-budget-minutes", dest="time_budget_minutes", type=float, default=None,
                   help="stop when this much wall-clock time is spent, the learning rate annealed "
                        "over it (--steps / --epochs then only cap the run)")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=None,
                   help="B, subjects per batch per worker (default 128)")
    p.add_argument("--lr", type=float, default=None, help="base learning rate (default 0.01)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of weights, queues, landmark order and augmentation (default 0)")
    p.add_argument("--queue-size", dest="queue_size", type=int, default=None,
                   help="K, keys per landmark queue (default 4096)")
    p.add_argument("--neighbours", type=int, default=None,
                   help="k nearest landmarks per batch (0 disables the neighbour loss; default 2)")
    p.add_argument("--conditioning", default=None,
                   help="loccondconv (default) | none | concat | hypernet")
    p.add_argument("--model", default=None, help="drasclr (default) | moco")
    p.add_argument("--batch-mode", dest="batch_mode", choices=("landmark", "mixed"),
                   default=None, help="landmark: one landmark x B subjects a step (default); "
                                      "mixed: B random (landmark, subject) patches (plain MoCo)")
    p.add_argument("--checkpoint-every", dest="checkpoint_every", type=int, default=None,
                   help="optimizer steps between checkpoints (default 500; one at the end too)")
    p.add_argument("--cpus-per-worker", dest="cpus_per_worker", type=float, default=None,
                   help="CPUs reserved per Ray Train worker (fractions allowed; default 1)")
    p.add_argument("--deterministic", action="store_true", help="deterministic algorithms")
    p.add_argument("--amp", action="store_true",
                   help="mixed precision training step (float16 on GPU, bfloat16 on CPU)")
    p.add_argument("--storage-path", dest="storage_path", default=None,
                   help="Ray Train storage (path or s3:// URI; default <out>/ray)")
    p.add_argument("--address", default=None, help="Ray cluster address (e.g. auto)")
    p.add_argument("--local", action="store_true", help="one process, no Ray")
    p.add_argument("--overwrite", action="store_true", help="wipe an existing run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def register(sub: Any) -> None:
    """Add ``pretrain`` to the subcommand parsers."""
    p = sub.add_parser("pretrain", help="DrasCLR pretraining on Ray Train (resumable)")
    add_arguments(p)
    p.set_defaults(handler=_pretrain)
