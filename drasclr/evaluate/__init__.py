"""Downstream evaluation of frozen features: readouts, survival, detection, baselines, figures.

Modules (import them directly; nothing here starts Ray or imports matplotlib):

* :mod:`drasclr.evaluate.readouts` — image-level linear readouts by cross-validation.
* :mod:`drasclr.evaluate.survival` — penalised Cox PH and time-dependent concordance.
* :mod:`drasclr.evaluate.detection` — emphysema box detection, the 25 % rule, label efficiency,
  detected volume per GOLD stage, Dice against voxel truth.
* :mod:`drasclr.evaluate.baselines` — LAA-950 features and multi-method tables.
* :mod:`drasclr.evaluate.figures` — PNG figures of the tables.
"""

from drasclr.evaluate.config import EvaluateConfig

__all__ = ["EvaluateConfig"]
