"""The whole chain on one cohort: labels -> atlas -> preprocess -> pretrain -> extract ->
evaluate -> report (``drasclr run`` on a lab's scans and labels table; ``drasclr demo`` and
``drasclr bench reproduce`` on a synthetic cohort generated first into ``<run>/cohort``).

Every stage writes into its own folder of the run and skips work that is already done, so a
re-run of the same command resumes where the last one stopped::

    <run>/cohort/        synthetic cohort (drasclr.synth; demo / reproduce only)
    <run>/labels/        the labels table checked into the contract (labels.parquet) and
                         labels_check.json (renamed / ignored headers, unmatched ids)
    <run>/atlas/         atlas from the scan with the lowest LAA-950 among full-field-of-view
                         candidates (atlas_choice.json says which and why); or --atlas DIR
    <run>/store/         patch store + manifest + QC (drasclr.preprocess.run)
    <run>/models/<m>/    pretraining runs, one per method (drasclr.train.run)
    <run>/features/<m>/  image and patch features per method (drasclr.features)
    <run>/evaluation/    tables and results (drasclr.evaluate.run)
    <run>/report/        report.md + figures (drasclr.report)
    <run>/pipeline.yaml  the PipelineConfig; <run>/timings.json seconds per stage
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from drasclr.config import StageConfig, check
from drasclr.fsutil import atomic_write_text, slug
from drasclr.imaging.intensity import INPUT_MAPS
from drasclr.train.recipes import check_recipe, recipe_overrides

__all__ = [
    "METHODS",
    "PipelineConfig",
    "demo_config",
    "pick_atlas_subject",
    "reproduce_config",
    "run_pipeline",
]

#: Method name -> (pretrain overrides or None for an untrained encoder, feature overrides).
METHODS: dict[str, tuple[dict[str, Any] | None, dict[str, Any]]] = {
    "DrasCLR": ({"model": "drasclr", "neighbours": 2}, {}),
    "DrasCLR (no neighbour loss)": ({"model": "drasclr", "neighbours": 0}, {}),
    "plain MoCo": ({"model": "moco", "conditioning": "none", "neighbours": 0,
                    "batch_mode": "mixed"}, {}),
    "random encoder": (None, {}),
    "DrasCLR (random locations)": ({"model": "drasclr", "neighbours": 2},
                                   {"random_locations": True}),
}


#: Stages a run can stop after (``PipelineConfig.stop_after``), in order.
STAGES: tuple[str, ...] = ("labels", "atlas", "preprocess", "pretrain", "extract", "evaluate")


@dataclass(frozen=True)
class PipelineConfig(StageConfig):
    """Settings of a whole run (saved as ``pipeline.yaml`` in the run folder).

    Attributes:
        preset: synthetic cohort preset (``tiny``, ``demo``, ``bench``...); used only when
            ``inputs`` is None.
        n_subjects: cohort size (None: the preset's).
        seed: cohort seed.
        methods: which of :data:`METHODS` to run.
        steps: pretraining optimizer steps per method.
        batch_size: subjects per pretraining batch.
        queue_size: K, keys per landmark queue (small cohorts need small queues).
        lr: pretraining learning rate.
        train_workers: Ray Train workers per pretraining run.
        cpus_per_worker: CPUs per Ray Train worker.
        evaluate: run the evaluation stage.
        dense_subjects: subjects with dense predictions in the evaluation (figures, Dice).
        dense_stride: voxel stride of the dense predictions (interpolated between).
        finetune_epochs: epochs of full fine-tuning on emphysema boxes (0: not run); also adds
            the supervised patch CNN trained from scratch.
        inputs: folder of scans or ``subject_id,input_path`` table (None: a synthetic cohort of
            ``preset`` generated into ``<run>/cohort``).
        labels: the lab's labels table, CSV or Parquet (None with ``inputs``: no evaluation).
        label_columns: ``"Lab header=contract_column"`` for headers not matched by name.
        atlas: an atlas folder to use (None: built from the scan chosen by
            :func:`drasclr.preprocess.atlas_choice.choose_atlas_subject`).
        atlas_candidates: scans considered for the automatic atlas choice.
        stop_after: last stage to run (one of :data:`STAGES`; None: the whole chain). A run
            stopped early writes no report; re-running without it resumes.
        bn_stats: BatchNorm statistics of the feature extraction, for every method alike
            (``landmark``: per landmark, which doubled trained encoders' patch probe in
            docs/results.md round 2; ``running``: the training run's averages). With
            ``landmark``, methods with an encoder are also extracted with running statistics
            (``features/<method>_running``) for the detected fraction, whose box readout is
            fitted on the encoder's running-statistics outputs.
        input_map: the encoders' input map, every method alike, the random encoder included
            (:attr:`drasclr.train.config.PretrainConfig.input_map`).
        drasclr_momentum: key-encoder momentum of the DrasCLR rows (and their ablation).
        moco_momentum: key-encoder momentum of plain MoCo (the demo's is 0.95:
            :func:`demo_config`).
        drasclr_recipe: how DrasCLR and its ablation spend a step
            (:data:`drasclr.train.recipes.DRASCLR_RECIPES`): ``paper`` (two nearest
            neighbours a subject, B anchors) or ``paired`` (the benchmark's: two neighbouring
            landmarks a step, B / 2 subjects each; the demo's, :func:`demo_config`).
    """

    stage: ClassVar[str] = "pipeline"

    preset: str = "demo"
    n_subjects: int | None = None
    seed: int = 0
    methods: tuple[str, ...] = tuple(METHODS)
    steps: int = 60
    batch_size: int = 32
    queue_size: int = 256
    lr: float = 0.03
    train_workers: int = 1
    cpus_per_worker: float = 2.0
    evaluate: bool = True
    dense_subjects: int = 2
    dense_stride: int = 12
    finetune_epochs: int = 0
    inputs: str | None = None
    labels: str | None = None
    label_columns: tuple[str, ...] = ()
    atlas: str | None = None
    atlas_candidates: int = 16
    stop_after: str | None = None
    bn_stats: str = "landmark"
    input_map: str = "parenchyma"
    drasclr_momentum: float = 0.99
    moco_momentum: float = 0.99
    drasclr_recipe: str = "paper"

    def validate(self) -> None:
        """Check the method names and ranges."""
        s = self.stage
        unknown = [m for m in self.methods if m not in METHODS]
        check(not unknown, s, "methods", f"unknown {unknown}; choose from {list(METHODS)}")
        check(self.steps >= 1, s, "steps", "must be >= 1")
        check(self.batch_size >= 2, s, "batch_size", "must be >= 2")
        check(self.queue_size >= 1, s, "queue_size", "must be >= 1")
        check(self.train_workers >= 1, s, "train_workers", "must be >= 1")
        check(self.atlas_candidates >= 1, s, "atlas_candidates", "must be >= 1")
        for f in ("drasclr_momentum", "moco_momentum"):
            check(0 <= getattr(self, f) < 1, s, f, "must be in [0, 1)")
        check_recipe(self.drasclr_recipe, self.batch_size, s)
        check(self.stop_after in (None, *STAGES), s, "stop_after", f"one of {list(STAGES)}")
        check(self.bn_stats in ("running", "landmark"), s, "bn_stats",
              f"must be 'running' or 'landmark', got {self.bn_stats!r}")
        check(self.input_map in INPUT_MAPS, s, "input_map",
              f"must be one of {list(INPUT_MAPS)}, got {self.input_map!r}")
        check(self.inputs is not None or self.labels is None, s, "labels",
              "a labels table goes with inputs (the synthetic cohort brings its own)")


def demo_config(**overrides: Any) -> PipelineConfig:
    """``drasclr demo``: the ``demo`` cohort, short pretraining, every method (about 20 min).

    Measured in the demo's 60-step runs on a demo cohort the report does not use (four seeds
    each, rules written before the runs; docs/results.md rounds 32 and 34): plain MoCo's key
    encoder moves at momentum 0.95 (+0.23 over 0.99, four of four seeds); DrasCLR and its
    ablation train the benchmark's ``paired`` recipe (+0.22 over the paper's form, four of four
    seeds) at momentum 0.95 (+0.07 over 0.99, three of four seeds).
    """
    base = {"preset": "demo", "moco_momentum": 0.95, "drasclr_recipe": "paired",
            "drasclr_momentum": 0.95}
    return PipelineConfig(**{**base, **{k: v for k, v in overrides.items() if v is not None}})


def run_config(inputs: str | Path, labels: str | Path | None, **overrides: Any) -> PipelineConfig:
    """``drasclr run``: a lab's scans and labels table (paths kept absolute, so a re-run from
    another folder resumes)."""
    paths = {"inputs": str(Path(inputs).resolve()),
             "labels": str(Path(labels).resolve()) if labels is not None else None}
    if overrides.get("atlas") is not None:
        overrides["atlas"] = str(Path(overrides["atlas"]).resolve())
    return PipelineConfig(**{**paths, **{k: v for k, v in overrides.items() if v is not None}})


def reproduce_config(**overrides: Any) -> PipelineConfig:
    """``drasclr bench reproduce``: the ``bench`` cohort (200) with a longer pretraining."""
    base = {"preset": "bench", "steps": 600, "batch_size": 64, "queue_size": 1024,
            "dense_subjects": 4, "dense_stride": 8, "finetune_epochs": 2}
    return PipelineConfig(**{**base, **{k: v for k, v in overrides.items() if v is not None}})


def pick_atlas_subject(labels: pd.DataFrame) -> str:
    """The healthiest subject: GOLD 0 if any, then the least true emphysema, then the first id."""
    lab = labels.copy()
    lab["_healthy"] = (lab["gold"] == 0).astype(int) if "gold" in lab else 0
    emph = lab.get("true_emphysema_fraction", 0.0)
    lab["_emph"] = emph
    lab = lab.sort_values(["_healthy", "_emph", "subject_id"], ascending=[False, True, True])
    return str(lab["subject_id"].iloc[0])


@dataclass
class _Clock:
    path: Path
    seconds: dict[str, float] = field(default_factory=dict)

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        print(f"[drasclr] {name} ...", flush=True)
        t0 = time.perf_counter()
        out = fn()
        self.seconds[name] = round(time.perf_counter() - t0, 2)
        atomic_write_text(self.path, json.dumps(self.seconds, indent=1))
        print(f"[drasclr] {name} done in {self.seconds[name]:.1f} s", flush=True)
        return out


def _pretrain_config(cfg: PipelineConfig, overrides: dict[str, Any], name: str) -> Any:
    from drasclr.train.config import PretrainConfig

    base = dict(
        steps=cfg.steps, batch_size=cfg.batch_size, queue_size=cfg.queue_size, lr=cfg.lr,
        workers=cfg.train_workers, cpus_per_worker=cfg.cpus_per_worker,
        checkpoint_every=max(10, cfg.steps // 3), lr_warmup_steps=min(20, cfg.steps // 10),
        run_name=slug(name), seed=cfg.seed, input_map=cfg.input_map,
        momentum=cfg.moco_momentum if overrides.get("model") == "moco" else cfg.drasclr_momentum)
    return PretrainConfig(**{**base, **overrides})


def run_pipeline(
    run_dir: str | Path,
    cfg: PipelineConfig,
    *,
    num_cpus: int | None = None,
    progress: bool = True,
) -> Path | None:
    """Run (or resume) the whole chain into ``run_dir``; returns the report path (None when
    ``cfg.stop_after`` stopped it before the report).

    With ``cfg.inputs`` None (``drasclr demo``) a synthetic cohort is generated into
    ``<run>/cohort`` and is then the chain's input, its ``labels.parquet`` the labels table:
    from there on, the demo and ``drasclr run`` are the same code.

    Args:
        run_dir: the run folder (layout in the module docstring).
        cfg: the run settings; a folder holding a run with other settings is refused.
        num_cpus: CPUs of the embedded Ray instance (default: all).
        progress: progress bars.

    Raises:
        ConfigError: ``run_dir`` holds a run with another config.
        LabelsError: the labels table breaks the contract (file, column, row named).
    """
    from drasclr.raytools import ray_session

    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    cfg.claim(run / "pipeline.yaml")
    clock = _Clock(run / "timings.json")
    with ray_session(num_cpus=num_cpus):
        if cfg.inputs is None:
            from drasclr.synth.cohort import generate_cohort
            from drasclr.synth.config import preset_config

            clock.run("synth", lambda: generate_cohort(
                preset_config(cfg.preset, n_subjects=cfg.n_subjects, seed=cfg.seed),
                run / "cohort", progress=progress))
            inputs, labels = run / "cohort", run / "cohort" / "labels.parquet"
        else:
            inputs = Path(cfg.inputs)
            labels = Path(cfg.labels) if cfg.labels is not None else None
        _chain(run, cfg, inputs, labels, clock, progress)
    if cfg.stop_after is not None:
        print(f"[drasclr] stopped after {cfg.stop_after} (stop_after); {run}", flush=True)
        return None
    from drasclr.report.markdown import write_report

    return clock.run("report", lambda: write_report(run, run / "report"))


def _training_probe(cohort: Path, store: Path, run: Path) -> Path | None:
    """The patch list of the pretraining runs' cheap probe (None without voxel truth)."""
    from drasclr.evaluate.patch_probe import read_patch_truth, write_probe_file
    from drasclr.store.reader import PatchStore

    path = run / "models" / "probe_train.npz"
    if path.is_file():
        return path
    if not (Path(cohort) / "truth").is_dir():
        return None
    patch_store = PatchStore(store)
    ids = patch_store.subject_ids[:64]
    truth = read_patch_truth(cohort, patch_store, ids)
    if truth.empty:
        return None
    return write_probe_file(truth, path, n_subjects=64, n_landmarks=24)


