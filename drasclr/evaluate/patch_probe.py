"""The patch probe: how much of each patch's true lesion burden its frozen features carry.

For every stored landmark patch of a synthetic cohort, the true lesion fraction is cut from the
cohort's voxel truth exactly like the stored CT patch (the truth is resampled to the store's grid
with nearest neighbour and cut at the same centres, :func:`drasclr.imaging.patches.cut_patches`). A
standardised ridge probe with subject-grouped, repeated CV (:func:`drasclr.probing.ridge_probe`)
then predicts the fraction from each encoder's patch features and from the patch's LAA-950 and
LAA-910 scores. With S x L patches this has far more power than the image readouts' S subjects.

Targets (fractions of the patch's P^3 voxels): ``cle`` (code 1), ``pse`` (code 2) and
``emphysema`` (codes 1-3: CLE, PSE, panlobular).

The evaluation's experiment is :func:`patch_probe_tables`: the probe table and the subject-level
detection read from the probe's out-of-subject predictions
(:func:`drasclr.evaluate.science.detection_metrics`).
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

from drasclr.evaluate.science import (
    DETECT_FRACTION,
    beside,
    detected_shares,
    detection_metrics,
    patch_metrics,
)
from drasclr.fsutil import atomic_write_bytes
from drasclr.imaging.geometry import Geometry, Volume
from drasclr.imaging.io import read_mask
from drasclr.imaging.patches import cut_patches
from drasclr.imaging.resample import resample_isotropic
from drasclr.probing import LESION_AUC_THRESHOLD, ridge_fit, ridge_probe
from drasclr.store.reader import PatchStore

#: Target name -> lesion codes of the generator's truth (1 CLE, 2 PSE, 3 PLE).
LESION_TARGETS: dict[str, tuple[int, ...]] = {"cle": (1,), "pse": (2,), "emphysema": (1, 2, 3)}
#: Columns of the patch-truth table.
TRUTH_COLUMNS: tuple[str, ...] = (
    "subject_id", "store_index", "landmark", "valid", "lung_fraction", *LESION_TARGETS
)
#: The probe scores patches of lung: valid patches whose lung fraction (from the store) is at
#: least this. Patches that are mostly chest wall, mediastinum or air outside the body say little
#: about lung disease, and there a density score mostly counts non-lung air.
MIN_LUNG_FRACTION: float = 0.5
#: HU thresholds of the density baselines.
DENSITY_BASELINES: dict[str, float] = {"LAA-950 (patch)": -950.0, "LAA-910 (patch)": -910.0}


def patch_lesion_fractions(
    lesions_zyx: npt.NDArray[Any], geom: Geometry, centres_mm: npt.ArrayLike, patch: int
) -> npt.NDArray[np.float32]:
    """(L, len(LESION_TARGETS)) share of each patch's voxels in each lesion target.

    Args:
        lesions_zyx: lesion codes on the store's grid (its ``spacing_mm``), indexed ``[z, y, x]``.
        geom: its geometry.
        centres_mm: (L, 3) patch centres (subject LPS mm), as stored.
        patch: patch edge P.
    """
    codes = np.asarray(lesions_zyx).astype(np.uint8, copy=False)
    blocks, _ = cut_patches(codes, geom, centres_mm, patch=patch, fill=0)
    flat = blocks.reshape(blocks.shape[0], -1)
    return np.stack(
        [np.isin(flat, c).mean(axis=1) for c in LESION_TARGETS.values()], axis=1
    ).astype(np.float32)


def lesions_on_store_grid(lesions_path: Path, spacing_mm: float) -> tuple[npt.NDArray[Any], Geometry]:
    """The truth lesion codes resampled (nearest neighbour) to the store's isotropic grid."""
    les = read_mask(lesions_path)
    iso = resample_isotropic(Volume(les.array.astype(np.uint8), les.geometry), spacing_mm,
                             order=0, fill=0)
    return iso.array, iso.geometry


