"""Downstream evaluation of frozen features: the paper's experiments and their parts.

Modules (import them directly; nothing here starts Ray or imports matplotlib):

* :mod:`drasclr.evaluate.run` — the evaluation stage: reads the inputs, runs the experiments the
  inputs allow, saves their tables and ``results.json``.
* :mod:`drasclr.evaluate.inputs` — method feature folders and the store's preprocessing settings.
* :mod:`drasclr.evaluate.contracts` — the result tables' schemas (``schemas/eval_*.json``),
  checked before a table is written.
* Experiments, one module each: :mod:`~drasclr.evaluate.image_readouts` (Tables 2 and 7),
  :mod:`~drasclr.evaluate.powered_readouts`, :mod:`~drasclr.evaluate.patch_probe`,
  :mod:`~drasclr.evaluate.survival` (Table 3), :mod:`~drasclr.evaluate.box_detection`
  (Table 5), :mod:`~drasclr.evaluate.label_efficiency` (Fig. 5),
  :mod:`~drasclr.evaluate.detected_fraction` (Fig. 4), :mod:`~drasclr.evaluate.dense_maps`
  (Fig. 3, the 25 % rule), :mod:`~drasclr.evaluate.headline`.
* Building blocks: :mod:`~drasclr.evaluate.readouts` (image-level linear readouts by
  cross-validation), :mod:`~drasclr.evaluate.detection` (box readouts, the 25 % rule, label
  efficiency, detected volume, Dice against voxel truth), :mod:`~drasclr.evaluate.boxes` (scans
  and boxes as encoder inputs, box probes), :mod:`~drasclr.evaluate.baselines` (LAA-950 features
  and multi-method tables), :mod:`~drasclr.evaluate.finetune`,
  :mod:`~drasclr.evaluate.image_probe` and :mod:`~drasclr.evaluate.science` (powered readouts).

Box geometry on image arrays lives in :mod:`drasclr.imaging.boxes`; figures in
:mod:`drasclr.report`.
"""

from drasclr.evaluate.config import EvaluateConfig

__all__ = ["EvaluateConfig"]
