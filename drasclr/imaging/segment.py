"""Lung segmentation: its config, the label convention and the dispatch to a backend.

Output convention (both backends): ``uint8`` labels indexed [z, y, x] like the input array,
0 background, 1 **right** lung, 2 **left** lung (:data:`RIGHT_LUNG`, :data:`LEFT_LUNG`). Right
means the patient's right, i.e. smaller LPS x in millimetres (for an identity direction: the
lower x index).

:func:`segment_lungs` runs the backend that :func:`resolve_backend` picks from
:class:`SegmentConfig`: ``threshold`` (:mod:`drasclr.imaging.segment_threshold`, numpy/scipy),
``lungmask`` (:mod:`drasclr.imaging.segment_lungmask`, the R231 U-Net with weights from a local
file named by ``SegmentConfig.lungmask_weights`` or ``$DRASCLR_LUNGMASK_WEIGHTS``) or ``auto``
(lungmask when that file exists, else threshold). Backends are imported only when used.
:func:`lung_volumes_ml` gives the (right, left) lung volumes of a label array in millilitres.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np

from drasclr.config import StageConfig, check
from drasclr.imaging.geometry import Geometry, Volume

log = logging.getLogger(__name__)

RIGHT_LUNG, LEFT_LUNG = 1, 2

__all__ = [
    "LUNGMASK_WEIGHTS_ENV",
    "SegmentationError",
    "SegmentConfig",
    "segment_lungs",
    "lungmask_weights_path",
    "resolve_backend",
    "lung_volumes_ml",
]


#: Environment variable naming a local lungmask R231 state-dict file (when the config names none).
LUNGMASK_WEIGHTS_ENV = "DRASCLR_LUNGMASK_WEIGHTS"


class SegmentationError(RuntimeError):
    """The lungs could not be found (or the segmentation backend failed)."""


@dataclass(frozen=True)
class SegmentConfig(StageConfig):
    """Lung segmentation settings.

    Attributes:
        backend: ``threshold`` (numpy/scipy), ``lungmask`` (R231 U-Net, needs local weights) or
            ``auto`` (lungmask when its weights file exists, else threshold).
        lungmask_weights: path of the R231 state-dict file; None = ``$DRASCLR_LUNGMASK_WEIGHTS``.
        lungmask_batch_size: slices per U-Net forward pass.
        lungmask_force_cpu: run the U-Net on CPU even when CUDA is available.
        threshold_hu: lung/air threshold in HU (voxels below are air).
        airway_hu: strict threshold in HU for tracking trachea and main bronchi lumen.
        bronchi_mm: how far below the carina (mm) the main bronchi are removed.
        work_spacing_mm: voxel size (mm) of the working grid of the threshold backend;
            None = about 2 mm, finer when the field of view is small (miniature phantoms).
        fill_holes: include vessels: 3D closing plus filling of small holes slice by slice.
        closing_mm: radius (mm) of the per-lung 3D closing that takes in vessels and small dense
            regions touching the lung surface; scaled down for bodies narrower than an adult's
            (miniature phantoms).
    """

    stage: ClassVar[str] = "segment"

    backend: Literal["threshold", "lungmask", "auto"] = "threshold"
    lungmask_weights: str | None = None
    lungmask_batch_size: int = 20
    lungmask_force_cpu: bool = False
    threshold_hu: float = -400.0
    airway_hu: float = -950.0
    bronchi_mm: float = 30.0
    work_spacing_mm: float | None = None
    fill_holes: bool = True
    closing_mm: float = 8.0

    def validate(self) -> None:
        """Check ranges; errors name the field."""
        s = self.stage
        check(
            -1000.0 < self.threshold_hu < 0.0,
            s,
            "threshold_hu",
            f"must be in (-1000, 0) HU, got {self.threshold_hu}",
        )
        check(
            -1024.0 < self.airway_hu < self.threshold_hu,
            s,
            "airway_hu",
            f"must be in (-1024, threshold_hu={self.threshold_hu}) HU, got {self.airway_hu}",
        )
        check(
            0.0 <= self.bronchi_mm <= 100.0,
            s,
            "bronchi_mm",
            f"must be in [0, 100] mm, got {self.bronchi_mm}",
        )
        check(
            self.work_spacing_mm is None or 0.2 <= self.work_spacing_mm <= 8.0,
            s,
            "work_spacing_mm",
            f"must be in [0.2, 8] mm or null, got {self.work_spacing_mm}",
        )
        check(
            0.0 <= self.closing_mm <= 20.0,
            s,
            "closing_mm",
            f"must be in [0, 20] mm, got {self.closing_mm}",
        )
        check(self.lungmask_batch_size >= 1, s, "lungmask_batch_size", "must be >= 1")
        check(
            self.lungmask_weights is None or self.lungmask_weights.strip() != "",
            s,
            "lungmask_weights",
            "must be a path or null",
        )


# =============================================================================== public API
def segment_lungs(volume: Volume, config: SegmentConfig | None = None) -> np.ndarray:
    """Segment the two lungs of a CT volume in HU.

    Args:
        volume: CT in HU, array indexed [z, y, x], any orientation (best at about 1 mm).
        config: settings; default = threshold backend.

    Returns:
        uint8 labels with the input's [z, y, x] shape: 0 background, 1 right lung, 2 left lung.

    Raises:
        SegmentationError: no lung found (threshold) or the U-Net failed.
        FileNotFoundError: lungmask backend requested but the weights file is missing.
    """
    config = config or SegmentConfig()
    backend = resolve_backend(config)
    if backend == "lungmask":
        weights = lungmask_weights_path(config)
        assert weights is not None
        from drasclr.imaging.segment_lungmask import segment_lungmask

        return segment_lungmask(volume, weights, config)
    from drasclr.imaging.segment_threshold import segment_threshold

    return segment_threshold(volume, config)


def lungmask_weights_path(config: SegmentConfig) -> Path | None:
    """The lungmask weights file named by the config, else by $DRASCLR_LUNGMASK_WEIGHTS, or None."""
    raw = config.lungmask_weights or os.environ.get(LUNGMASK_WEIGHTS_ENV, "").strip() or None
    return Path(raw).expanduser() if raw else None


def resolve_backend(config: SegmentConfig) -> Literal["threshold", "lungmask"]:
    """Which backend :func:`segment_lungs` will run for ``config`` (record it next to the masks).

    Raises:
        FileNotFoundError: backend ``lungmask`` without an existing weights file.
    """
    if config.backend == "threshold":
        return "threshold"
    weights = lungmask_weights_path(config)
    if config.backend == "lungmask":
        if weights is None:
            raise FileNotFoundError(
                "lungmask backend needs local R231 weights: set segment.lungmask_weights or "
                f"${LUNGMASK_WEIGHTS_ENV} to a state-dict file (drasclr never downloads them)"
            )
        if not weights.is_file():
            raise FileNotFoundError(f"lungmask weights file not found: {weights}")
        return "lungmask"
    if weights is not None and weights.is_file():
        return "lungmask"
    if weights is not None:
        log.warning("lungmask weights %s not found; segmenting with the threshold backend", weights)
    return "threshold"


def lung_volumes_ml(labels: np.ndarray, geometry: Geometry) -> tuple[float, float]:
    """(right, left) lung volumes in millilitres of a label array from :func:`segment_lungs`."""
    counts = np.bincount(labels.reshape(-1), minlength=3)
    voxel_ml = geometry.voxel_volume_ml()
    return float(counts[RIGHT_LUNG] * voxel_ml), float(counts[LEFT_LUNG] * voxel_ml)
