"""The evaluation stage: the paper's experiments from extracted features, a cohort and a store.

:func:`run_evaluation` takes the feature folders of several methods (written by
:func:`drasclr.features.extract_features`), the cohort (labels, boxes, scans, voxel truth) and the
patch store, and writes under ``out_dir``::

    evaluate_config.yaml         the EvaluateConfig used
    table2_image_readouts.*      image-level readouts, every method + LAA-950 (image and patch)
    table3_survival.*            Cox / time-dependent C-index: imaging rows per method, clinical,
                                 imaging + clinical
    table5_box_detection.*       box readouts (linear on frozen features; fine-tuned if enabled),
                                 LAA-950 of the box as a baseline
    table5_box_rule.*            the paper's 25 % rule on dense maps (dense subjects' boxes) and
                                 a clearly labelled departure (box fraction chosen out-of-subject)
    label_efficiency.*           F1 vs share of training labels (Fig. 5)
    detected_fraction.*          detected emphysema share of the lung per subject and GOLD
                                 (Fig. 4; landmark-patch predictions weighted by lung fraction)
    dense_overlap.*              dense masks vs voxel truth per dense subject (Dice, sensitivity)
    dense_boxes.*                positive-voxel fraction of each dense subject's box
    table7_random_locations.*    readouts of random-location features next to their partner
    box_features/<method>.parquet
    dense/<method>__<subject>.npz  coronal slices for the Fig. 3 overlays
    results.json                 cohort, settings, headline numbers, notes, timings, files, and
                                 ``not_run``: the experiments the labels / cohort do not allow

Each experiment runs only when its inputs exist (:func:`available`): a readout when its label
column holds values, a survival row when its covariates do, box detection, label efficiency,
detected fractions and dense maps when the cohort has ``boxes.parquet``, dense Dice when it has
voxel truth. The others are listed in ``results.json["not_run"]`` with the reason
(``no fev1pp``), so a lab's table with only some columns evaluates what it can.

Every table is written as Parquet and CSV (``*`` above). ``results.json`` is written last and
holds a fingerprint of the inputs and the config: a re-run with the same inputs returns it without
recomputing (``overwrite=True`` recomputes).

Baseline choices (stated again in ``results.json["notes"]``): image-level LAA-950 is computed on
each subject's native CT inside the cohort's truth lung mask (``truth/<id>_lungs.nii.gz``; the
store keeps no lung masks), or inside a fresh segmentation when there is no truth; patch-level
LAA-950 is computed on the store's patches (all voxels of the patch, patches without lung or out of
view get the landmark's mean); box-level LAA-950 on the 1 mm box patch inside the lung mask.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.stats import spearmanr
from torch import nn

from drasclr.evaluate.baselines import compare_methods, patch_laa950
from drasclr.evaluate.boxes import (
    BOX_TASKS,
    BoxPatches,
    Scan,
    box_feature_frame,
    concat_boxes,
    cut_boxes,
    describe_boxes,
    encode_boxes,
    encoder_mismatch,
    fit_probe,
    read_scan,
    subject_groups,
    task_labels,
)
from drasclr.evaluate.config import EvaluateConfig
from drasclr.evaluate.detection import (
    DETECTION_METRICS,
    EMPHYSEMA_CODES,
    box_detections,
    box_readout_table,
    detected_fraction,
    detection_scores,
    dice_per_subtype,
    label_efficiency,
    overlap_by_subtype,
)
from drasclr.evaluate.readouts import (
    ID_COLUMN,
    IMAGE_TASKS,
    TABLE_COLUMNS,
    Task,
    cross_validate,
    feature_frame,
    task_rows,
)
from drasclr.evaluate.survival import CONFOUNDERS, SURVIVAL_MODELS, survival_methods_table
from drasclr.fsutil import atomic_path, atomic_write_text, file_sha256
from drasclr.labels import missing_columns
from drasclr.store import PatchStore

RESULTS_FILE = "results.json"
CONFIG_FILE = "evaluate_config.yaml"
LAA_IMAGE = "LAA-950 (image)"
LAA_PATCH = "LAA-950 (patch)"
LAA_BOX = "LAA-950 (box)"
SCRATCH = "supervised CNN (scratch)"
PRIMARY = "DrasCLR"
FORMAT_VERSION = 1

EncoderInput = nn.Module | str | Path


class EvaluationError(RuntimeError):
    """The evaluation cannot run: missing cohort files, features or encoders."""


def available(labels: pd.DataFrame, columns: Sequence[str]) -> bool:
    """True when ``labels`` holds values in every one of ``columns`` (an experiment can run)."""
    return not missing_columns(labels, columns)


def not_run(experiment: str, reason: str) -> dict[str, str]:
    """A ``results.json["not_run"]`` entry (the report lists it as "not run: <reason>")."""
    return {"experiment": experiment, "reason": reason}


def slug(name: str) -> str:
    """File-safe name of a method (``DrasCLR (no neighbour loss)`` → ``drasclr_no_neighbour_loss``)."""
    return re.sub(r"_+", "_", re.sub(r"[^0-9a-zA-Z]+", "_", name.lower())).strip("_") or "method"


# ------------------------------------------------------------------------------------ inputs
@dataclass(frozen=True)
class MethodFeatures:
    """One method's feature folder.

    Attributes:
        name: method name (table rows).
        folder: the features folder.
        fingerprint: ``features_info.json`` fingerprint.
        encoder_fingerprint: the encoder part of it (pairs a random-location run with its partner).
        random_locations: extracted with random locations (paper Table 7 ablation).
        bn_stats: BatchNorm statistics of the extraction (``running`` or ``landmark``).
    """

    name: str
    folder: Path
    fingerprint: str
    encoder_fingerprint: str
    random_locations: bool
    bn_stats: str = "running"


def read_method(name: str, folder: str | Path) -> MethodFeatures:
    """Check a features folder and read what the evaluation needs from its info and config."""
    from drasclr.features import FeaturesConfig
    from drasclr.features.output import CONFIG_FILE as FEAT_CONFIG
    from drasclr.features.output import IMAGE_FILE, read_info

    folder = Path(folder)
    info = read_info(folder)
    if info is None or not (folder / IMAGE_FILE).is_file():
        raise EvaluationError(
            f"method {name!r}: {folder} holds no finished features (features_info.json and "
            f"{IMAGE_FILE}); run `drasclr extract` first"
        )
    rand, bn = False, "running"
    if (folder / FEAT_CONFIG).is_file():
        fcfg = FeaturesConfig.load(folder / FEAT_CONFIG)
        rand, bn = fcfg.random_locations, fcfg.bn_stats
    parts = info.get("parts", {})
    return MethodFeatures(
        name, folder, str(info.get("fingerprint")), str(parts.get("encoder", "")), bool(rand), bn
    )


def image_frame(method: MethodFeatures) -> pd.DataFrame:
    """The method's image features as a readout frame (``subject_id`` + ``f000``..)."""
    from drasclr.features import read_image_features

    ids, feats, _ = read_image_features(method.folder)
    return feature_frame(feats, ids)


