"""Per-subject preprocessing: scan -> 1 mm -> lung mask -> affine to atlas -> landmark patches.

The pure-ish half of the preprocessing stage (nnU-Net's split): :func:`process_subject` is a
function of one subject's input file, the atlas and the config that returns its patches and
manifest record (:class:`SubjectResult`); a problem of the subject's data becomes its ``error``
(a ``failed`` manifest row), never an exception. Ray orchestration lives in
:mod:`drasclr.preprocess.run`. Also here: :func:`atlas_from_ct` (an atlas built from one
subject's CT the same way), :func:`set_worker_threads`, and per-stage timing summaries of a
manifest (:func:`stage_seconds`, :func:`subject_seconds`).

Coordinates: physical ITK/LPS millimetres throughout; landmark millimetres become voxel indices
only inside :mod:`drasclr.imaging.patches`. Landmarks are atlas-space patch centres carried into
the subject by the registration ``T_i`` (atlas mm -> subject mm, DESIGN.md 3.3); patches are cut
from the 1 mm CT clipped to the HU window (int16), out-of-view voxels set to -1024 HU and
flagged.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from drasclr.imaging.atlas import Atlas, build_atlas
from drasclr.imaging.geometry import Volume
from drasclr.imaging.intensity import HU_WINDOW
from drasclr.imaging.io import InputError, read_ct
from drasclr.imaging.patches import cut_patches, lung_fraction
from drasclr.imaging.register import (
    Registration,
    map_landmarks,
    register_with_retries,
    registration_qc,
)
from drasclr.imaging.resample import clipped_ct, resample_isotropic
from drasclr.imaging.segment import segment_lungs
from drasclr.preprocess.config import STAGES, PreprocessConfig
from drasclr.preprocess.inputs import _strip_suffix
from drasclr.store.reader import SubjectPatches
from drasclr.store.writer import PlanItem

__all__ = [
    "SubjectError",
    "SubjectResult",
    "process_subject",
    "atlas_from_ct",
]


class SubjectError(RuntimeError):
    """One subject cannot be preprocessed (becomes a ``failed`` manifest row)."""


@dataclass
class SubjectResult:
    """What :func:`process_subject` returns for one subject.

    Attributes:
        patches: the subject's patches and manifest record, or None when it failed.
        error: ``ExceptionType: message`` of a failed subject, else None.
        record: manifest fields known so far (geometry, timings, QC), also for failures.
        qc_png: PNG bytes of the subject's QC figure (None when disabled or failed early).
    """

    patches: SubjectPatches | None
    error: str | None
    record: dict[str, Any]
    qc_png: bytes | None = None


# ----------------------------------------------------------------------------------- threads
def set_worker_threads(n: int) -> None:
    """Pin the numerical libraries of this process to ``n`` threads (reproducible timings)."""
    import SimpleITK as sitk

    n = max(1, int(n))
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(n)
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(n)
    os.environ["OMP_NUM_THREADS"] = str(n)


def _geometry_record(volume: Volume) -> dict[str, Any]:
    g = volume.geometry
    return {
        "spacing": [float(v) for v in g.spacing],
        "origin": [float(v) for v in g.origin],
        "direction": [float(v) for v in g.direction],
        "shape": [int(v) for v in g.shape],
    }


def process_subject(
    item: PlanItem, atlas: Atlas, config: PreprocessConfig
) -> SubjectResult:
    """Preprocess one subject; never raises for a problem of the subject's data.

    Stages: read (HU checks) -> resample to ``spacing_mm`` (linear) -> lung mask -> affine
    registration of the mask to the atlas mask -> landmarks ``T_i(l_j)`` -> patches cut at once
    (out-of-view voxels -1024 HU and flagged) -> lung fraction per patch -> QC.

    Args:
        item: the plan item (id, input path and hash, store index).
        atlas: the atlas (mask, landmarks in atlas LPS mm).
        config: stage settings.

    Returns:
        A :class:`SubjectResult`; ``error`` names the input file and the problem when it failed.
    """
    record: dict[str, Any] = {}
    t = time.perf_counter
    stage = "read"
    try:
        t0 = t()
        volume = read_ct(item.input_path)
        record.update(_geometry_record(volume))
        record["t_read"] = t() - t0

        stage = "resample"
        t0 = t()
        iso = clipped_ct(volume, config.spacing_mm)
        del volume
        hu = iso.array
        record["t_resample"] = t() - t0

        stage = "segment"
        t0 = t()
        labels = segment_lungs(Volume(hu, iso.geometry), config.segment)
        lung_ml = float(np.count_nonzero(labels)) * iso.geometry.voxel_volume_ml()
        record["lung_volume_ml"] = lung_ml
        if lung_ml > 0:  # the image-level LAA-950 baseline, on this pipeline's own lung mask
            from drasclr.imaging.density import laa950  # lazy: evaluate imports this module

            record["laa950"] = laa950(hu, labels)
        record["t_segment"] = t() - t0
        if lung_ml < config.min_lung_ml:
            raise SubjectError(
                f"no lungs found: lung mask of {lung_ml:.1f} ml (< {config.min_lung_ml} ml)"
            )

        stage = "register"
        t0 = t()
        qcs: dict[int, dict[str, float | int]] = {}

        def qc_dice(r: Registration) -> float:
            qcs[id(r)] = registration_qc(r, labels, iso.geometry, atlas.mask, atlas,
                                         atlas.landmarks_mm, patch=config.patch_size)
            return float(qcs[id(r)]["dice"])

        reg, tried = register_with_retries(labels, iso.geometry, atlas.mask, atlas, qc_dice,
                                           config.min_dice, config.register)
        qc = qcs[id(reg)]
        record["transform"] = [float(v) for v in reg.matrix.ravel()]
        record["inverse_transform"] = [float(v) for v in np.linalg.inv(reg.matrix).ravel()]
        record["dice"] = float(qc["dice"])
        record["fov_fraction"] = float(qc["fov_fraction"])
        record["registration_start"] = reg.start
        record["t_register"] = t() - t0
        if qc["fov_fraction"] < config.min_fov_fraction:
            raise SubjectError(
                f"lungs cut off by the field of view: only {qc['n_in_view']} of "
                f"{qc['n_landmarks']} landmark patches ({qc['fov_fraction']:.0%}) lie inside the "
                f"scan (min_fov_fraction {config.min_fov_fraction:.0%})"
            )
        if qc["dice"] < config.min_dice:
            starts = ", ".join(f"{name} {value:.3f}" for name, value in tried)
            raise SubjectError(
                f"registration failed QC: Dice {qc['dice']:.3f} with the atlas mask "
                f"(min_dice {config.min_dice}; Dice from each start: {starts})"
            )

        stage = "cut"
        t0 = t()
        centres = map_landmarks(reg, atlas.landmarks_mm)
        patches, in_view = cut_patches(hu, iso.geometry, centres, patch=config.patch_size,
                                       fill=HU_WINDOW[0])
        lung = lung_fraction(labels, iso.geometry, centres, patch=config.patch_size)
        record["t_cut"] = t() - t0
        png = None
        if config.qc_figures:
            from drasclr.report.qc import subject_qc_png

            png = subject_qc_png(hu, labels, iso.geometry, centres, in_view, item.subject_id,
                                 dice=record["dice"], fov=record["fov_fraction"])
        sp = SubjectPatches(item, patches, in_view, lung, centres.astype(np.float32),
                            record=dict(record))
        return SubjectResult(sp, None, record, png)
    except Exception as err:  # noqa: BLE001 - any per-subject failure becomes a failed row
        where = f"{item.input_path}: " if str(item.input_path) not in str(err) else ""
        return SubjectResult(None, f"{stage}: {type(err).__name__}: {where}{err}", record)


def atlas_from_ct(
    ct_path: str | Path,
    config: PreprocessConfig | None = None,
    atlas_id: str | None = None,
    mask_path: str | Path | None = None,
    **grid_kwargs: Any,
) -> Atlas:
    """Build an atlas from one subject's CT (its lung mask segmented, or given).

    Args:
        ct_path: the atlas subject's CT (any readable format).
        config: resampling/segmentation settings (default :class:`PreprocessConfig`).
        atlas_id: name of the atlas (default: the file name without suffix).
        mask_path: use this lung mask instead of segmenting (resampled with nearest neighbour).
        **grid_kwargs: landmark-grid rule (patch, step, min_lung, max_patches, k_max).

    Returns:
        The atlas at ``spacing_mm`` with its landmark grid and neighbour table.
    """
    from drasclr.imaging.io import read_mask

    config = config or PreprocessConfig()
    iso = clipped_ct(read_ct(ct_path), config.spacing_mm)
    hu = iso.array
    if mask_path is not None:
        mask = resample_isotropic(read_mask(mask_path), config.spacing_mm, order=0, fill=0)
        if mask.array.shape != hu.shape:
            raise InputError(mask_path, f"mask grid {mask.array.shape} differs from CT {hu.shape}")
        labels = mask.array.astype(np.uint8)
    else:
        labels = segment_lungs(Volume(hu, iso.geometry), config.segment)
    grid_kwargs.setdefault("patch", config.patch_size)
    name = atlas_id or _strip_suffix(Path(ct_path).name)
    return build_atlas(labels, iso.geometry, ct=hu, atlas_id=name, **grid_kwargs)


def stage_seconds(manifest: pd.DataFrame) -> dict[str, dict[str, float]]:
    """p50 / p95 seconds per stage over the ``ok`` rows of a manifest."""
    ok = manifest[manifest["status"] == "ok"]
    out: dict[str, dict[str, float]] = {}
    for s in STAGES:
        col = f"t_{s}"
        if col in ok and ok[col].notna().any():
            v = ok[col].dropna().to_numpy(dtype=float)
            out[s] = {"p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95))}
    return out


def subject_seconds(manifest: pd.DataFrame) -> npt.NDArray[np.float64]:
    """Total stage seconds of each ``ok`` subject."""
    ok = manifest[manifest["status"] == "ok"]
    cols = [f"t_{s}" for s in STAGES if f"t_{s}" in ok]
    return ok[cols].fillna(0.0).to_numpy(dtype=float).sum(axis=1)
