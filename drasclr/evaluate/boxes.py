"""Subject scans and annotation boxes for the detection experiments (paper §4.3).

The evaluation needs what the patch store does not keep: the CT around each annotated box on the
store's grid, the lung mask and, for the dense experiments, the voxel truth. This module reads them
the way preprocessing does (:func:`drasclr.imaging.io.read_ct` →
:func:`drasclr.imaging.resample.resample_isotropic`, linear, -1024 HU outside → clip to the
store's HU window; masks nearest-neighbour; the store's ``spacing_mm`` and lung segmentation
settings, :func:`drasclr.preprocess.config.saved_config`), cuts the P^3 patch centred at
each box centre (:func:`drasclr.imaging.boxes.cut_box_patches`; the box is a 32 mm cube, so at
1 mm the 32^3 patch *is* the box), and carries the box centre into atlas space with the subject's
inverse transform (manifest ``inverse_transform``, subject LPS mm → atlas LPS mm) and the landmark
grid's normalisation, so that the encoder sees a box exactly like a landmark patch at that
location.

It also turns a linear readout fitted with scikit-learn into a torch head
(:class:`ProbeHead`) that :func:`drasclr.features.dense_features` applies at every encoded voxel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from torch import Tensor, nn

from drasclr.features.encoding import (
    EncoderSource,
    encode_patches,
    encoder_fingerprint,
    inference,
    on_device,
    pick_device,
    resolve_encoder,
)
from drasclr.imaging.atlas import LandmarkBounds
from drasclr.imaging.boxes import cut_box_patches
from drasclr.imaging.density import laa950, patch_laa950
from drasclr.imaging.geometry import Geometry, Volume, transform_points
from drasclr.imaging.io import read_ct, read_mask
from drasclr.imaging.resample import clipped_ct, resample_isotropic
from drasclr.imaging.segment import SegmentConfig

BOX_TASKS: tuple[str, ...] = ("cle", "pse")
"""Binary detection problems: each subtype's boxes against the healthy boxes."""


# ------------------------------------------------------------------------------------ scans
@dataclass(frozen=True, eq=False)
class Scan:
    """One subject's CT on the store's isotropic grid with its lung mask (and lesion truth when
    asked for).

    Attributes:
        subject_id: the subject.
        hu: (Z, Y, X) int16 clipped HU, isotropic at the store's ``spacing_mm``.
        geometry: its geometry (LPS).
        lungs: (Z, Y, X) bool lung mask on the same grid.
        lesions: (Z, Y, X) uint8 lesion codes (1 cle, 2 pse, 3 ple, 4 ggo, 5 consolidation) or
            None.
        lung_source: ``truth`` (the cohort's ``truth/<id>_lungs.nii.gz``) or ``segmented``.
    """

    subject_id: str
    hu: npt.NDArray[np.int16]
    geometry: Geometry
    lungs: npt.NDArray[np.bool_]
    lesions: npt.NDArray[np.uint8] | None
    lung_source: str


def truth_paths(cohort_dir: str | Path, subject_id: str) -> tuple[Path, Path]:
    """``(lungs, lesions)`` truth files of a synthetic cohort (they may not exist)."""
    truth = Path(cohort_dir) / "truth"
    return truth / f"{subject_id}_lungs.nii.gz", truth / f"{subject_id}_lesions.nii.gz"


def _native_lungs(ct: Volume, lungs_path: Path) -> tuple[npt.NDArray[np.bool_] | None, str]:
    """The truth lung mask on the CT's native grid, or None when absent / on another grid."""
    if not lungs_path.is_file():
        return None, "segmented"
    mask = read_mask(lungs_path)
    if mask.array.shape != ct.array.shape or not mask.geometry.is_close(ct.geometry, 1e-2):
        return None, "segmented"
    return mask.array != 0, "truth"


