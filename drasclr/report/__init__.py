"""Every figure and the run report: plotting toolkit, QC and evaluation figures, Markdown report.

- :mod:`~drasclr.report.plotting`: headless matplotlib figures, PNG to a file or to bytes.
- :mod:`~drasclr.report.qc`: preprocessing QC figures (per subject, cohort sheet) and outliers.
- :mod:`~drasclr.report.figures`: evaluation, pretraining and sweep figures (the paper's, as PNG).
- :mod:`~drasclr.report.cohort`: a synthetic cohort's preview and label-distribution figures.
- :mod:`~drasclr.report.markdown`: :func:`~drasclr.report.markdown.write_report`, the Markdown
  run report with its figures and generated reading.

Import rule: ``plotting``, ``qc`` and ``figures`` sit low (just above ``imaging``), so every
stage may draw with them; ``markdown`` sits above ``evaluate`` and reads its tables from disk.
This package imports none of its modules, so ``import drasclr.report`` does not import
matplotlib.
"""
