"""Per-subject preprocessing: scan -> 1 mm -> lung mask -> affine to atlas -> landmark patches.

This module is the pure-ish half of the preprocessing stage (nnU-Net's split): a function of one
subject's input file and the atlas that returns its patches and manifest record, plus the stage
config and input discovery. Ray orchestration lives in :mod:`drasclr.preprocess_run`.

Coordinates: physical ITK/LPS millimetres throughout; voxel indices appear only inside
:mod:`drasclr.patches`. Landmarks are atlas-space patch centres carried into the subject by the
registration ``T_i`` (atlas mm -> subject mm, DESIGN.md 3.3).
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import pandas as pd

from drasclr.atlas import Atlas, build_atlas
from drasclr.config import StageConfig, check
from drasclr.fsutil import file_sha256
from drasclr.io import InputError, Volume, content_hash, read_ct, resample_isotropic
from drasclr.patches import cut_patches, lung_fraction
from drasclr.register import (
    RegisterConfig,
    Registration,
    map_landmarks,
    register_with_retries,
    registration_qc,
)
from drasclr.segment import SegmentConfig, segment_lungs
from drasclr.store import HU_WINDOW, PlanItem, SubjectPatches

__all__ = [
    "IMAGE_SUFFIXES",
    "STAGES",
    "PreprocessConfig",
    "SubjectError",
    "SubjectResult",
    "atlas_from_ct",
    "discover_inputs",
    "input_hash",
    "process_subject",
]

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")
"""File suffixes read as one scan each; a folder holding ``.dcm`` files is one DICOM series."""
STAGES = ("read", "resample", "segment", "register", "cut", "write")
"""Timed stages; manifest columns ``t_<stage>`` hold seconds."""


class SubjectError(RuntimeError):
    """One subject cannot be preprocessed (becomes a ``failed`` manifest row)."""


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
            outliers of the cohort are listed too (:func:`drasclr.qc.qc_outliers`).
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


# ----------------------------------------------------------------------------------- inputs
def _is_dicom_folder(path: Path) -> bool:
    return path.is_dir() and any(p.suffix.lower() == ".dcm" for p in path.rglob("*.dcm"))


def _strip_suffix(name: str) -> str:
    low = name.lower()
    for suf in IMAGE_SUFFIXES:
        if low.endswith(suf):
            return name[: -len(suf)]
    return name


def discover_inputs(inputs: str | Path) -> pd.DataFrame:
    """List the subjects of an input folder or manifest table.

    Accepted inputs:

    * a synthetic cohort folder (holds ``manifest.parquet`` of schema ``synth_manifest``): its
      ``image`` column;
    * a table (``.parquet`` or ``.csv``) with columns ``subject_id`` and ``input_path`` (relative
      paths are taken relative to the table's folder);
    * a folder of scans: every image file (NIfTI, NRRD, MHA/MHD) and every sub-folder holding a
      DICOM series is one subject, named after the file (without suffix) or folder.

    Args:
        inputs: folder or table path.

    Returns:
        DataFrame with ``subject_id`` and absolute ``input_path``, in a stable order.

    Raises:
        InputError: the path does not exist, holds no scans, or a table lacks its columns.
    """
    root = Path(inputs)
    if not root.exists():
        raise InputError(root, "inputs not found")
    if root.is_dir() and (root / "manifest.parquet").is_file() and (root / "images").is_dir():
        from drasclr.tables import read_frame

        m = read_frame(root / "manifest.parquet", "synth_manifest")
        return pd.DataFrame({
            "subject_id": m["subject_id"].astype(str),
            "input_path": [str((root / p).resolve()) for p in m["image"]],
        })
    if root.is_file():
        if root.suffix == ".parquet":
            table = pd.read_parquet(root)
        elif root.suffix == ".csv":
            table = pd.read_csv(root, dtype=str)
        else:
            raise InputError(root, "an inputs table must be .parquet or .csv")
        missing = {"subject_id", "input_path"} - set(table.columns)
        if missing:
            raise InputError(root, f"inputs table lacks column(s) {sorted(missing)}")
        paths = [p if Path(p).is_absolute() else str((root.parent / p).resolve())
                 for p in table["input_path"].astype(str)]
        return pd.DataFrame({"subject_id": table["subject_id"].astype(str), "input_path": paths})
    rows = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_file() and entry.name.lower().endswith(IMAGE_SUFFIXES):
            rows.append((_strip_suffix(entry.name), str(entry.resolve())))
        elif _is_dicom_folder(entry):
            rows.append((entry.name, str(entry.resolve())))
    if not rows:
        raise InputError(root, "no scans found (NIfTI, NRRD, MHA/MHD files or DICOM folders)")
    return pd.DataFrame(rows, columns=["subject_id", "input_path"])


def mhd_data_files(header: str | Path) -> list[Path]:
    """The data files a MetaImage header (``.mhd``) points at (empty for ``LOCAL`` data).

    Handles ``ElementDataFile = <file>``, ``LIST`` (one file name per following line) and the
    ``<printf pattern> <min> <max> <step>`` form; names are relative to the header's folder.

    Raises:
        InputError: the header names no data file, or a named file does not exist.
    """
    header = Path(header)
    lines = header.read_bytes().decode("latin-1").splitlines()
    at = next((i for i, ln in enumerate(lines) if ln.split("=")[0].strip() == "ElementDataFile"),
              None)
    if at is None or "=" not in lines[at]:
        raise InputError(header, "MetaImage header has no ElementDataFile line")
    value = lines[at].split("=", 1)[1].strip()
    if value.upper() == "LOCAL":
        return []
    if value.upper().startswith("LIST"):
        names = [ln.strip() for ln in lines[at + 1 :] if ln.strip()]
    elif "%" in value and len(value.split()) == 4:
        pattern, lo, hi, step = value.split()
        names = [pattern % i for i in range(int(lo), int(hi) + 1, int(step))]
    else:
        names = [value]
    files = [header.parent / n for n in names]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise InputError(header, f"MetaImage data file(s) not found: {missing[:3]}")
    return files


def input_hash(path: str | Path) -> str:
    """Content hash of one input: :func:`drasclr.io.content_hash`, and for a MetaImage header
    (``.mhd``) also of the data file(s) it points at, so a changed ``.raw`` is re-processed."""
    digest = content_hash(path)
    if not str(path).lower().endswith(".mhd"):
        return digest
    h = hashlib.sha256(digest.encode())
    for f in mhd_data_files(path):
        h.update(f.name.encode() + file_sha256(f).encode())
    return h.hexdigest()


# ----------------------------------------------------------------------------------- threads
def set_worker_threads(n: int) -> None:
    """Pin the numerical libraries of this process to ``n`` threads (reproducible timings)."""
    import SimpleITK as sitk

    n = max(1, int(n))
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(n)
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(n)
    os.environ["OMP_NUM_THREADS"] = str(n)


# ----------------------------------------------------------------------------------- subject
def clipped_ct(volume: Volume, spacing_mm: float = 1.0) -> Volume:
    """The CT resampled to ``spacing_mm`` isotropic (linear, -1024 HU outside) and clipped to
    the store's HU window as int16: what patches are cut from (DESIGN.md 3.1)."""
    iso = resample_isotropic(volume, spacing_mm, order=1, fill=HU_WINDOW[0])
    return Volume(np.clip(iso.array, *HU_WINDOW).astype(np.int16), iso.geometry)


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
            from drasclr.evaluate.baselines import laa950  # lazy: evaluate imports this module

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
            from drasclr.qc import subject_qc_png

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
    from drasclr.io import read_mask

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