def read_scan(
    input_path: str | Path,
    subject_id: str,
    cohort_dir: str | Path | None,
    *,
    spacing_mm: float = 1.0,
    with_lesions: bool = False,
    segment: SegmentConfig | None = None,
) -> tuple[Scan, float]:
    """Read one subject: isotropic scan (as preprocessing) and its image-level LAA-950.

    LAA-950 is computed on the *native* grid (no interpolation of HU) inside the cohort's truth
    lung mask when there is one; otherwise the lungs are segmented
    (:func:`drasclr.imaging.segment.segment_lungs`) on the resampled volume and LAA-950 is
    computed there.

    The defaults (1 mm, the default segmentation) are those of a store without a saved config;
    the evaluation passes the store's own settings
    (:func:`drasclr.preprocess.config.saved_config`).

    Args:
        input_path: the scan (the manifest's ``input_path``).
        subject_id: the subject.
        cohort_dir: synthetic cohort folder holding ``truth/`` (None: no truth).
        spacing_mm: resampling target (the preprocessing's ``spacing_mm``).
        with_lesions: also load the lesion truth (needed for dense Dice only).
        segment: lung segmentation settings (the preprocessing's ``segment``; None: defaults).

    Returns:
        ``(scan, laa950)``.
    """
    ct = read_ct(input_path)
    lungs_path, lesions_path = (
        truth_paths(cohort_dir, subject_id) if cohort_dir is not None else (Path(), Path())
    )
    native_lungs, source = _native_lungs(ct, lungs_path) if cohort_dir else (None, "segmented")
    laa = laa950(ct.array, native_lungs) if native_lungs is not None else float("nan")
    iso = clipped_ct(ct, spacing_mm)  # exactly what preprocessing cuts patches from
    hu = iso.array
    if native_lungs is not None:
        lung_vol = Volume(native_lungs.astype(np.uint8), ct.geometry)
        lungs = resample_isotropic(lung_vol, spacing_mm, order=0, fill=0).array != 0
    else:
        from drasclr.imaging.segment import segment_lungs

        lungs = segment_lungs(Volume(hu, iso.geometry), segment) != 0
        laa = laa950(hu, lungs)
    lesions = None
    if with_lesions and lesions_path.is_file():
        les = read_mask(lesions_path)
        lesions = resample_isotropic(
            Volume(les.array.astype(np.uint8), les.geometry), spacing_mm, order=0, fill=0
        ).array.astype(np.uint8)
        if lesions.shape != hu.shape:
            raise ValueError(
                f"{lesions_path}: lesion truth resamples to {lesions.shape}, CT to {hu.shape}"
            )
    return Scan(subject_id, hu, iso.geometry, lungs, lesions, source), laa


# ------------------------------------------------------------------------------------ boxes
@dataclass(frozen=True, eq=False)
class BoxPatches:
    """The annotated boxes of a cohort as encoder inputs.

    Attributes:
        boxes: the boxes table rows (schema ``boxes``), in the order of the arrays below.
        patches: (B, P, P, P) int16 clipped HU, the P^3 patch centred at each box centre
            (on the store's grid).
        lungs: (B, P, P, P) bool lung mask of each patch.
        locations: (B, 3) float32 normalised atlas location of each box centre.
        in_view: (B,) bool, the patch lies wholly inside the scan.
    """

    boxes: pd.DataFrame
    patches: npt.NDArray[np.int16]
    lungs: npt.NDArray[np.bool_]
    locations: npt.NDArray[np.float32]
    in_view: npt.NDArray[np.bool_]

    @property
    def laa950(self) -> npt.NDArray[np.float64]:
        """(B,) patch-level LAA-950 of each box inside its lung mask (NaN without lung)."""
        return patch_laa950(self.patches, self.lungs)

    def select(self, rows: npt.NDArray[np.int64]) -> BoxPatches:
        """A subset of the boxes (positions)."""
        return BoxPatches(
            self.boxes.iloc[rows].reset_index(drop=True),
            self.patches[rows],
            self.lungs[rows],
            self.locations[rows],
            self.in_view[rows],
        )


