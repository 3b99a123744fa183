"""The preprocessing stage config (:class:`PreprocessConfig`) and the names of its timed stages.

One frozen config for the whole stage (STYLE rule 3): the isotropic voxel size (``spacing_mm``,
1 mm), patch size P, store block size, lung segmentation
(:class:`~drasclr.imaging.segment.SegmentConfig`) and registration
(:class:`~drasclr.imaging.register.RegisterConfig`) settings, Ray resources, and the QC
thresholds that fail a subject (``min_dice``, ``min_fov_fraction``, ``min_lung_ml``) or only list
it as an outlier (``qc_dice``, ``qc_fov_fraction``). The run saves it as
``preprocess_config.yaml`` in the store. :meth:`PreprocessConfig.store_fingerprint` covers only
the settings that change stored patches: a changed fingerprint re-processes subjects, a changed
worker count does not. :data:`STAGES` names the timed stages (manifest columns ``t_<stage>``,
seconds).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from drasclr.config import StageConfig, check
from drasclr.imaging.register import (
    RegisterConfig,
)
from drasclr.imaging.segment import SegmentConfig

__all__ = [
    "STAGES",
    "PreprocessConfig",
]


STAGES = ("read", "resample", "segment", "register", "cut", "write")
"""Timed stages; manifest columns ``t_<stage>`` hold seconds."""


@dataclass(frozen=True)
class PreprocessConfig(StageConfig):
    """Settings of the preprocessing stage (saved as ``preprocess_config.yaml`` in the store).

    Attributes:
        spacing_mm: isotropic voxel size the scans are resampled to.
        patch_size: patch edge P in voxels.
        block_size: subjects per store block (the write unit).
        segment: lung segmentation settings.
        register: registration settings.
        cpus_per_subject: CPUs Ray reserves per subject worker (ITK threads follow it).
        workers: subject workers in the actor pool (None: as many as the cluster's CPUs allow).
        min_dice: a registration with Dice below this is retried from the other starts of
            ``register.retry_starts``; when the best of them is still below, the subject fails.
        min_fov_fraction: a subject with fewer landmark patches inside its field of view fails
            (lungs cut off by the field of view).
        qc_dice: QC outlier threshold on Dice (subject kept, listed in the summary); affine
            inter-subject registration of lung masks typically reaches 0.85-0.93, so robust
            outliers of the cohort are listed too (:func:`drasclr.report.qc.qc_outliers`).
        qc_fov_fraction: QC outlier threshold on the field-of-view fraction.
        min_lung_ml: a lung mask smaller than this (millilitres) fails the subject (no lungs).
        qc_figures: write a QC PNG per subject under ``qc/`` in the store.
        retry_failed: re-process subjects that failed before with the same input and config.
        max_worker_deaths: a subject whose worker process dies this many times (a crash inside
            ITK, the out-of-memory killer) becomes a failed row instead of being retried again.
    """

    stage: ClassVar[str] = "preprocess"

    spacing_mm: float = 1.0
    patch_size: int = 32
    block_size: int = 8
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    register: RegisterConfig = field(default_factory=RegisterConfig)
    cpus_per_subject: float = 1.0
    workers: int | None = None
    min_dice: float = 0.8
    min_fov_fraction: float = 0.5
    qc_dice: float = 0.8
    qc_fov_fraction: float = 0.9
    min_lung_ml: float = 20.0
    qc_figures: bool = True
    retry_failed: bool = False
    max_worker_deaths: int = 2

    def validate(self) -> None:
        """Check ranges; errors name the field."""
        s = self.stage
        check(0.25 <= self.spacing_mm <= 4.0, s, "spacing_mm", f"must be in [0.25, 4], got {self.spacing_mm}")
        check(self.patch_size >= 4 and self.patch_size % 2 == 0, s, "patch_size",
              f"must be even and >= 4, got {self.patch_size}")
        check(self.block_size >= 1, s, "block_size", f"must be >= 1, got {self.block_size}")
        check(self.cpus_per_subject > 0, s, "cpus_per_subject", "must be positive")
        check(self.workers is None or self.workers >= 1, s, "workers", "must be >= 1 or null")
        for name in ("min_dice", "min_fov_fraction", "qc_dice", "qc_fov_fraction"):
            v = getattr(self, name)
            check(0.0 <= v <= 1.0, s, name, f"must be in [0, 1], got {v}")
        check(self.min_lung_ml >= 0, s, "min_lung_ml", "must be >= 0")
        check(self.max_worker_deaths >= 1, s, "max_worker_deaths",
              f"must be >= 1, got {self.max_worker_deaths}")

    def store_fingerprint(self) -> str:
        """Fingerprint of the settings that change stored patches (not workers/CPUs/figures)."""
        keep = self.replace(cpus_per_subject=1.0, workers=None, qc_figures=True,
                            retry_failed=False, max_worker_deaths=2)
        return keep.fingerprint()


CONFIG_FILE = "preprocess_config.yaml"
"""Where a preprocessing run saves its :class:`PreprocessConfig`, inside the store folder."""


def saved_config(store_dir: str | Path) -> PreprocessConfig:
    """The preprocessing settings a patch store was written with (``<store>/CONFIG_FILE``).

    Later stages read ``spacing_mm`` and ``segment`` from here instead of restating them. Falls
    back to the defaults (``PreprocessConfig()``: 1 mm, the default segmentation) only when the
    store holds no saved config (stores written before the config was saved there); a saved
    config that cannot be read is an error (:class:`drasclr.config.ConfigError`).
    """
    path = Path(store_dir) / CONFIG_FILE
    if not path.is_file():
        return PreprocessConfig()
    return PreprocessConfig.load(path)
