"""The evaluation stage: the paper's experiments from extracted features, a cohort and a store.

:func:`run_evaluation` takes the feature folders of several methods (written by
:func:`drasclr.features.extract_features`), the cohort (labels, boxes, scans, voxel truth) and the
patch store, and writes under ``out_dir``::

    evaluate_config.yaml         the EvaluateConfig used
    table2_image_readouts.*      image-level readouts, every method + LAA-950 (image and patch)
    image_readouts_powered.*     the same with repeated CV, LAA-950 and the sanity rows
    patch_probe.*                patch features -> each patch's true lesion fraction (voxel truth)
    patch_probe_detection.*      subject-level detection from the patch probe's predictions
    patch_truth.parquet          the patch truth the probe uses (a cache, not a result table)
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

Every table is checked against its data contract ``schemas/eval_<table>.json`` before it is
written (:mod:`drasclr.evaluate.contracts`); scans and voxel truth are read with the store's own
preprocessing settings (:func:`drasclr.preprocess.config.saved_config`).

This module only orchestrates: it reads the inputs, decides which experiments the inputs allow,
calls them and saves what they return. The experiments live in their own modules:

* :mod:`~drasclr.evaluate.image_readouts` — Table 2 and Table 7;
* :mod:`~drasclr.evaluate.patch_probe` — the patch probe and its detection;
* :mod:`~drasclr.evaluate.powered_readouts` — the powered image readouts;
* :mod:`~drasclr.evaluate.survival` — Table 3;
* :mod:`~drasclr.evaluate.box_detection` — Table 5 (frozen, LAA-950, fine-tuned);
* :mod:`~drasclr.evaluate.label_efficiency` — Fig. 5;
* :mod:`~drasclr.evaluate.detected_fraction` — Fig. 4;
* :mod:`~drasclr.evaluate.dense_maps` — Fig. 3 and the 25 % rule;
* :mod:`~drasclr.evaluate.headline` — ``results.json["headline"]``.

Baseline choices (stated again in ``results.json["notes"]``): image-level LAA-950 is computed on
each subject's native CT inside the cohort's truth lung mask (``truth/<id>_lungs.nii.gz``; the
store keeps no lung masks), or inside a fresh segmentation when there is no truth; patch-level
LAA-950 is computed on the store's patches (all voxels of the patch, patches without lung or out of
view get the landmark's mean); box-level LAA-950 on the box patch (store grid) inside the lung mask.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from torch import nn

from drasclr.evaluate.baselines import store_patch_laa
from drasclr.evaluate.box_detection import box_detection_table, box_laa
from drasclr.evaluate.boxes import (
    box_feature_frame,
    describe_boxes,
    encode_boxes,
    encoder_mismatch,
    read_subjects,
)
from drasclr.evaluate.config import EvaluateConfig
from drasclr.evaluate.contracts import save_table
from drasclr.evaluate.dense_maps import box_rule_table, choose_dense_subjects, dense_maps
from drasclr.evaluate.detected_fraction import detected_fraction_table
from drasclr.evaluate.headline import headline
from drasclr.evaluate.image_readouts import (
    image_readouts_table,
    laa_image_methods,
    random_locations_table,
)
from drasclr.evaluate.inputs import (
    EncoderInput,
    EvaluationError,
    MethodFeatures,
    image_frame,
    read_method,
)
from drasclr.evaluate.label_efficiency import label_efficiency_table
from drasclr.evaluate.patch_probe import (
    cached_patch_truth,
    dense_heads,
    has_lesion_truth,
    patch_probe_tables,
)
from drasclr.evaluate.powered_readouts import powered_readouts_table
from drasclr.evaluate.readouts import ID_COLUMN, IMAGE_TASKS
from drasclr.evaluate.science import DETECT_FRACTION
from drasclr.evaluate.survival import CONFOUNDERS, SURVIVAL_MODELS, survival_methods_table
from drasclr.fsutil import atomic_write_text, file_sha256, slug
from drasclr.labels import missing_columns
from drasclr.preprocess.config import saved_config
from drasclr.store.reader import PatchStore

__all__ = ["EvaluationError", "available", "not_run", "run_evaluation"]

RESULTS_FILE = "results.json"
CONFIG_FILE = "evaluate_config.yaml"
PRIMARY = "DrasCLR"
FORMAT_VERSION = 1


def available(labels: pd.DataFrame, columns: Sequence[str]) -> bool:
    """True when ``labels`` holds values in every one of ``columns`` (an experiment can run)."""
    return not missing_columns(labels, columns)


def not_run(experiment: str, reason: str) -> dict[str, str]:
    """A ``results.json["not_run"]`` entry (the report lists it as "not run: <reason>")."""
    return {"experiment": experiment, "reason": reason}


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
    preprocessing = saved_config(store.path)  # how the store read and segmented scans
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
    box_data, scans = read_subjects(
        subjects, manifest, cohort, boxes_all, dense_ids, bounds, store.patch_size,
        spacing_mm=preprocessing.spacing_mm, segment=preprocessing.segment,
        workers=cfg.read_workers,
    )
    # the baseline a user can compute: preprocessing's own lung mask, never the generator's truth
    laa_image = pd.DataFrame(
        {ID_COLUMN: subjects, "laa950": manifest.loc[subjects, "laa950"].to_numpy(np.float64)}
    )
    n_laa = int(laa_image["laa950"].notna().sum())
    notes.append(
        "LAA-950 (image): share of lung voxels < -950 HU inside the pipeline's own lung mask "
        f"(preprocessing's segmentation of the {preprocessing.spacing_mm:g} mm clipped CT, "
        "manifest column laa950), not the "
        f"synthetic cohort's truth mask; known for {n_laa} of {len(subjects)} subjects"
        + ("" if n_laa == len(subjects) else " (the store predates the column: re-preprocess)")
        + "."
    )
    clock.mark("read scans + cut boxes", t0)

    t0 = time.perf_counter()
    laa_patch = store_patch_laa(store, subjects)
    notes.append(
        "LAA-950 (patch): one value per landmark patch from the store (all voxels of the "
        f"{store.patch_size}^3 patch count; out-of-view or lung-free patches take the landmark's "
        "mean)."
    )
    clock.mark("patch LAA-950 from store", t0)

    # ---------------------------------------------------------------- Table 2
    t0 = time.perf_counter()
    mine = labels[labels[ID_COLUMN].isin(subjects)]
    tasks = [t for t in IMAGE_TASKS if available(mine, [t.column])]
    skipped += [not_run(f"Table 2: {t.name}", f"no {t.column}") for t in IMAGE_TASKS
                if t not in tasks]
    table2 = image_readouts_table(frames, laa_image, laa_patch, labels, tasks, cfg)
    files["table2"] = save_table(table2, out, "table2_image_readouts")
    clock.mark("table 2: image readouts", t0)

    # ---------------------------------------------------------------- patch probe
    t0 = time.perf_counter()
    truth = probe = None
    if has_lesion_truth(cohort, subjects):
        truth = cached_patch_truth(cohort, store, subjects, out / "patch_truth.parquet",
                                   preprocessing.spacing_mm, threads=cfg.read_workers)
        probe = patch_probe_tables({n: m.folder for n, m in feats.items()}, truth, store, labels,
                                   cfg.probe_repeats, cfg.seed)
        files["patch_probe"] = save_table(probe.table, out, "patch_probe")
        files["patch_probe_detection"] = save_table(probe.detection, out, "patch_probe_detection")
        notes.append(
            "Patch probe: ridge from frozen patch features (or the patch's LAA-950 / LAA-910) to "
            "the patch's true lesion fraction (voxel truth cut like the stored patches), "
            f"subject-grouped 5-fold CV x {cfg.probe_repeats}; R² of the pooled out-of-fold "
            "predictions, AUC for fraction > 1 %. Rows '<method> + LAA-950 (patch)' probe the "
            "method's features with the patch's LAA-950 beside them (what the encoder adds to "
            "the density score)."
        )
    else:
        notes.append("Patch probe not run: the cohort has no voxel truth (truth/<id>_lesions).")
    clock.mark("patch probe", t0)

    # ---------------------------------------------------------------- powered image readouts
    t0 = time.perf_counter()
    powered = powered_readouts_table(feats, laa_image, labels, subjects, cfg)
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
            table3 = survival_methods_table({**frames, **laa_image_methods(laa_image)}, labels,
                                            cfg, models)
            files["table3"] = save_table(table3, out, "table3_survival")
    except ValueError as err:
        table3 = None
        notes.append(f"Survival (Table 3) not computed: {err}")
    clock.mark("table 3: survival", t0)

    # ---------------------------------------------------------------- Table 7
    table7 = random_locations_table(table2, feats, PRIMARY if PRIMARY in feats else None)
    if table7 is not None:
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
                box_feature_frame(box_data, box_feats[name]), out / "box_features", slug(name),
                schema="eval_box_features",
            )
        clock.mark(f"box features ({len(box_data.locations)} boxes x {len(enc_names)} encoders)", t0)

        t0 = time.perf_counter()
        laa_box = box_laa(box_data)
        table5 = box_detection_table(box_data, box_feats, laa_box, modules, cfg, primary)
        files["table5"] = save_table(table5, out, "table5_box_detection")
        clock.mark("table 5: box readouts", t0)

        t0 = time.perf_counter()
        curve = label_efficiency_table(box_data, box_feats, laa_box, modules, cfg, primary)
        files["label_efficiency"] = save_table(curve, out, "label_efficiency")
        clock.mark("label efficiency", t0)

    # ---------------------------------------------------------------- Fig 4: all subjects
    fractions = None
    if box_feats:
        t0 = time.perf_counter()
        fractions = detected_fraction_table(
            {n: det[n].folder for n in enc_names}, box_data, box_feats, store, subjects, labels,
            laa_image, cfg,
        )
        if probe is not None:
            fractions = fractions.merge(probe.shares, on=ID_COLUMN, how="left")
        files["detected_fraction"] = save_table(fractions, out, "detected_fraction")
        notes.append(
            "Detected emphysema fraction (Fig. 4 analogue) for every subject: the box readout "
            "(cle, pse vs healthy), fitted out-of-subject (subject folds), applied to each stored "
            "landmark patch's features; a patch counts as emphysema when either probability > "
            f"{cfg.prob_threshold}, weighted by its lung fraction"
            + ("; and the patch probe's out-of-subject emphysema predictions, a patch flagged at "
               f"a predicted fraction >= {DETECT_FRACTION:.0%} (columns '… (patch probe)', the "
               "figure's)" if probe is not None else "")
            + f". Dense maps are made only for {len(dense_ids)} subject(s)."
        )
        clock.mark("detected fraction per subject (landmark patches)", t0)

    # ---------------------------------------------------------------- dense subjects
    dense_summary: dict[str, Any] = {"subjects": dense_ids, "stride": cfg.dense_stride}
    if box_feats and dense_ids and boxes_all is not None:
        t0 = time.perf_counter()
        dense_methods = [m for m in (cfg.dense_methods or (primary,)) if m in box_feats]
        dense_summary["methods"] = dense_methods
        (out / "dense").mkdir(parents=True, exist_ok=True)
        heads = ({} if truth is None else
                 dense_heads({n: det[n].folder for n in dense_methods if n in det}, truth,
                             dense_ids))
        maps = dense_maps(dense_methods, modules, box_data, box_feats, scans, manifest, bounds,
                          labels, cfg, heads)
        for piece in maps.slices:  # coronal slices for the Fig. 3 overlays
            np.savez_compressed(out / "dense" / f"{slug(piece.method)}__{piece.subject_id}.npz",
                                **piece.arrays())
        files["dense_overlap"] = save_table(maps.overlap, out, "dense_overlap")
        files["dense_boxes"] = save_table(maps.boxes, out, "dense_boxes")
        rule = box_rule_table(maps.boxes, cfg)
        files["table5_rule"] = save_table(rule, out, "table5_box_rule")
        notes.append(
            "Dense maps: "
            + (f"the patch probe's ridge (features with running statistics -> emphysema "
               f"fraction), fitted on the other subjects' landmark patches; a voxel is flagged "
               f"where its window's predicted fraction is >= {DETECT_FRACTION:.0%} (a DEPARTURE "
               "from the paper's box readout, which flags most of a diseased lung here)"
               if heads else "the paper's box readout fitted on the other subjects' boxes")
            + f". Paper's box rule (>= {cfg.box_min_fraction:.0%} of box voxels flagged) "
            f"applied to dense maps of {len(dense_ids)} held-out subject(s) "
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
        "headline": headline(table2, table3, table5, fractions, enc_names),
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