def _laa_frame(values: npt.NDArray[np.float64], ids: list[str], prefix: str) -> pd.DataFrame:
    """(S, L) LAA values → frame; NaN entries take the landmark's mean over subjects."""
    v = np.asarray(values, np.float64)
    col_mean = np.nanmean(np.where(np.isnan(v).all(axis=0, keepdims=True), 0.0, v), axis=0)
    v = np.where(np.isnan(v), col_mean[None], v)
    width = max(3, len(str(v.shape[1] - 1)))
    cols = {f"{prefix}{j:0{width}d}": v[:, j] for j in range(v.shape[1])}
    return pd.DataFrame({ID_COLUMN: ids, **cols})


def store_patch_laa(store: PatchStore, subject_ids: list[str]) -> pd.DataFrame:
    """Patch-level LAA-950 at every landmark from the store, read subject by subject.

    Every voxel of a stored patch counts (the store keeps no lung masks); invalid patches (out of
    view) and patches without lung (store ``lung_fraction`` 0) become the landmark's mean.
    """
    lf = store.lung_fraction
    valid = store.valid
    rows = []
    for sid in subject_ids:
        idx = store.index_of(sid)
        v = patch_laa950(store.read_subject(idx))
        rows.append(np.where(valid[:, idx] & (lf[:, idx] > 0), v, np.nan))
    return _laa_frame(np.stack(rows), subject_ids, "laa_")


def choose_dense_subjects(labels: pd.DataFrame, subject_ids: list[str], k: int) -> list[str]:
    """``k`` subjects spanning GOLD stages: evenly spaced in (GOLD, true emphysema, id) order."""
    if k <= 0 or not subject_ids:
        return []
    lab = labels.astype({ID_COLUMN: str}).set_index(ID_COLUMN).reindex(subject_ids)
    key = pd.DataFrame(
        {
            ID_COLUMN: subject_ids,
            "gold": lab["gold"].fillna(-2).to_numpy() if "gold" in lab else 0,
            "emph": lab["true_emphysema_fraction"].fillna(0).to_numpy()
            if "true_emphysema_fraction" in lab
            else 0.0,
        }
    ).sort_values(["gold", "emph", ID_COLUMN], kind="stable")
    pos = np.unique(np.round(np.linspace(0, len(key) - 1, min(k, len(key)))).astype(int))
    return key[ID_COLUMN].iloc[pos].tolist()


# ------------------------------------------------------------------------------------ outputs
def save_table(frame: pd.DataFrame, out_dir: Path, name: str) -> dict[str, str]:
    """Write ``name.parquet`` and ``name.csv`` atomically; return their paths."""
    paths = {}
    for ext in ("parquet", "csv"):
        path = out_dir / f"{name}.{ext}"
        with atomic_path(path) as tmp:
            if ext == "parquet":
                frame.to_parquet(tmp, index=False)
            else:
                frame.to_csv(tmp, index=False)
        paths[ext] = str(path)
    return paths


class _Clock:
    """Seconds per part, printed when ``progress``."""

    def __init__(self, progress: bool) -> None:
        self.progress = progress
        self.seconds: dict[str, float] = {}
        self._t0 = time.perf_counter()

    def mark(self, name: str, since: float) -> None:
        self.seconds[name] = round(time.perf_counter() - since, 2)
        if self.progress:
            print(f"[evaluate] {name}: {self.seconds[name]:.1f} s", flush=True)