def read_patch_truth(
    cohort_dir: str | Path,
    store: PatchStore,
    subject_ids: Sequence[str] | None = None,
    spacing_mm: float | None = None,
    threads: int = 2,
    progress: bool = False,
) -> pd.DataFrame:
    """Patch truth of a synthetic cohort's subjects: one row per (subject, landmark).

    Args:
        cohort_dir: cohort folder with ``truth/<id>_lesions.nii.gz``.
        store: the patch store the features were extracted from.
        subject_ids: subjects (default: every stored subject that has a truth file).
        spacing_mm: the store's resampling; None reads it from the store's saved preprocessing
            config (:func:`drasclr.preprocess.config.saved_config`: 1 mm for a store
            without one).
        threads: subjects read in parallel.
        progress: show a progress bar.

    Returns:
        Columns :data:`TRUTH_COLUMNS` (``valid``: the patch lies in the field of view).
    """
    if spacing_mm is None:
        from drasclr.preprocess.config import saved_config

        spacing_mm = saved_config(store.path).spacing_mm
    truth = Path(cohort_dir) / "truth"
    ids = list(store.subject_ids if subject_ids is None else subject_ids)
    ids = [s for s in ids if (truth / f"{s}_lesions.nii.gz").is_file()]
    centres, valid, lung = store.centre_mm, store.valid, store.lung_fraction
    L, P = store.num_landmarks, store.patch_size

    def one(sid: str) -> pd.DataFrame:
        idx = store.index_of(sid)
        arr, geom = lesions_on_store_grid(truth / f"{sid}_lesions.nii.gz", spacing_mm)
        frac = patch_lesion_fractions(arr, geom, centres[:, idx].astype(np.float64), P)
        return pd.DataFrame({"subject_id": sid, "store_index": idx, "landmark": np.arange(L),
                             "valid": valid[:, idx], "lung_fraction": lung[:, idx],
                             **{k: frac[:, j] for j, k in enumerate(LESION_TARGETS)}})

    from tqdm.auto import tqdm

    with ThreadPoolExecutor(max(1, threads)) as pool:
        parts = list(tqdm(pool.map(one, ids), total=len(ids), desc="patch truth",
                          disable=not progress))
    if not parts:
        return pd.DataFrame({c: [] for c in TRUTH_COLUMNS})
    return pd.concat(parts, ignore_index=True)


def probed(truth: pd.DataFrame) -> npt.NDArray[np.bool_]:
    """Rows the probe scores: valid patches with at least :data:`MIN_LUNG_FRACTION` lung."""
    return (truth["valid"].to_numpy(bool)
            & (truth["lung_fraction"].to_numpy(np.float64) >= MIN_LUNG_FRACTION))


def write_probe_file(
    truth: pd.DataFrame,
    path: str | Path,
    n_subjects: int = 64,
    n_landmarks: int = 24,
    target: str = "emphysema",
    seed: int = 0,
) -> Path:
    """Write the training probe's patch list (random subjects x random landmarks, valid only).

    Returns:
        The ``.npz`` path (keys ``store_index``, ``landmark``, ``target``).
    """
    rng = np.random.default_rng(seed)
    subj = np.unique(truth["store_index"].to_numpy())
    lms = np.unique(truth["landmark"].to_numpy())
    subj = rng.choice(subj, size=min(n_subjects, len(subj)), replace=False)
    lms = rng.choice(lms, size=min(n_landmarks, len(lms)), replace=False)
    rows = truth[truth["store_index"].isin(subj) & truth["landmark"].isin(lms) & probed(truth)]
    import io

    buf = io.BytesIO()
    np.savez(buf, store_index=rows["store_index"].to_numpy(np.int64),
             landmark=rows["landmark"].to_numpy(np.int64),
             target=rows[target].to_numpy(np.float64))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, buf.getvalue())
    return out


def density_scores(store: PatchStore, truth: pd.DataFrame) -> dict[str, npt.NDArray[np.float64]]:
    """Per-row LAA-950 / LAA-910 of the stored patches of ``truth``'s rows (share of voxels)."""
    out = {name: np.full(len(truth), np.nan) for name in DENSITY_BASELINES}
    lm = truth["landmark"].to_numpy(np.int64)
    si = truth["store_index"].to_numpy(np.int64)
    for j in np.unique(lm):
        rows = np.flatnonzero(lm == j)
        hu = store.read_landmark_batch(int(j), si[rows]).reshape(len(rows), -1)
        for name, t in DENSITY_BASELINES.items():
            out[name][rows] = (hu < t).mean(axis=1)
    return out


