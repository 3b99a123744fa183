"""lungmask backend of the lung segmentation: the R231 U-Net run from a local weights file.

Runs lungmask's ``LMInferer`` on the Volume handed over as a SimpleITK image; lungmask reorients
to LPS itself and returns labels in the input's [z, y, x] array order. The weights come from a
local state-dict file (``SegmentConfig.lungmask_weights`` or ``$DRASCLR_LUNGMASK_WEIGHTS``,
resolved by :mod:`drasclr.imaging.segment`); the model is loaded once per process and weights
path (a thread-safe cache) and nothing is ever downloaded. lungmask's labels are mapped to ours
(1 right, 2 left); the 6-class lobe model is merged per lung. lungmask (and torch) are imported
on first use only; load or inference errors raise
:class:`~drasclr.imaging.segment.SegmentationError`.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from drasclr.imaging.geometry import Volume
from drasclr.imaging.segment import LEFT_LUNG, RIGHT_LUNG, SegmentationError, SegmentConfig

# =============================================================================== lungmask
_INFERERS: dict[tuple[str, bool], Any] = {}


_INFERERS_LOCK = threading.Lock()


def _lungmask_inferer(weights: Path, force_cpu: bool) -> Any:
    """lungmask LMInferer for a local R231 state dict, built once per process and path."""
    key = (str(weights.resolve()), force_cpu)
    with _INFERERS_LOCK:
        inferer = _INFERERS.get(key)
        if inferer is None:
            from lungmask.mask import LMInferer

            try:
                inferer = LMInferer(modelpath=str(weights), force_cpu=force_cpu, tqdm_disable=True)
            except Exception as err:  # noqa: BLE001 - torch/pickle errors vary
                raise SegmentationError(f"cannot load lungmask weights {weights}: {err}") from err
            _INFERERS[key] = inferer
    return inferer


def segment_lungmask(volume: Volume, weights: Path, config: SegmentConfig) -> np.ndarray:
    """R231 U-Net via lungmask, which reorients to LPS itself and maps back to our array order."""
    from drasclr.imaging.geometry import to_sitk

    inferer = _lungmask_inferer(weights, config.lungmask_force_cpu)
    inferer.batch_size = config.lungmask_batch_size
    image = to_sitk(volume.array, volume.geometry)
    try:
        raw = np.asarray(inferer.apply(image), dtype=np.uint8)
    except Exception as err:  # noqa: BLE001
        raise SegmentationError(f"lungmask inference failed: {err}") from err
    if raw.shape != volume.array.shape:
        raise SegmentationError(
            f"lungmask returned shape {raw.shape}, expected {volume.array.shape}"
        )
    return _map_lungmask_labels(raw, int(inferer.model.last.out_channels))


def _map_lungmask_labels(raw: np.ndarray, n_classes: int) -> np.ndarray:
    """lungmask labels -> ours (1 right, 2 left).

    R231 (3 classes) already uses 1 right / 2 left; the lobe model (6 classes: 1-2 left lobes,
    3-5 right lobes) is merged per lung; any other value becomes 0.
    """
    if n_classes == 6:
        lut = np.array([0, LEFT_LUNG, LEFT_LUNG, RIGHT_LUNG, RIGHT_LUNG, RIGHT_LUNG], np.uint8)
    else:
        lut = np.array([0, RIGHT_LUNG, LEFT_LUNG], np.uint8)
    out = np.zeros(raw.shape, np.uint8)
    valid = raw < lut.size
    out[valid] = lut[raw[valid]]
    return out