def _fingerprint(
    cohort: Path,
    store: PatchStore,
    methods: Mapping[str, MethodFeatures],
    encoders: Mapping[str, EncoderInput],
    cfg: EvaluateConfig,
    labels: Path,
    detection: Mapping[str, MethodFeatures] | None = None,
) -> str:
    from drasclr.features import encoder_fingerprint

    parts = {
        "version": FORMAT_VERSION,
        "config": cfg.to_dict(),
        "methods": {n: m.fingerprint for n, m in methods.items()},
        "detection": {n: m.fingerprint for n, m in (detection or {}).items()},
        "encoders": {n: encoder_fingerprint(e) for n, e in encoders.items()},
        "labels": file_sha256(labels),
        "truth": file_sha256(cohort / "truth.parquet")
        if (cohort / "truth.parquet").is_file()
        else None,
        "boxes": file_sha256(cohort / "boxes.parquet")
        if (cohort / "boxes.parquet").is_file()
        else None,
        "store": [str(s) for s in store.subject_ids],
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------ main
def run_evaluation(
    cohort_dir: str | Path,
    store_dir: str | Path,
    methods: Mapping[str, str | Path],
    out_dir: str | Path,
    config: EvaluateConfig | None = None,
    encoders: Mapping[str, EncoderInput] | None = None,
    progress: bool = True,
    overwrite: bool = False,
    labels: str | Path | None = None,
    detection_features: Mapping[str, str | Path] | None = None,
) -> dict[str, Any]:
    """Run every experiment of the paper's §4 on extracted features and write the tables.

    Args:
        cohort_dir: cohort folder (``labels.parquet`` unless ``labels`` is given; ``boxes.parquet``
            and ``truth/`` for the detection experiments, ``truth.parquet`` for the generator's
            fractions; scans are found through the store's manifest). A plain folder of scans
            works: what it lacks is listed as not run.
        store_dir: the patch store the features were extracted from.
        methods: method name → features folder (:func:`drasclr.features.extract_features`).
        out_dir: output folder (layout in the module docstring).
        config: evaluation settings (defaults if None).
        encoders: method name → encoder (export / run folder or module) for the experiments that
            encode boxes and dense maps; methods without one are left out of those.
        progress: print one line per part with its time.
        overwrite: recompute even when ``out_dir`` holds results of the same inputs.
        labels: the labels table (schema ``labels``; default ``cohort_dir/labels.parquet``).
        detection_features: method name → features folder extracted with BatchNorm running
            statistics, for the detected fraction (a box readout fitted on the encoder's own
            box encodings, which use running statistics, applied to landmark patches). Needed for
            every method with an encoder whose features use per-landmark statistics; default:
            the method's own features.

    Returns:
        The ``results.json`` content.

    Raises:
        EvaluationError: missing inputs, or an encoder named for a method without features.
    """
    from drasclr.features import resolve_encoder, store_bounds
    from drasclr.tables import read_frame

    t_start = time.perf_counter()
    cfg = config or EvaluateConfig()
    cohort, out = Path(cohort_dir), Path(out_dir)
    encoders = dict(encoders or {})
    if not methods:
        raise EvaluationError("run_evaluation: no methods given")
    unknown = sorted(set(encoders) - set(methods))
    if unknown:
        raise EvaluationError(f"encoders given for method(s) without features: {unknown}")
    labels_path = Path(labels) if labels is not None else cohort / "labels.parquet"
    if not labels_path.is_file():
        raise EvaluationError(f"{labels_path}: labels table not found; pass the cohort folder or "
                              "a labels table (drasclr run checks a lab's table into one)")
    store = PatchStore(store_dir)
    feats = {name: read_method(name, folder) for name, folder in methods.items()}
    unknown = sorted(set(detection_features or {}) - set(methods))
    if unknown:
        raise EvaluationError(f"detection features given for method(s) without features: {unknown}")
    det = {name: read_method(name, folder) for name, folder in (detection_features or {}).items()}
    for name, enc in encoders.items():  # box probes are fitted on enc, applied to the features
        mine = det.setdefault(name, feats[name])
        for m in (feats[name], mine):
            if (why := encoder_mismatch(m.encoder_fingerprint, enc)) is not None:
                raise EvaluationError(f"method {name!r}: {m.folder}: {why}")
        if not feats[name].random_locations and mine.bn_stats != "running":
            raise EvaluationError(
                f"method {name!r}: {det[name].folder} was extracted with bn_stats="
                f"{det[name].bn_stats!r}; the detected fraction applies a box readout fitted on "
                "the encoder's running-statistics outputs, so pass features extracted with "
                "bn_stats='running' for it (detection_features / --detection-features)"
            )
    fp = _fingerprint(cohort, store, feats, encoders, cfg, labels_path, det)
    done = out / RESULTS_FILE
    if done.is_file() and not overwrite:
        old = json.loads(done.read_text())
        if old.get("fingerprint") == fp:
            if progress:
                print(f"[evaluate] {out}: already done (fingerprint {fp}), skipped", flush=True)
            return dict(old)
    out.mkdir(parents=True, exist_ok=True)
    done.unlink(missing_ok=True)
    cfg.save(out / CONFIG_FILE)
    clock = _Clock(progress)
    notes: list[str] = []
    files: dict[str, Any] = {}
    from drasclr.labels import read_labels

    skipped: list[dict[str, str]] = []
    labels = read_labels(labels_path, cohort / "truth.parquet")
    boxes_all = (
        read_frame(cohort / "boxes.parquet", "boxes").astype({ID_COLUMN: str})
        if (cohort / "boxes.parquet").is_file()
        else None
    )
    subjects = [s for s in store.subject_ids if s in set(labels[ID_COLUMN])]
    if len(subjects) < 4:
        raise EvaluationError(
            f"only {len(subjects)} store subjects have labels in {labels_path}"
        )
    manifest = store.manifest.set_index("subject_id")
    bounds = store_bounds(store)
    enc_names = [n for n in methods if n in encoders and not feats[n].random_locations]
    primary = PRIMARY if PRIMARY in enc_names else (enc_names[0] if enc_names else None)

    # ---------------------------------------------------------------- image features (Table 2)
    t0 = time.perf_counter()
    frames = {name: image_frame(m) for name, m in feats.items()}
    clock.mark("read features", t0)

    # ---------------------------------------------------------------- subject pass: scans
    t0 = time.perf_counter()
    dense_ids = (
        choose_dense_subjects(labels, subjects, cfg.dense_subjects) if enc_names else []
    )
    box_subjects = set() if boxes_all is None else set(boxes_all[ID_COLUMN])

    def visit(sid: str) -> tuple[str, float, BoxPatches | None, Scan | None, str]:
        row = manifest.loc[sid]
        scan, laa = read_scan(
            row["input_path"], sid, cohort, spacing_mm=1.0, with_lesions=sid in dense_ids
        )
        cut = None
        if boxes_all is not None and sid in box_subjects:
            mine = boxes_all[boxes_all[ID_COLUMN] == sid]
            cut = cut_boxes(scan, mine, row["inverse_transform"], bounds, store.patch_size)
        return sid, laa, cut, (scan if sid in dense_ids else None), scan.lung_source

    with ThreadPoolExecutor(max_workers=cfg.read_workers) as pool:
        visited = list(pool.map(visit, subjects))
    # the baseline a user can compute: preprocessing's own lung mask, never the generator's truth
    laa_image = pd.DataFrame(
        {ID_COLUMN: subjects, "laa950": manifest.loc[subjects, "laa950"].to_numpy(np.float64)}
    )
    box_data = concat_boxes([v[2] for v in visited if v[2] is not None], store.patch_size)
    scans = {v[0]: v[3] for v in visited if v[3] is not None}
    n_laa = int(laa_image["laa950"].notna().sum())
    notes.append(
        "LAA-950 (image): share of lung voxels < -950 HU inside the pipeline's own lung mask "
        "(preprocessing's segmentation of the 1 mm clipped CT, manifest column laa950), not the "
        f"synthetic cohort's truth mask; known for {n_laa} of {len(subjects)} subjects"
        + ("" if n_laa == len(subjects) else " (the store predates the column: re-preprocess)")
        + "."
    )
    clock.mark("read scans + cut boxes", t0)

    t0 = time.perf_counter()
    laa_patch = store_patch_laa(store, subjects)
    notes.append(
        "LAA-950 (patch): one value per landmark patch from the store (all voxels of the 32^3 "
        "patch count; out-of-view or lung-free patches take the landmark's mean)."
    )
    clock.mark("patch LAA-950 from store", t0)

    # ---------------------------------------------------------------- Table 2
    t0 = time.perf_counter()
    laa_rows = {LAA_IMAGE: laa_image} if laa_image["laa950"].notna().any() else {}
    image_methods = {**frames, **laa_rows, LAA_PATCH: laa_patch}
    mine = labels[labels[ID_COLUMN].isin(subjects)]
    tasks = [t for t in IMAGE_TASKS if available(mine, [t.column])]
    skipped += [not_run(f"Table 2: {t.name}", f"no {t.column}") for t in IMAGE_TASKS
                if t not in tasks]
    table2 = compare_methods(image_methods, labels, cfg, tasks)
    files["table2"] = save_table(table2, out, "table2_image_readouts")
    clock.mark("table 2: image readouts", t0)

    # ---------------------------------------------------------------- patch probe
    t0 = time.perf_counter()
    probe_table, probe_detect = _patch_probe(cohort, store, subjects, feats, cfg, out, labels)
    if probe_table is not None:
        files["patch_probe"] = save_table(probe_table, out, "patch_probe")
        files["patch_probe_detection"] = save_table(probe_detect, out, "patch_probe_detection")
        notes.append(
            "Patch probe: ridge from frozen patch features (or the patch's LAA-950 / LAA-910) to "
            "the patch's true lesion fraction (voxel truth cut like the stored patches), "
            f"subject-grouped 5-fold CV x {cfg.probe_repeats}; R² of the pooled out-of-fold "
            "predictions, AUC for fraction > 1 %."
        )
    else:
        notes.append("Patch probe not run: the cohort has no voxel truth (truth/<id>_lesions).")
    clock.mark("patch probe", t0)

    # ---------------------------------------------------------------- powered image readouts
    t0 = time.perf_counter()
    powered = _powered_readouts(feats, laa_image, labels, subjects, cfg)
    files["image_readouts_powered"] = save_table(powered, out, "image_readouts_powered")
    notes.append(
        f"Powered image readouts: {cfg.readout_repeats} x 5-fold CV, pooled out-of-fold R² / "
        "accuracy per repeat (mean ± s.d. over repeats); patch features standardised per "
        "landmark on the training fold before the mean over landmarks; lasso (regression) or "
        "the 8 best features by ANOVA F + logistic regression (classes). Sanity rows: LAA-950 "
        "alone and LAA-950 + 128 random features must score alike. Table 2 keeps the paper's "
        "plain mean with fold-mean scores."
    )
    clock.mark("powered image readouts", t0)

    # ---------------------------------------------------------------- Table 3
    t0 = time.perf_counter()
    models = [m for m in SURVIVAL_MODELS
              if available(mine, ["survival_time", "survival_event", *CONFOUNDERS, *m.clinical])]
    skipped += [not_run(f"Table 3: {m.name}", "no " + ", ".join(missing_columns(
        mine, ["survival_time", "survival_event", *CONFOUNDERS, *m.clinical])))
        for m in SURVIVAL_MODELS if m not in models]
    table3 = None
    try:
        if models:
            table3 = survival_methods_table({**frames, **laa_rows}, labels, cfg, models)
            files["table3"] = save_table(table3, out, "table3_survival")
    except ValueError as err:
        table3 = None
        notes.append(f"Survival (Table 3) not computed: {err}")
    clock.mark("table 3: survival", t0)

    # ---------------------------------------------------------------- Table 7
    rand = [n for n, m in feats.items() if m.random_locations]
    if rand:
        rows = []
        for r in rand:
            partner = next(
                (
                    n
                    for n, m in feats.items()
                    if not m.random_locations
                    and m.encoder_fingerprint == feats[r].encoder_fingerprint
                ),
                PRIMARY if PRIMARY in feats else None,
            )
            for n in (partner, r):
                if n is not None:
                    part = table2[table2["method"] == n].copy()
                    part.insert(1, "locations", "random" if n == r else "landmark")
                    rows.append(part)
        table7 = pd.concat(rows, ignore_index=True).drop_duplicates(["method", "task", "metric"])
        files["table7"] = save_table(table7, out, "table7_random_locations")

    # ---------------------------------------------------------------- boxes (Table 5)
    box_info: dict[str, Any] = {}
    box_feats: dict[str, npt.NDArray[np.float32]] = {}
    modules: dict[str, nn.Module] = {}
    table5 = curve = None
    if boxes_all is None or len(box_data.locations) == 0:
        reason = "no boxes.parquet" if boxes_all is None else "no box in the store's subjects"
        skipped += [not_run(e, reason) for e in (
            "Table 5: box detection", "Fig. 5: label efficiency",
            "Fig. 4: detected emphysema fraction", "Fig. 3: dense maps and the 25 % rule")]
    else:
        box_info = {
            "counts": describe_boxes(box_data.boxes),
            "out_of_view": int((~box_data.in_view).sum()),
        }
        t0 = time.perf_counter()
        for name in enc_names:
            modules[name], _ = resolve_encoder(encoders[name])
            box_feats[name] = encode_boxes(modules[name], box_data, cfg.batch_size, cfg.device)
            save_table(
                box_feature_frame(box_data, box_feats[name]), out / "box_features", slug(name)
            )
        clock.mark(f"box features ({len(box_data.locations)} boxes x {len(enc_names)} encoders)", t0)

        t0 = time.perf_counter()
        parts = []
        for name in enc_names:
            t = box_readout_table(box_feature_frame(box_data, box_feats[name]), box_data.boxes, cfg)
            parts.append(t.assign(method=name, readout="linear (frozen)"))
        laa_box = np.nan_to_num(box_data.laa950, nan=0.0)
        laa_frame = box_data.boxes[["box_id", ID_COLUMN, "label"]].assign(laa950=laa_box)
        parts.append(
            box_readout_table(laa_frame, box_data.boxes, cfg).assign(
                method=LAA_BOX, readout="linear"
            )
        )
        if cfg.finetune_epochs > 0 and primary is not None:
            parts.extend(_finetune_rows(box_data, modules, cfg, primary))
        table5 = pd.concat(parts, ignore_index=True)
        table5 = table5[["method", "readout", *TABLE_COLUMNS]]
        files["table5"] = save_table(table5, out, "table5_box_detection")
        clock.mark("table 5: box readouts", t0)

        t0 = time.perf_counter()
        curve = _label_efficiency(box_data, box_feats, laa_box, modules, cfg, primary)
        files["label_efficiency"] = save_table(curve, out, "label_efficiency")
        clock.mark("label efficiency", t0)

    # ---------------------------------------------------------------- Fig 4: all subjects
    fractions = None
    if box_feats:
        t0 = time.perf_counter()
        fractions = _patch_fractions(
            {n: det[n] for n in enc_names}, box_data, box_feats, store, subjects, cfg
        )
        extra = labels[
            [
                c
                for c in (ID_COLUMN, "gold", "true_emphysema_fraction", "true_cle_fraction",
                          "true_pse_fraction")
                if c in labels
            ]
        ]
        fractions = fractions.merge(extra, on=ID_COLUMN, how="left").merge(
            laa_image, on=ID_COLUMN, how="left"
        )
        files["detected_fraction"] = save_table(fractions, out, "detected_fraction")
        notes.append(
            "Detected emphysema fraction (Fig. 4 analogue) for every subject: the box readout "
            "(cle, pse vs healthy), fitted out-of-subject (subject folds), applied to each stored "
            "landmark patch's features; a patch counts as emphysema when either probability > "
            f"{cfg.prob_threshold}, weighted by its lung fraction. Dense maps are made only for "
            f"{len(dense_ids)} subject(s)."
        )
        clock.mark("detected fraction per subject (landmark patches)", t0)

    # ---------------------------------------------------------------- dense subjects
    dense_summary: dict[str, Any] = {"subjects": dense_ids, "stride": cfg.dense_stride}
    if box_feats and dense_ids and boxes_all is not None:
        t0 = time.perf_counter()
        dense_methods = [m for m in (cfg.dense_methods or (primary,)) if m in box_feats]
        dense_summary["methods"] = dense_methods
        overlap, dboxes = _dense(
            dense_methods, modules, box_data, box_feats, scans, manifest, bounds, labels, cfg,
            out,
        )
        files["dense_overlap"] = save_table(overlap, out, "dense_overlap")
        files["dense_boxes"] = save_table(dboxes, out, "dense_boxes")
        rule = _rule_table(dboxes, cfg)
        files["table5_rule"] = save_table(rule, out, "table5_box_rule")
        notes.append(
            f"Paper's box rule (>= {cfg.box_min_fraction:.0%} of box voxels with p > "
            f"{cfg.prob_threshold}) applied to dense maps of {len(dense_ids)} held-out subject(s) "
            f"(stride {cfg.dense_stride}, trilinear). DEPARTURE, labelled 'chosen fraction': the "
            "box fraction chosen by leave-one-subject-out F1 among the dense subjects from "
            f"{list(cfg.rule_fractions)} (fallback {cfg.rule_fallback_fraction} when it cannot be "
            "chosen), because our boxes hold only "
            + _fraction_range(box_data.boxes)
            + " lesion voxels so a faithful map can never fill 25 % of a box."
        )
        clock.mark(f"dense maps ({len(dense_ids)} subjects x {len(dense_methods)} methods)", t0)
        if not any(s.lesions is not None for s in scans.values()):
            skipped.append(not_run("Fig. 3: dense Dice vs voxel truth",
                                   "no voxel truth (truth/<id>_lesions.nii.gz)"))

    results = {
        "fingerprint": fp,
        "format_version": FORMAT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cohort": _cohort_info(cohort, labels, subjects),
        "store": {
            "path": str(store.path),
            "n_subjects": store.num_subjects,
            "n_landmarks": store.num_landmarks,
            "atlas_id": store.info.atlas_id,
            "qc_sheet": str(store.path / "reports" / "qc_sheet.png"),
        },
        "methods": {
            n: {
                "features": str(m.folder),
                "random_locations": m.random_locations,
                "encoder": n in encoders,
                "encoder_source": str(encoders[n]) if isinstance(encoders.get(n), (str, Path))
                else ("in-memory" if n in encoders else None),
            }
            for n, m in feats.items()
        },
        "primary": primary,
        "boxes": box_info,
        "dense": dense_summary,
        "finetune": {"epochs": cfg.finetune_epochs, "done": cfg.finetune_epochs > 0},
        "headline": _headline(table2, table3, table5, fractions, enc_names),
        "notes": notes,
        "not_run": skipped,
        "files": files,
        "config": cfg.to_dict(),
    }
    clock.seconds["total"] = round(time.perf_counter() - t_start, 2)
    results["seconds"] = clock.seconds
    atomic_write_text(done, json.dumps(results, indent=1, default=_json_default))
    if progress:
        print(f"[evaluate] done in {clock.seconds['total']:.1f} s -> {out}", flush=True)
    return json.loads(json.dumps(results, default=_json_default))


def _json_default(v: Any) -> Any:
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)