def patch_probe_table(
    features: Mapping[str, npt.NDArray[Any]],
    truth: pd.DataFrame,
    n_folds: int = 5,
    repeats: int = 5,
    seed: int = 0,
) -> pd.DataFrame:
    """Probe every feature set against every lesion target.

    Args:
        features: method -> (n, d) features aligned with ``truth``'s rows (NaN rows are dropped,
            as are rows :func:`probed` leaves out).
        truth: rows of :func:`read_patch_truth` (``store_index`` groups the folds).
        n_folds, repeats, seed: the repeated grouped CV.

    Returns:
        One row per (method, target): ``r2``/``r2_sd`` (pooled out-of-fold R², mean and s.d.
        over repeats), ``r2_fold``/``r2_fold_sd`` (over folds), ``auc``/``auc_sd`` for
        ``fraction > 1 %``, ``n_patches``, ``n_subjects``, ``positive_share``.
    """
    rows = []
    valid = probed(truth)
    groups = truth["store_index"].to_numpy()
    for name, x in features.items():
        x = np.asarray(x, dtype=np.float64)
        x = x[:, None] if x.ndim == 1 else x
        ok = valid & np.isfinite(x).all(axis=1)
        for target in LESION_TARGETS:
            y = truth[target].to_numpy(np.float64)
            res = ridge_probe(x[ok], y[ok], groups[ok], n_folds, repeats, seed).summary()
            rows.append({"method": name, "target": target, **res,
                         "n_patches": int(ok.sum()), "n_subjects": len(np.unique(groups[ok])),
                         "positive_share": float((y[ok] > LESION_AUC_THRESHOLD).mean())})
    return pd.DataFrame(rows)


def features_for_truth(
    patch_features: npt.NDArray[Any], subject_ids: Sequence[str], truth: pd.DataFrame
) -> npt.NDArray[np.float64]:
    """Rows of (S, L, D) patch features aligned with ``truth`` (NaN for unknown subjects)."""
    pos = {s: k for k, s in enumerate(subject_ids)}
    si = truth["subject_id"].map(pos)
    out = np.full((len(truth), patch_features.shape[-1]), np.nan)
    have = si.notna().to_numpy()
    out[have] = patch_features[si[have].to_numpy(np.int64), truth["landmark"].to_numpy()[have]]
    return out


# ------------------------------------------------------------------------------------ experiment
def has_lesion_truth(cohort_dir: str | Path, subject_ids: Sequence[str]) -> bool:
    """Whether any of the subjects has voxel truth (``truth/<id>_lesions.nii.gz``)."""
    truth = Path(cohort_dir) / "truth"
    return any((truth / f"{s}_lesions.nii.gz").is_file() for s in subject_ids)


def cached_patch_truth(
    cohort_dir: str | Path,
    store: PatchStore,
    subject_ids: Sequence[str],
    cache: Path,
    spacing_mm: float | None = None,
    threads: int = 2,
) -> pd.DataFrame:
    """:func:`read_patch_truth` of ``subject_ids``, kept in ``cache`` (a Parquet file) and read
    from it again while it holds the same subjects (or is empty)."""
    truth = pd.read_parquet(cache) if cache.is_file() else None
    if truth is None or set(truth["subject_id"]) != set(subject_ids) and not truth.empty:
        truth = read_patch_truth(cohort_dir, store, subject_ids, spacing_mm, threads=threads)
        tmp = cache.with_suffix(".tmp.parquet")
        truth.to_parquet(tmp)
        tmp.replace(cache)
    return truth


#: Suffix of the probe table's rows that score an encoder's features with the patch's
#: LAA-950 as one more column: what the encoder adds to the density score.
WITH_LAA950_SUFFIX: str = " + LAA-950 (patch)"
#: Column suffix of a method's detected share from the patch probe's predictions.
PROBE_SHARE_SUFFIX: str = ": emphysema (patch probe)"


@dataclass(frozen=True)
class PatchProbeTables:
    """The patch probe experiment's tables.

    Attributes:
        table: :func:`patch_probe_table` of every method, the density baselines and every
            method with LAA-950 (patch) beside its features (``<method>`` +
            :data:`WITH_LAA950_SUFFIX`; the random encoder's row checks that extra columns
            alone do not lift the density score).
        detection: per method, the subject-level detection read from the probe's out-of-subject
            emphysema predictions (``method``, ``flag_fraction`` and
            :func:`drasclr.evaluate.science.detection_metrics`).
        shares: ``subject_id`` and, per method, ``<method>`` + :data:`PROBE_SHARE_SUFFIX`: each
            subject's detected share of the lung from the same predictions
            (:func:`drasclr.evaluate.science.detected_shares`).
    """

    table: pd.DataFrame
    detection: pd.DataFrame
    shares: pd.DataFrame


