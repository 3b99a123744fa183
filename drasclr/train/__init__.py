"""Pretraining (DESIGN.md §5): landmark-sharded loader, the per-worker loop, checkpoints, Ray
Train orchestration and the encoder export.

Public entry points: :func:`drasclr.train.run.pretrain` (Ray Train),
:func:`drasclr.train.run.train_single_process` (one process, no Ray) and
:func:`drasclr.train.export.load_encoder`. Importing this package does not import Ray.
"""

from drasclr.train.config import PretrainConfig

__all__ = ["PretrainConfig"]