def _fraction_range(boxes: pd.DataFrame) -> str:
    lf = boxes.loc[boxes["label"] != "healthy", "lesion_fraction"]
    if lf.empty:
        return "(no lesion boxes)"
    return f"{lf.min():.0%}-{lf.max():.0%}"


def _cohort_info(cohort: Path, labels: pd.DataFrame, subjects: list[str]) -> dict[str, Any]:
    info: dict[str, Any] = {"path": str(cohort), "n_subjects": len(subjects)}
    cfg_file = cohort / "synth_config.yaml"
    if cfg_file.is_file():
        import yaml

        syn = yaml.safe_load(cfg_file.read_text()) or {}
        info.update({k: syn.get(k) for k in ("preset", "mode", "seed")})
    lab = labels[labels[ID_COLUMN].isin(subjects)]
    if "gold" in lab:
        info["gold_counts"] = {str(int(k)): int(v) for k, v in lab["gold"].value_counts().items()}
    if "survival_event" in lab:
        info["n_events"] = int(lab["survival_event"].sum())
    return info


def _headline(
    table2: pd.DataFrame,
    table3: pd.DataFrame | None,
    table5: pd.DataFrame | None,
    fractions: pd.DataFrame | None,
    enc_names: list[str],
) -> dict[str, Any]:
    """Per task, the best method and every method's mean (the report's reading uses it)."""
    out: dict[str, Any] = {"image": {}, "survival": {}, "boxes": {}, "fraction_spearman": {}}
    for (task, metric), grp in table2.groupby(["task", "metric"], sort=False):
        g = grp.dropna(subset=["mean"])
        if g.empty:
            continue
        best = g.loc[g["mean"].idxmax()]
        out["image"][f"{task} {metric}"] = {
            "best": str(best["method"]),
            "means": dict(zip(g["method"], g["mean"].astype(float))),
        }
    if table3 is not None:
        img = table3[table3["model"] == "imaging"]
        means = img.groupby("method")["c_index"].mean()
        out["survival"] = {k: float(v) for k, v in means.items()}
        clin = table3[table3["group"] == "clinical"].groupby(["method", "model"], sort=False)
        out["survival_clinical"] = {  # one entry per subject set the clinical rows were fitted on
            (model if method == "clinical" else f"{model} [{method}]"): float(v)
            for (method, model), v in clin["c_index"].mean().items()
        }
    if table5 is not None:
        for (task, metric), grp in table5.groupby(["task", "metric"], sort=False):
            if metric != "f1":
                continue
            g = grp.dropna(subset=["mean"])
            if g.empty:
                continue
            key = g["method"] + np.where(g["readout"] == "fine-tuned", " (fine-tuned)", "")
            out["boxes"][f"{task} f1"] = {
                "best": str(key.loc[g["mean"].idxmax()]),
                "means": dict(zip(key, g["mean"].astype(float))),
            }
    if fractions is not None and "true_emphysema_fraction" in fractions:
        for name in enc_names:
            col = f"{name}: emphysema"
            if col in fractions:
                ok = fractions[[col, "true_emphysema_fraction"]].dropna()
                if len(ok) >= 3 and ok[col].nunique() > 1:
                    rho = spearmanr(ok[col], ok["true_emphysema_fraction"]).statistic
                    out["fraction_spearman"][name] = float(rho)
        ok = fractions[["laa950", "true_emphysema_fraction"]].dropna()
        if len(ok) >= 3 and ok["laa950"].nunique() > 1:
            out["fraction_spearman"][LAA_IMAGE] = float(
                spearmanr(ok["laa950"], ok["true_emphysema_fraction"]).statistic
            )
    return out