def box_locations(
    centres_mm: npt.ArrayLike, inverse_transform: npt.ArrayLike, bounds: LandmarkBounds
) -> npt.NDArray[np.float32]:
    """Normalised atlas location of box centres: ``normalise(T^-1(c))``.

    Args:
        centres_mm: (B, 3) box centres, subject LPS mm.
        inverse_transform: subject LPS mm → atlas LPS mm, 4x4 (16 values row-major).
        bounds: the landmark grid's normalisation.
    """
    return bounds.normalise(transform_points(inverse_transform, np.atleast_2d(centres_mm)))


def cut_boxes(
    scan: Scan,
    boxes: pd.DataFrame,
    inverse_transform: npt.ArrayLike,
    bounds: LandmarkBounds,
    patch: int = 32,
) -> BoxPatches:
    """Cut the boxes of one subject from its scan (patch centred at each box centre) and place
    them in atlas space (:func:`box_locations`)."""
    centres = boxes[["centre_x", "centre_y", "centre_z"]].to_numpy(np.float64)
    patches, lungs, in_view = cut_box_patches(scan.hu, scan.lungs, scan.geometry, centres, patch)
    return BoxPatches(
        boxes.reset_index(drop=True),
        patches,
        lungs,
        box_locations(centres, inverse_transform, bounds),
        in_view,
    )


def read_subjects(
    subjects: Sequence[str],
    manifest: pd.DataFrame,
    cohort_dir: str | Path,
    boxes: pd.DataFrame | None,
    dense_ids: Sequence[str],
    bounds: LandmarkBounds,
    patch: int,
    *,
    spacing_mm: float,
    segment: SegmentConfig | None,
    workers: int,
) -> tuple[BoxPatches, dict[str, Scan]]:
    """One pass over the subjects' scans: cut every subject's boxes, keep the dense subjects' scans.

    Args:
        subjects: the subjects, in the order of the outputs.
        manifest: the store manifest indexed by ``subject_id`` (``input_path``,
            ``inverse_transform``).
        cohort_dir: cohort folder (``truth/`` lung masks and lesions when present).
        boxes: the boxes table (schema ``boxes``, ``subject_id`` as str) or None.
        dense_ids: subjects whose scans (with lesion truth) are kept for the dense maps.
        bounds: the landmark grid's normalisation.
        patch: patch edge P (the store's).
        spacing_mm, segment: the store's preprocessing settings (see :func:`read_scan`).
        workers: subjects read in parallel.

    Returns:
        ``(boxes of all subjects concatenated in subject order, dense subject -> scan)``.
    """
    box_subjects = set() if boxes is None else set(boxes["subject_id"])

    def visit(sid: str) -> tuple[str, BoxPatches | None, Scan | None]:
        row = manifest.loc[sid]
        scan, _ = read_scan(
            row["input_path"], sid, cohort_dir, spacing_mm=spacing_mm,
            with_lesions=sid in dense_ids, segment=segment,
        )
        cut = None
        if boxes is not None and sid in box_subjects:
            mine = boxes[boxes["subject_id"] == sid]
            cut = cut_boxes(scan, mine, row["inverse_transform"], bounds, patch)
        return sid, cut, (scan if sid in dense_ids else None)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        visited = list(pool.map(visit, subjects))
    box_data = concat_boxes([v[1] for v in visited if v[1] is not None], patch)
    return box_data, {v[0]: v[2] for v in visited if v[2] is not None}


def concat_boxes(parts: Sequence[BoxPatches], patch: int = 32) -> BoxPatches:
    """Concatenate per-subject :class:`BoxPatches` (an empty set when ``parts`` is empty)."""
    if not parts:
        return BoxPatches(
            pd.DataFrame(columns=["box_id", "subject_id", "label"]),
            np.zeros((0, patch, patch, patch), np.int16),
            np.zeros((0, patch, patch, patch), bool),
            np.zeros((0, 3), np.float32),
            np.zeros(0, bool),
        )
    return BoxPatches(
        pd.concat([p.boxes for p in parts], ignore_index=True),
        np.concatenate([p.patches for p in parts]),
        np.concatenate([p.lungs for p in parts]),
        np.concatenate([p.locations for p in parts]),
        np.concatenate([p.in_view for p in parts]),
    )


