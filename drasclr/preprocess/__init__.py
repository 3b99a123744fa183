"""The preprocessing stage: raw CT -> 1 mm -> lung mask -> affine to atlas -> patch store.

- :mod:`~drasclr.preprocess.config`: :class:`PreprocessConfig`, the stage config.
- :mod:`~drasclr.preprocess.inputs`: discovering the scans of a run and hashing them.
- :mod:`~drasclr.preprocess.subject`: the per-subject pipeline (no Ray), an atlas from one CT.
- :mod:`~drasclr.preprocess.run`: the Ray Data run: plan, subject actors, blocks, manifest commits.
- :mod:`~drasclr.preprocess.atlas_choice`: choosing the atlas subject from the scans alone.

Import rule: ``preprocess`` builds on ``imaging`` (image math), ``store`` (writer and reader) and
``report.qc`` (figures); it never imports ``nn``, ``train``, ``features`` or ``evaluate`` (those
may import it). This package imports none of its modules, so ``import drasclr.preprocess`` does
not import Ray; Ray is reached only when :func:`~drasclr.preprocess.run.run_preprocess` or
:func:`~drasclr.preprocess.atlas_choice.choose_atlas_subject` runs.
"""