# ------------------------------------------------------------------------------------ parts
def _finetune_rows(
    boxes: BoxPatches, modules: Mapping[str, nn.Module], cfg: EvaluateConfig, primary: str
) -> list[pd.DataFrame]:
    """Table 5 rows of full fine-tuning (CV like the linear rows) and the CNN from scratch."""
    from drasclr.evaluate.finetune import FineTuner, copy_factory
    from drasclr.nn.encoder import DrasEncoder

    tuned = [m for m in (cfg.finetune_methods or (primary,)) if m in modules]
    factories = {m: copy_factory(modules[m]) for m in tuned}
    factories[SCRATCH] = DrasEncoder
    parts = []
    for name, factory in factories.items():
        rows = []
        for task in BOX_TASKS:
            pos, y = task_labels(boxes.boxes, task)
            groups = boxes.boxes[ID_COLUMN].to_numpy()[pos]

            def make(*_: Any, f: Any = factory) -> FineTuner:
                return FineTuner(f, boxes, cfg.finetune_epochs, cfg.finetune_lr,
                                 seed=cfg.seed, device=cfg.device)

            res = cross_validate(
                pos[:, None], y, "classification", DETECTION_METRICS, cfg, groups=groups,
                pipeline_factory=make,
            )
            rows.extend(task_rows(res, Task(task, "label", "classification", DETECTION_METRICS), y))
        parts.append(
            pd.DataFrame(rows, columns=TABLE_COLUMNS).assign(method=name, readout="fine-tuned")
        )
    return parts