def _chain(run: Path, cfg: PipelineConfig, inputs: Path, labels: Path | None, clock: _Clock,
           progress: bool) -> None:
    """labels -> atlas -> preprocess -> pretrain -> extract -> evaluate, inside a Ray session."""
    from drasclr.preprocess.config import PreprocessConfig
    from drasclr.preprocess.inputs import discover_inputs
    from drasclr.preprocess.run import run_preprocess

    scans = discover_inputs(inputs)
    checked = clock.run("labels", lambda: check_labels(labels, cfg, scans, run / "labels"))
    pp = PreprocessConfig()
    if cfg.stop_after == "labels":
        return
    atlas_dir = clock.run("atlas", lambda: _atlas(cfg, scans, pp, run / "atlas", progress))
    if cfg.stop_after == "atlas":
        return
    store = run / "store"
    summary = clock.run("preprocess", lambda: run_preprocess(
        inputs, atlas_dir, store, pp, labels=checked, progress=progress))
    print(summary.text(), flush=True)
    if cfg.stop_after == "preprocess":
        return

    probe = clock.run("training probe", lambda: _training_probe(inputs, store, run))
    encoders: dict[str, Path] = {}
    features: dict[str, Path] = {}
    for name in cfg.methods:
        train_over = _train_overrides(cfg, name)
        over = train_over if train_over is None or probe is None else {
            **train_over, "probe_every": max(10, cfg.steps // 6), "probe_file": str(probe)}
        encoders[name] = clock.run(f"pretrain: {name}", lambda n=name, o=over:
                                   _encoder(cfg, n, o, store, run))
    if cfg.stop_after == "pretrain":
        return
    enc_for_boxes = {n: e for n, e in encoders.items() if not METHODS[n][1]}
    detection: dict[str, Path] = {}
    for name in cfg.methods:
        over = {**METHODS[name][1], "bn_stats": cfg.bn_stats}
        features[name] = clock.run(f"extract: {name}", lambda n=name, o=over:
                                   _extract(n, o, encoders[n], store, run))
        if cfg.bn_stats != "running" and name in enc_for_boxes:
            detection[name] = clock.run(
                f"extract: {name} (running statistics, for detection)",
                lambda n=name: _extract(n, {"bn_stats": "running"}, encoders[n], store, run,
                                        suffix="_running"))
    if not cfg.evaluate or cfg.stop_after == "extract":
        return
    if checked is None:
        print("[drasclr] evaluate: not run: no labels table (--labels)", flush=True)
        return
    from drasclr.evaluate.config import EvaluateConfig
    from drasclr.evaluate.run import run_evaluation

    ev_cfg = EvaluateConfig(dense_subjects=cfg.dense_subjects,
                            dense_stride=cfg.dense_stride,
                            finetune_epochs=cfg.finetune_epochs,
                            finetune_methods=("DrasCLR",) if "DrasCLR" in cfg.methods
                            else ())
    cohort = inputs if inputs.is_dir() else checked.parent
    clock.run("evaluate", lambda: run_evaluation(
        cohort, store, features, run / "evaluation", ev_cfg, encoders=enc_for_boxes,
        progress=progress, labels=checked, detection_features=detection))


def check_labels(labels: Path | None, cfg: PipelineConfig, scans: pd.DataFrame, out: Path
                 ) -> Path | None:
    """Check the labels table into ``out/labels.parquet`` (+ ``labels_check.json``); print what
    was renamed, ignored and left unmatched. Returns the checked table (None: no labels)."""
    from drasclr.labels import match_subjects, parse_column_map, read_lab_labels
    from drasclr.tables import write_table

    if labels is None:
        return None
    frame, check_ = read_lab_labels(labels, parse_column_map(cfg.label_columns))
    match = match_subjects(frame, scans["subject_id"].astype(str).tolist(), str(labels))
    out.mkdir(parents=True, exist_ok=True)
    path = write_table(frame, out / "labels.parquet", "labels")
    record = {**check_.to_dict(), **match.to_dict()}
    atomic_write_text(out / "labels_check.json", json.dumps(record, indent=1))
    moved = {h: c for h, c in check_.renamed.items() if h != c}
    if moved:
        print("labels: columns " + ", ".join(f"{h!r} -> {c}" for h, c in moved.items()),
              flush=True)
    if check_.ignored:
        print(f"labels: ignored header(s) {check_.ignored} (no contract column)", flush=True)
    print(match.text(), flush=True)
    return path


def _atlas(cfg: PipelineConfig, scans: pd.DataFrame, pp: Any, out: Path, progress: bool) -> Path:
    """The atlas folder: ``cfg.atlas``, or one built from the automatically chosen scan."""
    from drasclr.imaging.atlas import load_atlas, save_atlas
    from drasclr.preprocess.atlas_choice import choose_atlas_subject
    from drasclr.preprocess.subject import atlas_from_ct

    if cfg.atlas is not None:
        atlas = load_atlas(cfg.atlas)
        print(f"atlas: {atlas.atlas_id} from {cfg.atlas} (given)", flush=True)
        return Path(cfg.atlas)
    if (out / "atlas.json").exists():
        return out
    choice = choose_atlas_subject(scans, pp, cfg.atlas_candidates, progress=progress)
    print(f"atlas: {choice.reason}", flush=True)
    save_atlas(atlas_from_ct(choice.input_path, pp, atlas_id=choice.subject_id), out)
    atomic_write_text(out / "atlas_choice.json",
                      json.dumps(choice.to_dict(), indent=1, default=str))
    return out


def _train_overrides(cfg: PipelineConfig, name: str) -> dict[str, Any] | None:
    """A method's pretraining overrides; DrasCLR's model (shared by the methods that train it)
    and its ablation take ``cfg.drasclr_recipe``."""
    return recipe_overrides(cfg.drasclr_recipe, _trained_as(name), METHODS[name][0],
                            cfg.batch_size)


def _trained_as(name: str) -> str:
    """The first method with ``name``'s pretraining (methods that train alike share a model)."""
    over = METHODS[name][0]
    return next(m for m, (o, _) in METHODS.items() if o == over)


def _model_key(name: str) -> str:
    """Folder of a method's encoder: methods with the same pretraining share one model."""
    return slug(_trained_as(name))


def _encoder(cfg: PipelineConfig, name: str, overrides: dict[str, Any] | None, store: Path,
             run: Path) -> Path:
    """Pretrain one method (or export its untrained encoder); returns the export folder."""
    from drasclr.train.export import EXPORT_DIR

    out = run / "models" / _model_key(name)
    if (out / EXPORT_DIR / "encoder_config.json").exists():
        return out / EXPORT_DIR
    if overrides is None:
        from drasclr.train.export import export_initial_encoder

        return export_initial_encoder(_pretrain_config(cfg, {}, name), store, out)
    from drasclr.train.run import pretrain

    pretrain(_pretrain_config(cfg, overrides, name), store, out)
    return out / EXPORT_DIR


def _extract(name: str, overrides: dict[str, Any], encoder: Path, store: Path, run: Path,
             suffix: str = "") -> Path:
    from drasclr.features import FeaturesConfig, extract_features

    out = run / "features" / (slug(name) + suffix)
    extract_features(encoder, store, out, FeaturesConfig(**overrides))
    return out