def patch_probe_tables(
    feature_folders: Mapping[str, Path],
    truth: pd.DataFrame,
    store: PatchStore,
    labels: pd.DataFrame,
    repeats: int,
    seed: int,
) -> PatchProbeTables:
    """The patch probe of every method's patch features, of the density baselines, and of
    each method's features with LAA-950 (patch) beside them; the detection of the first two.

    Args:
        feature_folders: method -> features folder (patch features are read).
        truth: patch truth rows (:func:`cached_patch_truth`).
        store: the patch store (density baselines, lung fraction weights).
        labels: the labels table (``true_emphysema_fraction`` for the detection, when present).
        repeats: CV repeats of the probe table (``EvaluateConfig.probe_repeats``).
        seed: fold seed.
    """
    from drasclr.features import read_patch_features

    features: dict[str, Any] = {}
    for name, folder in feature_folders.items():
        pf = read_patch_features(folder)
        features[name] = features_for_truth(pf.features.astype(np.float64),
                                            list(pf.subject_ids), truth)
    density = density_scores(store, truth)
    combined = {name + WITH_LAA950_SUFFIX: beside(x, density["LAA-950 (patch)"])
                for name, x in features.items()}
    features.update(density)
    table = patch_probe_table({**features, **combined}, truth, 5, repeats, seed)
    true = (labels.set_index("subject_id")["true_emphysema_fraction"].to_dict()
            if "true_emphysema_fraction" in labels else {})
    rows = []
    shares = pd.DataFrame({"subject_id": sorted(truth["subject_id"].astype(str).unique())})
    for name, x in features.items():
        _, oof = patch_metrics(x, truth, 1, seed)
        det = detection_metrics(oof, truth, store.lung_fraction, true)
        rows.append({"method": name, "flag_fraction": DETECT_FRACTION, **det})
        share = detected_shares(oof, truth, store.lung_fraction)
        shares[name + PROBE_SHARE_SUFFIX] = shares["subject_id"].map(share).astype(np.float64)
    return PatchProbeTables(table, pd.DataFrame(rows), shares)


def emphysema_head(rows: npt.NDArray[Any], target: npt.NDArray[Any]) -> Any:
    """The patch probe's ridge (patch features -> emphysema fraction) as a ``torch.nn.Linear``
    head, fitted on all given rows (finite features), for dense maps.

    Args:
        rows: (n, d) patch features.
        target: (n,) true emphysema fractions.
    """
    import torch

    w, b = ridge_fit(rows, target)
    head = torch.nn.Linear(rows.shape[1], 1)
    with torch.no_grad():
        head.weight.copy_(torch.as_tensor(w[None], dtype=torch.float32))
        head.bias.copy_(torch.as_tensor([b], dtype=torch.float32))
    return head


def dense_heads(
    feature_folders: Mapping[str, Path], truth: pd.DataFrame, held_out: Sequence[str]
) -> dict[str, Any]:
    """Per method, :func:`emphysema_head` fitted on every probed patch of the subjects not in
    ``held_out`` (the dense subjects), from the given features folder.

    Args:
        feature_folders: method -> features folder (extracted with BatchNorm running statistics:
            dense windows lie anywhere in the lung, where no per-landmark statistics exist).
        truth: patch truth rows (:func:`cached_patch_truth`).
        held_out: subjects left out of the fit.
    """
    from drasclr.features import read_patch_features

    target = truth["emphysema"].to_numpy(np.float64)
    other = ~truth["subject_id"].astype(str).isin([str(s) for s in held_out]).to_numpy()
    heads = {}
    for name, folder in feature_folders.items():
        pf = read_patch_features(folder)
        rows = features_for_truth(pf.features.astype(np.float64), list(pf.subject_ids), truth)
        train = probed(truth) & np.isfinite(rows).all(axis=1) & other
        if train.sum() >= 2 and np.ptp(target[train]) > 0:  # a ridge needs a varying target
            heads[name] = emphysema_head(rows[train], target[train])
    return heads