def _label_efficiency(
    boxes: BoxPatches,
    box_feats: Mapping[str, npt.NDArray[np.float32]],
    laa_box: npt.NDArray[np.float64],
    modules: Mapping[str, nn.Module],
    cfg: EvaluateConfig,
    primary: str | None,
) -> pd.DataFrame:
    """F1 vs share of training labels per task; frozen linear readouts (+ fine-tuning)."""
    from drasclr.evaluate.finetune import copy_factory, fit_predict
    from drasclr.nn.encoder import DrasEncoder

    parts = []
    for task in BOX_TASKS:
        pos, y = task_labels(boxes.boxes, task)
        groups = boxes.boxes[ID_COLUMN].to_numpy()[pos]
        curve_methods: dict[str, Any] = {n: f[pos] for n, f in box_feats.items()}
        curve_methods[LAA_BOX] = laa_box[pos][:, None]
        if cfg.finetune_epochs > 0 and primary is not None:
            for name, factory in ((f"{primary} (fine-tuned)", copy_factory(modules[primary])),
                                  (SCRATCH, DrasEncoder)):
                curve_methods[name] = fit_predict(
                    {"rows": pos, "make_encoder": factory, "boxes": boxes,
                     "epochs": cfg.finetune_epochs, "lr": cfg.finetune_lr, "seed": cfg.seed,
                     "device": cfg.device},
                    y,
                )
        try:
            c = label_efficiency(curve_methods, y, cfg, "f1", groups=groups)
        except ValueError:
            continue
        parts.append(c.assign(task=task))
    if not parts:
        return pd.DataFrame(columns=["method", "fraction", "metric", "mean", "sd", "n_folds", "task"])
    return pd.concat(parts, ignore_index=True)