def encoder_mismatch(features_encoder: str, encoder: EncoderSource) -> str | None:
    """Why ``encoder`` is not the encoder a feature folder was extracted with, or None.

    A box probe is fitted on ``encoder``'s box features and applied to the folder's patch
    features, so both must come from the same weights. ``features_encoder`` is the folder's
    ``features_info.json`` ``parts.encoder`` (``module:<hash>`` of a state dict or ``export:<hash>``
    of export files). An export compared with an in-memory fingerprint is loaded and its state
    dict hashed; an in-memory module cannot be matched to an export fingerprint (pass the export
    folder instead).
    """
    given = encoder_fingerprint(encoder)
    if given == features_encoder:
        return None
    kind = features_encoder.split(":", 1)[0]
    if kind == "module" and not isinstance(encoder, nn.Module):
        module, _ = resolve_encoder(encoder)
        if encoder_fingerprint(module) == features_encoder:
            return None
        given = f"{given} (loaded: {encoder_fingerprint(module)})"
    elif kind == "export" and isinstance(encoder, nn.Module):
        return (
            f"the features were extracted from an encoder export ({features_encoder}) and an "
            f"in-memory module ({given}) cannot be checked against it; pass the export folder"
        )
    return f"the features were extracted with encoder {features_encoder}, the given encoder is {given}"


def encode_boxes(
    encoder: nn.Module,
    boxes: BoxPatches,
    batch_size: int = 64,
    device: str = "auto",
) -> npt.NDArray[np.float32]:
    """Frozen encoder features of every box: ``e(patch, location)`` → (B, D) float32.

    Boxes are encoded in location order (neighbouring boxes share kernels more often); the
    output follows the input order.
    """
    n = len(boxes.locations)
    dim = int(getattr(encoder, "out_dim", 128))
    if n == 0:
        return np.zeros((0, dim), np.float32)
    dev = pick_device(device)
    order = np.lexsort(boxes.locations.T[::-1])
    out = np.empty((n, dim), np.float32)
    with on_device(encoder, dev), inference(encoder):
        for start in range(0, n, batch_size):
            rows = order[start : start + batch_size]
            out[rows] = encode_patches(encoder, boxes.patches[rows], boxes.locations[rows], dev)
    return out


def box_feature_frame(boxes: BoxPatches, features: npt.NDArray[Any]) -> pd.DataFrame:
    """``box_id``, ``subject_id``, ``label`` + ``f000``.. columns (the detection readouts' input)."""
    arr = np.asarray(features, np.float64)
    width = max(3, len(str(arr.shape[1] - 1)))
    cols = {f"f{j:0{width}d}": arr[:, j] for j in range(arr.shape[1])}
    meta = boxes.boxes[["box_id", "subject_id", "label"]].reset_index(drop=True)
    return pd.concat([meta, pd.DataFrame(cols)], axis=1)


# ------------------------------------------------------------------------------------ probe head
class ProbeHead(nn.Module):
    """Linear readouts folded into one layer: ``sigmoid(W h + b)``, one channel per task.

    The standardisation of each readout is folded into ``W`` and ``b``, so the head takes raw
    encoder features. Output channels follow :attr:`tasks`; a task that could not be fitted
    (:attr:`fitted` False) has zero weights and a large negative bias (probability ~0).
    """

    def __init__(
        self,
        weight: npt.NDArray[Any],
        bias: npt.NDArray[Any],
        tasks: Sequence[str],
        fitted: Sequence[bool] | None = None,
    ):
        super().__init__()
        w = torch.as_tensor(np.asarray(weight), dtype=torch.float32)
        self.linear = nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            self.linear.weight.copy_(w)
            self.linear.bias.copy_(torch.as_tensor(np.asarray(bias), dtype=torch.float32))
        self.tasks = tuple(tasks)
        self.fitted = tuple(bool(f) for f in (fitted if fitted is not None else [True] * len(w)))

    def forward(self, h: Tensor) -> Tensor:
        """(N, D) features → (N, C) probabilities."""
        return torch.sigmoid(self.linear(h.to(self.linear.weight.dtype)))

    def predict_proba(self, features: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        """NumPy convenience: (N, D) → (N, C) probabilities (NaN rows stay NaN)."""
        x = np.asarray(features, np.float64)
        logits = x @ self.linear.weight.detach().double().numpy().T
        logits += self.linear.bias.detach().double().numpy()
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + np.exp(-logits))