def _patch_probe(
    cohort: Path,
    store: PatchStore,
    subjects: list[str],
    feats: Mapping[str, MethodFeatures],
    cfg: EvaluateConfig,
    out: Path,
    labels: pd.DataFrame,
) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """The patch probe table and the detection read from its out-of-subject predictions
    (``(None, None)`` without voxel truth); the truth is cached in ``out``."""
    from drasclr.evaluate.patch_probe import (
        density_scores,
        features_for_truth,
        patch_probe_table,
        read_patch_truth,
    )
    from drasclr.features import read_patch_features

    if not any((cohort / "truth" / f"{s}_lesions.nii.gz").is_file() for s in subjects):
        return None, None
    cache = out / "patch_truth.parquet"
    truth = pd.read_parquet(cache) if cache.is_file() else None
    if truth is None or set(truth[ID_COLUMN]) != set(subjects) and not truth.empty:
        truth = read_patch_truth(cohort, store, subjects, threads=cfg.read_workers)
        tmp = cache.with_suffix(".tmp.parquet")
        truth.to_parquet(tmp)
        tmp.replace(cache)
    features: dict[str, Any] = {}
    for name, m in feats.items():
        pf = read_patch_features(m.folder)
        features[name] = features_for_truth(pf.features.astype(np.float64),
                                            list(pf.subject_ids), truth)
    features.update(density_scores(store, truth))
    table = patch_probe_table(features, truth, 5, cfg.probe_repeats, cfg.seed)
    from drasclr.evaluate.science import DETECT_FRACTION, detection_metrics, patch_metrics

    true = (labels.set_index(ID_COLUMN)["true_emphysema_fraction"].to_dict()
            if "true_emphysema_fraction" in labels else {})
    rows = []
    for name, x in features.items():
        _, oof = patch_metrics(x, truth, 1, cfg.seed)
        det = detection_metrics(oof, truth, store.lung_fraction, true)
        rows.append({"method": name, "flag_fraction": DETECT_FRACTION, **det})
    return table, pd.DataFrame(rows)


def _powered_readouts(
    feats: Mapping[str, MethodFeatures],
    laa_image: pd.DataFrame,
    labels: pd.DataFrame,
    subjects: list[str],
    cfg: EvaluateConfig,
) -> pd.DataFrame:
    """Image readouts with repeated CV for every method, LAA-950 and the sanity rows."""
    from drasclr.evaluate.image_probe import sanity_rows
    from drasclr.evaluate.science import IMAGE_METRICS, image_metrics
    from drasclr.features import read_patch_features

    lab = labels.set_index(ID_COLUMN).loc[subjects].reset_index()
    rows: list[dict[str, Any]] = []

    def add(method: str, scores: Mapping[str, list[float]]) -> None:
        for metric, vals in scores.items():
            v = np.asarray(vals, dtype=np.float64)
            rows.append({"method": method, "metric": metric, "mean": float(np.nanmean(v)),
                         "sd": float(np.nanstd(v, ddof=1)) if len(v) > 1 else 0.0,
                         "n": len(lab)})

    for name, m in feats.items():
        pf = read_patch_features(m.folder)
        pos = {s: k for k, s in enumerate(pf.subject_ids)}
        x = pf.features.astype(np.float64)[[pos[s] for s in subjects]]
        add(name, image_metrics(x, None, lab, cfg.readout_repeats, cfg.seed))
    laa = laa_image.set_index(ID_COLUMN).loc[subjects, ["laa950"]].to_numpy(np.float64)
    if not np.isfinite(laa).all():
        return pd.DataFrame(rows)
    add(LAA_IMAGE, image_metrics(None, laa, lab, cfg.readout_repeats, cfg.seed))
    for metric, (column, kind, log) in IMAGE_METRICS.items():
        if kind != "regression" or column not in lab or lab[column].notna().sum() < 10:
            continue
        y = lab[column].to_numpy(np.float64)
        ok = np.isfinite(y) & np.isfinite(laa[:, 0])
        for row_name, res in sanity_rows(laa[ok, 0], np.log(y[ok]) if log else y[ok],
                                         repeats=cfg.readout_repeats).items():
            add(f"sanity: {row_name}", {metric: res["scores"]})
    return pd.DataFrame(rows)


def _patch_fractions(
    methods: Mapping[str, MethodFeatures],
    boxes: BoxPatches,
    box_feats: Mapping[str, npt.NDArray[np.float32]],
    store: PatchStore,
    subjects: list[str],
    cfg: EvaluateConfig,
) -> pd.DataFrame:
    """Detected emphysema share per subject from landmark-patch predictions, out of subject.

    Subjects are split into folds; for each fold the box readout is fitted on the boxes of the
    other folds' subjects and applied to the fold's landmark patches. Returns ``subject_id`` and,
    per method, ``<method>: cle``, ``<method>: pse``, ``<method>: emphysema``.
    """
    from drasclr.features import read_patch_features

    out = pd.DataFrame({ID_COLUMN: subjects})
    groups = subject_groups(subjects, cfg.n_folds, cfg.seed)
    box_subject = boxes.boxes[ID_COLUMN].astype(str).to_numpy()
    box_label = boxes.boxes["label"].astype(str).to_numpy()
    lf_all, valid_all = store.lung_fraction, store.valid
    for name, method in methods.items():
        pf = read_patch_features(method.folder)
        row_of = {s: k for k, s in enumerate(pf.subject_ids)}
        values = np.full((len(subjects), len(BOX_TASKS) + 1), np.nan)
        for test in groups:
            train = ~np.isin(box_subject, test)
            probe = fit_probe(box_feats[name][train], box_label[train], BOX_TASKS, cfg.logistic_c)
            if probe is None:
                continue
            for sid in test:
                if sid not in row_of:
                    continue
                k = subjects.index(sid)
                idx = store.index_of(sid)
                w = np.where(valid_all[:, idx], lf_all[:, idx], 0.0).astype(np.float64)
                feats = pf.features[row_of[sid]]
                ok = np.isfinite(feats).all(axis=1)
                p = np.zeros((len(w), len(BOX_TASKS)))
                p[ok] = probe.predict_proba(feats[ok])
                w = np.where(ok, w, 0.0)
                fitted = np.asarray(probe.fitted)
                hit = (p > cfg.prob_threshold) & fitted[None]
                det = np.concatenate([hit, hit.any(axis=1, keepdims=True)], axis=1)
                if w.sum() > 0:
                    values[k] = (w[:, None] * det).sum(axis=0) / w.sum()
                    values[k, : len(BOX_TASKS)][~fitted] = np.nan
        for j, task in enumerate((*BOX_TASKS, "emphysema")):
            out[f"{name}: {task}"] = values[:, j]
    return out


def _coronal_index(scan: Scan) -> int:
    """Coronal slice (y index) with the most emphysema truth voxels, else the most lung."""
    if scan.lesions is not None:
        emph = np.isin(scan.lesions, EMPHYSEMA_CODES).sum(axis=(0, 2))
        if emph.max() > 0:
            return int(emph.argmax())
    return int(scan.lungs.sum(axis=(0, 2)).argmax())


def _dense(
    dense_methods: list[str],
    modules: Mapping[str, nn.Module],
    boxes: BoxPatches,
    box_feats: Mapping[str, npt.NDArray[np.float32]],
    scans: Mapping[str, Scan],
    manifest: pd.DataFrame,
    bounds: Any,
    labels: pd.DataFrame,
    cfg: EvaluateConfig,
    out: Path,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Dense probability maps of the dense subjects with a readout fitted on the other subjects.

    Returns:
        ``(overlap per method x subject, positive-voxel fraction per method x box)``.
    """
    from drasclr.features import dense_features

    box_subject = boxes.boxes[ID_COLUMN].astype(str).to_numpy()
    box_label = boxes.boxes["label"].astype(str).to_numpy()
    train = ~np.isin(box_subject, list(scans))
    gold = labels.set_index(ID_COLUMN)["gold"] if "gold" in labels else None
    overlap_rows, box_rows = [], []
    (out / "dense").mkdir(parents=True, exist_ok=True)
    for name in dense_methods:
        probe = fit_probe(box_feats[name][train], box_label[train], BOX_TASKS, cfg.logistic_c)
        if probe is None:
            continue
        for sid, scan in scans.items():
            dense = dense_features(
                modules[name], scan.hu, scan.geometry, manifest.loc[sid, "inverse_transform"],
                bounds, mask=scan.lungs, stride=cfg.dense_stride, head=probe,
                patch_size=boxes.patches.shape[-1], batch_size=cfg.batch_size, device=cfg.device,
            )
            prob = dense.to_volume(fill=0.0).astype(np.float32)  # (2, Z, Y, X)
            hit = prob > cfg.prob_threshold
            any_hit = hit.any(axis=0)
            pred_codes = np.where(any_hit, np.where(prob[0] >= prob[1], 1, 2), 0).astype(np.uint8)
            row: dict[str, Any] = {
                "method": name,
                ID_COLUMN: sid,
                "gold": int(gold[sid]) if gold is not None and pd.notna(gold.get(sid)) else None,
                "n_encoded": dense.num_encoded,
                "lung_voxels": int(scan.lungs.sum()),
                "detected_fraction": detected_fraction(any_hit.astype(np.float32), scan.lungs,
                                                       0.5),
            }
            if scan.lesions is not None:
                truth = scan.lesions
                row["true_fraction"] = float(
                    np.count_nonzero(np.isin(truth, EMPHYSEMA_CODES) & scan.lungs)
                    / max(1, int(scan.lungs.sum()))
                )
                row.update(overlap_by_subtype(any_hit, truth, region=scan.lungs))
                d = dice_per_subtype(pred_codes, truth, {"cle": 1, "pse": 2}, region=scan.lungs)
                row.update({f"dice_{k}": v for k, v in d.items()})
            row["unfitted_tasks"] = ",".join(
                t for t, f in zip(probe.tasks, probe.fitted) if not f
            )
            overlap_rows.append(row)
            mine = np.flatnonzero(box_subject == sid)
            for j, task in enumerate(BOX_TASKS):
                rows = mine[np.isin(box_label[mine], [task, "healthy"])]
                if len(rows) == 0 or not probe.fitted[j]:
                    continue
                det = box_detections(prob[j], scan.geometry, boxes.boxes.iloc[rows],
                                     cfg.prob_threshold, cfg.box_min_fraction)
                box_rows.append(det.assign(method=name, task=task, **{ID_COLUMN: sid},
                                           label=box_label[rows]))
            y = _coronal_index(scan)
            np.savez_compressed(
                out / "dense" / f"{slug(name)}__{sid}.npz",
                ct=scan.hu[:, y, :],
                lungs=scan.lungs[:, y, :],
                truth=(scan.lesions[:, y, :] if scan.lesions is not None
                       else np.zeros_like(scan.hu[:, y, :], np.uint8)),
                prob=prob[:, :, y, :],
                y_index=y,
                spacing=np.asarray(scan.geometry.spacing),
                method=name,
                subject_id=sid,
            )
    cols = ["box_id", "positive_fraction", "detected", "method", "task", ID_COLUMN, "label"]
    dboxes = pd.concat(box_rows, ignore_index=True) if box_rows else pd.DataFrame(columns=cols)
    return pd.DataFrame(overlap_rows), dboxes


def _best_fraction(frac: npt.NDArray[Any], y: npt.NDArray[Any], grid: tuple[float, ...]) -> float:
    """The grid box fraction with the best F1 (ties: the larger fraction); NaN if undefined."""
    if len(np.unique(y)) < 2:
        return float("nan")
    f1 = [detection_scores(frac >= g, y)["f1"] for g in grid]
    best = max(f1)
    return float(max(g for g, s in zip(grid, f1) if s == best))


def _rule_table(dboxes: pd.DataFrame, cfg: EvaluateConfig) -> pd.DataFrame:
    """F1 / precision / recall of the 25 % rule and of the leave-one-subject-out chosen fraction."""
    rows = []
    for (method, task), grp in dboxes.groupby(["method", "task"], sort=False):
        y = (grp["label"] == task).to_numpy().astype(int)
        frac = np.nan_to_num(grp["positive_fraction"].to_numpy(float))
        paper = detection_scores(frac >= cfg.box_min_fraction, y)
        rows.append({"method": method, "task": task, "rule": "paper (25 %)",
                     "fraction": cfg.box_min_fraction, **paper, "n_boxes": len(y),
                     "n_positive": int(y.sum()), "fallback": False})
        chosen = np.zeros(len(y), bool)
        used = []
        fallback = False
        subj = grp[ID_COLUMN].to_numpy()
        for s in np.unique(subj):
            other = subj != s
            g = _best_fraction(frac[other], y[other], cfg.rule_fractions)
            if not np.isfinite(g):
                g, fallback = cfg.rule_fallback_fraction, True
            used.append(g)
            chosen[subj == s] = frac[subj == s] >= g
        rows.append({"method": method, "task": task, "rule": "chosen fraction (departure)",
                     "fraction": float(np.median(used)), **detection_scores(chosen, y),
                     "n_boxes": len(y), "n_positive": int(y.sum()), "fallback": fallback})
    return pd.DataFrame(rows, columns=["method", "task", "rule", "fraction", "f1", "precision",
                                       "recall", "n_boxes", "n_positive", "fallback"])