UNFITTED_BIAS = -30.0


def fit_probe(
    features: npt.NDArray[Any],
    labels: npt.NDArray[Any],
    tasks: Sequence[str] = BOX_TASKS,
    c: float = 1.0,
) -> ProbeHead | None:
    """Fit one L2 logistic readout per task (task boxes vs ``healthy`` boxes) and fold them.

    Args:
        features: (B, D) box features.
        labels: (B,) box labels (``cle`` / ``pse`` / ``healthy``).
        tasks: subtypes, one output channel each.
        c: inverse L2 strength (``EvaluateConfig.logistic_c``).

    Returns:
        The :class:`ProbeHead` (tasks lacking one of their two classes are left unfitted), or
        None when no task can be fitted.
    """
    X = np.asarray(features, np.float64)
    lab = np.asarray(labels).astype(str)
    weights, biases, fitted = [], [], []
    for task in tasks:
        rows = np.isin(lab, [task, "healthy"]) & np.isfinite(X).all(axis=1)
        y = (lab[rows] == task).astype(int)
        if len(np.unique(y)) < 2:
            weights.append(np.zeros(X.shape[1]))
            biases.append(UNFITTED_BIAS)
            fitted.append(False)
            continue
        scaler = StandardScaler().fit(X[rows])
        model = LogisticRegression(C=c, max_iter=5000).fit(scaler.transform(X[rows]), y)
        coef = model.coef_[0] / scaler.scale_
        weights.append(coef)
        biases.append(model.intercept_[0] - float(coef @ scaler.mean_))
        fitted.append(True)
    if not any(fitted):
        return None
    return ProbeHead(np.stack(weights), np.asarray(biases), tasks, fitted)


def task_labels(boxes: pd.DataFrame, task: str) -> tuple[npt.NDArray[np.int64], npt.NDArray[Any]]:
    """Rows of ``task`` vs healthy boxes and their binary labels: ``(positions, y)``."""
    lab = boxes["label"].astype(str).to_numpy()
    rows = np.flatnonzero(np.isin(lab, [task, "healthy"]))
    return rows.astype(np.int64), (lab[rows] == task).astype(np.int64)


def subject_groups(ids: Sequence[str], n_folds: int, seed: int) -> list[npt.NDArray[Any]]:
    """Seeded split of subject ids into ``min(n_folds, len(ids))`` disjoint test groups."""
    ids = np.asarray(sorted(set(map(str, ids))), dtype=object)
    k = max(1, min(n_folds, len(ids)))
    perm = np.random.default_rng(seed).permutation(len(ids))
    return [ids[perm[f::k]] for f in range(k)]


def describe_boxes(boxes: pd.DataFrame) -> Mapping[str, Any]:
    """Counts of boxes and subjects per label, and the range of lesion fractions per subtype."""
    out: dict[str, Any] = {}
    for label, grp in boxes.groupby("label"):
        out[str(label)] = {
            "boxes": len(grp),
            "subjects": int(grp["subject_id"].nunique()),
            "lesion_fraction_min": float(grp["lesion_fraction"].min())
            if "lesion_fraction" in grp
            else float("nan"),
            "lesion_fraction_max": float(grp["lesion_fraction"].max())
            if "lesion_fraction" in grp
            else float("nan"),
        }
    return out
