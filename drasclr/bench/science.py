"""``drasclr bench science``: does pretraining put disease information into the encoder?

One command, one run folder, every stage resumable::

    <out>/cohort/   synthetic cohort (preset, n, seed)      <out>/atlas/, <out>/store/
    <out>/patch_truth.parquet, <out>/subjects.parquet        truth cut like the stored patches,
                                                             image LAA-950 from our own lung mask
    <out>/models/<method>_s<seed>/   pretraining (equal wall-clock budget per run)
    <out>/features/<method>_s<seed>/ patch + image features
    <out>/metrics/<method>_s<seed>.json   the metrics of one feature set
    <out>/budget.json   the trained runs' budget, decided once (``deadline_minutes``)
    <out>/science.json, <out>/science.md  the table: mean and s.d. over seeds x CV repeats;
        the patch probe per pretraining seed; DrasCLR against each other method
        (margin against the larger spread, image metrics above: :func:`comparisons`)

Methods: DrasCLR (by default its ``paired`` recipe, :data:`DRASCLR_RECIPES`), DrasCLR without
the neighbour loss (the recipe's batches, the loss off), plain MoCo (each pretrained with the
same budget and >= 2 seeds), the random (untrained) encoder (same seeds), and the density
baselines LAA-950 (patch) and LAA-950 (image).
Every method gets the same minutes, not the same steps. By default each run is time-boxed
(``budget_mode`` ``time``): it trains until its budget is spent, a queue pre-fill (plain MoCo's)
included, its cosine learning rate following the elapsed share of the budget
(:attr:`drasclr.train.config.PretrainConfig.time_budget_s`); the steps each run got and the
seconds it took are in ``science.json`` (``training``). ``calibrated`` instead fixes each run's
step count from a calibration of its steady-state step time (passes that alternate the
methods): reproducible step counts, but the calibration's noise becomes unequal time.
The random encoder is evaluated first; its timed extraction and scoring tell how long the
evaluations take on this machine, and where ``budget_minutes`` a run would carry the whole
benchmark past ``deadline_minutes``, every trained run gets the same lower budget
(:func:`plan_budget`).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from drasclr.config import StageConfig, check
from drasclr.evaluate.science import WITH_LAA950_METRIC
from drasclr.fsutil import atomic_write_text, slug
from drasclr.imaging.intensity import INPUT_MAPS
from drasclr.train.recipes import DRASCLR_RECIPES, check_recipe, recipe_overrides

#: Method -> pretraining overrides (None: the untrained encoder of the same seed). DrasCLR's and
#: its ablation's batches come from the recipe (:data:`DRASCLR_RECIPES`, :func:`method_overrides`);
#: plain MoCo draws mixed batches of random (landmark, subject) patches (since session 28,
#: docs/experiments/prereg28.md; before, it trained on DrasCLR's one-landmark batches).
SCIENCE_METHODS: dict[str, dict[str, Any] | None] = {
    "DrasCLR": {"model": "drasclr"},
    "DrasCLR (no neighbour loss)": {"model": "drasclr"},
    "plain MoCo": {"model": "moco", "conditioning": "none", "neighbours": 0,
                   "batch_mode": "mixed"},
    "random encoder": None,
}
#: Metrics that science.json always carries (NaN where a metric does not apply).
SCIENCE_METRICS: tuple[str, ...] = (
    "patch_lesion_r2", "log_fev1pp_r2", "log_fev1_fvc_r2", "gold_acc", "cle_acc",
    "exacerbation_acc", "healthy_detected_fraction", "detected_true_spearman", "dense_dice",
    WITH_LAA950_METRIC,
)
BASELINES: tuple[str, ...] = ("LAA-950 (patch)", "LAA-950 (image)")
#: The five image-level metrics of the issue's "at least 4 of the 5 image metrics" comparison.
IMAGE_METRICS: tuple[str, ...] = (
    "log_fev1pp_r2", "log_fev1_fvc_r2", "gold_acc", "cle_acc", "exacerbation_acc",
)
#: The benchmark's figure, next to ``science.json`` (:func:`drasclr.report.figures.science_figure`).
FIGURE_FILE = "science.png"


@dataclass(frozen=True)
class ScienceConfig(StageConfig):
    """Settings of one science benchmark (saved as ``science_config.yaml``).

    Attributes:
        preset: synthetic cohort preset.
        n_subjects: cohort size.
        seed: cohort seed.
        seeds: pretraining (and random-encoder) seeds.
        budget_minutes: wall-clock pretraining budget per method and seed, the most a run
            gets (default 5: the whole run then takes about 45 min of the issue's 60 on the
            2-core machine it was timed on, and longer runs depend less on the seed,
            docs/results.md rounds 17-18 and 22); ``deadline_minutes`` may lower it.
        deadline_minutes: the whole run's target length (0: none). After the random encoder
            is evaluated (its extraction and scoring timed), every trained run's budget is
            lowered, all alike, where ``budget_minutes`` would carry the run past it
            (:func:`fit_budget_s`); on a machine twice as slow as the one the default was
            timed on, 5 minutes a run would end at about 60 min. The budget chosen is saved
            in ``budget.json`` and ``science.json``.
        batch_size: subjects per pretraining batch.
        lr: base learning rate.
        drasclr_momentum: key-encoder momentum of DrasCLR and its ablation (0.95: above 0.99
            on both seeds of round 31's screen by the rule set before it, and on two more seeds
            after it; the paper's 0.999 was worse for both methods, docs/results.md).
        moco_momentum: key-encoder momentum of plain MoCo (0.99: 0.95 tied and lost in round
            31, 0.999 lost on both seeds).
        drasclr_temperature: tau of DrasCLR's losses and of its ablation's (0.2, MoCo-v2's and
            the paper's; tau 0.5 was not better in round 25, docs/results.md).
        moco_temperature: tau of plain MoCo's loss (0.5: better than 0.2 on both seeds of
            round 25's screen, by the rule set before it, the same rule as DrasCLR's).
        drasclr_nn_positive_weight: w of DrasCLR's (and its ablation's) local soft target, the
            share moved from the own key to the nearest other subject's key at the landmark
            (:attr:`drasclr.train.config.PretrainConfig.nn_positive_weight`; round 29).
        moco_nn_positive_weight: the same for plain MoCo (nearest key in its global queue).
        drasclr_shuffle_block_vox: cube edge of the views' cube shuffle for DrasCLR and its
            ablation, voxels (0: off; :attr:`drasclr.train.config.PretrainConfig.shuffle_block_vox`;
            round 39).
        moco_shuffle_block_vox: the same for plain MoCo.
        queue_size: K (capped by the cohort for per-landmark queues).
        threads: torch threads for pretraining and extraction.
        gpu: pretrain on the CUDA device (one per run; extraction and readouts stay on CPU).
        amp: pretrain in mixed precision (:attr:`drasclr.train.config.PretrainConfig.amp`).
        bn_stats: BatchNorm statistics at feature extraction (``running`` or ``landmark``;
            default ``landmark``: it doubled trained encoders' patch probe in recipe round 2,
            docs/results.md).
        probe_repeats: CV repeats of the patch probe.
        image_repeats: CV repeats of the image readouts.
        dense_subjects: subjects with dense maps (for ``dense_dice``), first pretraining seed only.
        dense_stride: voxel stride of the dense maps.
        probe_every: pretraining steps between training-time probes (0: none).
        input_map: the encoder's input map for every method, the random encoder included
            (:attr:`drasclr.train.config.PretrainConfig.input_map`).
        budget_mode: ``time`` (default): every run trains until its wall-clock budget is spent
            (a time box; equal time by construction); ``calibrated``: each run's step count is
            set from a calibration of its step time (reproducible steps; the calibration's
            noise, about 10 % on this machine, becomes unequal time).
        calibration_steps: steps of one timing run per method and pass; the first quarter is
            warm-up and not timed (:func:`calibrate`; ``calibrated`` budgets only).
        calibration_passes: timing passes over all methods, alternating them (the mean is used).
        neighbour_warmup_share: share of DrasCLR's wall-clock budget trained with the local
            loss only before the neighbour loss joins (DESIGN.md §4 step 8's warm-up, in steps:
            :attr:`drasclr.train.config.PretrainConfig.warmup_steps`); its local-only and full
            steps are calibrated separately, so the budget stays equal (0: no warm-up; > 0
            needs ``budget_mode`` ``calibrated``).
        drasclr_recipe: how DrasCLR spends a step (:data:`DRASCLR_RECIPES`): ``paired``
            (default) or ``paper``.
        translate_vox: the affine's translation range of every trained method's views, voxels
            (:attr:`drasclr.train.config.PretrainConfig.translate_vox`, whose default, 4, the
            demo keeps): 4. Round 35 moved it to 8 (+0.011 over four paired 700-step runs on
            cohort 7); round 36 (cohort 6) lost all four (pooled -0.052), so by its
            pre-registered rule it is back at 4 (docs/experiments/prereg24.md).
    """

    stage: ClassVar[str] = "science"

    preset: str = "bench"
    n_subjects: int = 200
    seed: int = 0
    seeds: tuple[int, ...] = (0, 1)
    budget_minutes: float = 5.0
    deadline_minutes: float = 55.0
    batch_size: int = 32
    lr: float = 0.03
    drasclr_momentum: float = 0.95
    moco_momentum: float = 0.99
    drasclr_temperature: float = 0.2
    moco_temperature: float = 0.5
    drasclr_nn_positive_weight: float = 0.0
    moco_nn_positive_weight: float = 0.0
    drasclr_shuffle_block_vox: int = 0
    moco_shuffle_block_vox: int = 0
    queue_size: int = 4096
    threads: int = 2
    gpu: bool = False
    amp: bool = False
    bn_stats: str = "landmark"
    probe_repeats: int = 2
    image_repeats: int = 5
    dense_subjects: int = 2
    dense_stride: int = 12
    probe_every: int = 50
    input_map: str = "parenchyma"
    budget_mode: str = "time"
    calibration_steps: int = 32
    calibration_passes: int = 2
    neighbour_warmup_share: float = 0.0
    drasclr_recipe: str = "paired"
    translate_vox: float = 4.0

    def validate(self) -> None:
        """Check ranges."""
        s = self.stage
        check(self.n_subjects >= 20, s, "n_subjects", "needs at least 20 subjects")
        check(len(self.seeds) >= 1, s, "seeds", "at least one seed")
        check(self.budget_minutes > 0, s, "budget_minutes", "must be > 0")
        check(self.drasclr_temperature > 0, s, "drasclr_temperature", "must be > 0")
        check(self.moco_temperature > 0, s, "moco_temperature", "must be > 0")
        for f in ("drasclr_momentum", "moco_momentum", "drasclr_nn_positive_weight",
                  "moco_nn_positive_weight"):
            check(0 <= getattr(self, f) < 1, s, f, "must be in [0, 1)")
        for f in ("drasclr_shuffle_block_vox", "moco_shuffle_block_vox"):
            check(getattr(self, f) >= 0, s, f, "must be >= 0 (0: off)")
        check(self.deadline_minutes >= 0, s, "deadline_minutes", "must be >= 0 (0: none)")
        check(self.budget_mode in BUDGET_MODES, s, "budget_mode", f"one of {list(BUDGET_MODES)}")
        check(self.budget_mode == "calibrated" or self.neighbour_warmup_share == 0, s,
              "neighbour_warmup_share", "a local-only share needs budget_mode 'calibrated' "
              "(its steps come from the step-time calibration)")
        check(self.calibration_steps >= 8, s, "calibration_steps", "must be >= 8")
        check(self.calibration_passes >= 1, s, "calibration_passes", "must be >= 1")
        check(0 <= self.neighbour_warmup_share < 1, s, "neighbour_warmup_share",
              "must be in [0, 1)")
        check(self.bn_stats in ("running", "landmark"), s, "bn_stats", "running or landmark")
        check(self.dense_subjects >= 0, s, "dense_subjects", "must be >= 0")
        check(self.input_map in INPUT_MAPS, s, "input_map", f"one of {list(INPUT_MAPS)}")
        check(self.translate_vox >= 0, s, "translate_vox", "must be >= 0")
        check_recipe(self.drasclr_recipe, self.batch_size, s)


def _silent(line: str) -> None:
    """The default ``say``: progress lines go nowhere (the command prints them)."""


class _Clock:
    def __init__(self, path: Path, say: Any = _silent) -> None:
        self.path = path
        self.say = say
        self.seconds: dict[str, float] = (json.loads(path.read_text()) if path.exists() else {})

    def run(self, name: str, fn: Any) -> Any:
        self.say(f"[science] {name} ...")
        t0 = time.perf_counter()
        out = fn()
        self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - t0, 1)
        atomic_write_text(self.path, json.dumps(self.seconds, indent=1))
        self.say(f"[science] {name}: {time.perf_counter() - t0:.1f} s")
        return out


# ------------------------------------------------------------------------------------- stages
def prepare(out: Path, cfg: ScienceConfig, progress: bool) -> tuple[Path, Path]:
    """Cohort, atlas and store (each skipped when done). Returns ``(cohort, store)``."""
    from drasclr.imaging.atlas import save_atlas
    from drasclr.labels import read_labels
    from drasclr.pipeline import pick_atlas_subject
    from drasclr.preprocess.config import PreprocessConfig
    from drasclr.preprocess.run import run_preprocess
    from drasclr.preprocess.subject import atlas_from_ct
    from drasclr.synth.cohort import generate_cohort
    from drasclr.synth.config import preset_config

    cohort, atlas_dir, store = out / "cohort", out / "atlas", out / "store"
    generate_cohort(preset_config(cfg.preset, n_subjects=cfg.n_subjects, seed=cfg.seed), cohort,
                    progress=progress)
    if not (atlas_dir / "atlas.json").exists():
        labels = read_labels(cohort / "labels.parquet", cohort / "truth.parquet")
        sid = pick_atlas_subject(labels)
        save_atlas(atlas_from_ct(cohort / "images" / f"{sid}.nii.gz", PreprocessConfig()),
                   atlas_dir)
    if not _store_complete(cohort, store):
        run_preprocess(cohort, atlas_dir, store, PreprocessConfig(), progress=progress)
    return cohort, store


def _store_complete(cohort: Path, store: Path) -> bool:
    """True when the store already holds every subject of the cohort (a finished stage)."""
    from drasclr.store.reader import PatchStore
    from drasclr.tables import read_frame

    if not (store / "manifest.parquet").is_file():
        return False
    ids = set(read_frame(cohort / "labels.parquet", "labels")["subject_id"].astype(str))
    man = PatchStore(store).manifest
    done = set(man.loc[man["status"].isin(["ok", "failed"]), "subject_id"].astype(str))
    return ids <= done


def subject_table(cohort: Path, store_path: Path, progress: bool) -> pd.DataFrame:
    """Per subject: image LAA-950 inside the pipeline's own (segmented) lung mask.

    Read from the store manifest's ``laa950`` column (preprocessing's segmentation of the 1 mm
    clipped CT, the value ``drasclr evaluate`` reports as "LAA-950 (image)"); only subjects
    whose manifest row lacks it (stores written before the column existed) are re-read and
    segmented from their input scan.
    """
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    from drasclr.evaluate.boxes import read_scan
    from drasclr.preprocess.config import saved_config
    from drasclr.store.reader import PatchStore

    store = PatchStore(store_path)
    pp = saved_config(store_path)
    man = store.manifest.set_index("subject_id")
    subjects = list(store.subject_ids)
    known = (man["laa950"] if "laa950" in man.columns
             else pd.Series(np.nan, index=man.index)).astype(np.float64).reindex(subjects)
    missing = known.index[~np.isfinite(known.to_numpy())].tolist()

    def one(sid: str) -> float:
        return float(read_scan(man.loc[sid, "input_path"], sid, None, spacing_mm=pp.spacing_mm,
                               segment=pp.segment)[1])

    with ThreadPoolExecutor(2) as pool:
        fresh = dict(zip(missing, tqdm(pool.map(one, missing), total=len(missing),
                                       desc="image LAA-950", disable=not progress or not missing)))
    known.update(pd.Series(fresh, dtype=np.float64))
    return pd.DataFrame({"subject_id": subjects, "laa950_image": known.to_numpy()})


def step_seconds(config: Any, store: Path, scratch: Path, steps: int) -> tuple[float, float]:
    """Steady-state seconds per training step of ``config``, and its queue pre-fill's seconds,
    timed as a real run trains.

    Runs ``steps`` steps logging every ``steps // 4`` (so the host synchronisations of a logging
    step are in the timing as in a real run) and times from the first log to the last: the
    first quarter (model build, loader start, allocator warm-up) is left out. A run that
    pre-fills its queues (plain MoCo) does so as it would in training; that one-off cost is
    returned apart (0 for a run without a pre-fill), so the budget can pay for it.

    Returns:
        ``(seconds per step, pre-fill seconds)``.
    """
    from drasclr.train.loop import read_metrics
    from drasclr.train.run import train_single_process

    warm = steps // 4
    probe_cfg = config.replace(steps=steps, log_every=warm, probe_every=0,
                               checkpoint_every=10**6)
    shutil.rmtree(scratch, ignore_errors=True)
    train_single_process(probe_cfg, store, scratch, overwrite=True)
    metrics = read_metrics(scratch)
    shutil.rmtree(scratch, ignore_errors=True)
    times = {m["step"]: m["time"] for m in metrics if m.get("event") == "train"}
    prefill = next(float(m.get("prefill_seconds", 0.0)) for m in metrics
                   if m.get("event") == "start")
    last = max(times)
    return (times[last] - times[warm]) / (last - warm), prefill


def calibrate(
    configs: dict[str, Any], store: Path, scratch: Path, steps: int, passes: int,
    say: Any = _silent,
) -> dict[str, dict[str, Any]]:
    """Seconds per step (and per queue pre-fill) of every method, timed in ``passes``
    alternating passes.

    Pass p times every method once (A, B, C, A, B, C, ...), so a change in the machine's load
    during calibration reaches every method alike; a method's step time is the mean over passes.

    Returns:
        method -> ``{"seconds_per_step": mean, "passes": [seconds per step of each pass],
        "prefill_seconds": mean pre-fill time (0 without a pre-fill)}``.
    """
    timed: dict[str, list[tuple[float, float]]] = {m: [] for m in configs}
    for p in range(passes):
        for m, cfg in configs.items():
            timed[m].append(step_seconds(cfg, store, scratch, steps))
            per_step, fill = timed[m][-1]
            say(f"[science] calibration pass {p + 1}/{passes}: {m} {per_step:.3f} s/step"
                + (f", queue pre-fill {fill:.1f} s" if fill > 0 else ""))
    return {m: {"seconds_per_step": float(np.mean([t for t, _ in rows])),
                "passes": [round(t, 4) for t, _ in rows],
                "prefill_seconds": round(float(np.mean([f for _, f in rows])), 3)}
            for m, rows in timed.items()}


def pretrain_method(
    out: Path, cfg: ScienceConfig, name: str, seed: int, store: Path, probe_file: Path,
    say: Any = _silent, budget_s: float | None = None,
) -> Path:
    """Pretrain (or export untrained) one method with one seed; returns the export folder.

    ``say`` receives progress lines (the step-time calibration, :func:`budget_steps`, and
    the steps and seconds of each finished run, :func:`training_record`); ``budget_s`` is the
    run's wall-clock budget (default ``cfg.budget_minutes``; :func:`plan_budget`).
    """
    from drasclr.train.config import PretrainConfig
    from drasclr.train.export import EXPORT_DIR, export_initial_encoder
    from drasclr.train.run import train_single_process

    run = out / "models" / f"{slug(name)}_s{seed}"
    if (run / EXPORT_DIR / "encoder_config.json").exists():
        return run / EXPORT_DIR
    base = method_config(cfg, name, seed, probe_file)
    if base is None:
        return export_initial_encoder(
            PretrainConfig(seed=seed, run_name=slug(name), input_map=cfg.input_map), store, run)
    if cfg.budget_mode == "time":
        run_cfg = base.replace(steps=TIME_BOX_STEP_CAP, time_budget_s=_budget(cfg, budget_s))
    else:
        steps, warmup = budget_steps(out, cfg, name, seed, store, probe_file, say, budget_s)
        run_cfg = base.replace(steps=steps, warmup_steps=warmup)
    train_single_process(run_cfg, store, run, overwrite=True)
    rec = training_record(run)
    say(f"[science] {name} s{seed}: {rec['steps']} steps in {rec['seconds']:.1f} s"
        + (f" (queue pre-fill {rec['prefill_seconds']:.1f} s)" if rec["prefill_seconds"] else ""))
    return run / EXPORT_DIR


def training_record(run: Path) -> dict[str, Any]:
    """Steps, wall-clock seconds (pre-fill included) and pre-fill seconds of a finished run,
    from its ``metrics.jsonl`` (empty for the untrained encoder)."""
    from drasclr.train.loop import read_metrics

    if not (run / "metrics.jsonl").is_file():
        return {}
    rows = read_metrics(run)
    end = [r for r in rows if r.get("event") == "end"][-1]
    fill = sum(float(r.get("prefill_seconds", 0.0)) for r in rows if r.get("event") == "start")
    return {"steps": int(end["step"]), "seconds": round(float(end["elapsed_s"]), 2),
            "prefill_seconds": round(fill, 2)}


def probe_curve(run: Path) -> pd.DataFrame:
    """The training-time patch probe of a run (``step``, ``probe_r2``) from its
    ``metrics.jsonl`` (empty for the untrained encoder)."""
    from drasclr.report.markdown import read_metrics

    log = run / "metrics.jsonl"
    frame = read_metrics(log, event="probe") if log.is_file() else pd.DataFrame()
    if "probe_r2" not in frame:
        return pd.DataFrame(columns=["step", "probe_r2"])
    return frame[["step", "probe_r2"]].reset_index(drop=True)


#: Pretraining settings each method family has its own of (``drasclr_<f>`` for DrasCLR and its
#: ablation, ``moco_<f>`` for plain MoCo, in :class:`ScienceConfig`).
PER_METHOD = ("momentum", "temperature", "nn_positive_weight", "shuffle_block_vox")


def method_config(cfg: ScienceConfig, name: str, seed: int, probe_file: Path) -> Any:
    """The PretrainConfig of one method and seed (None for the untrained encoder)."""
    from drasclr.train.config import PretrainConfig

    over = method_overrides(cfg, name)
    if over is None:
        return None
    base = dict(
        batch_size=cfg.batch_size, lr=cfg.lr, queue_size=cfg.queue_size,
        lr_warmup_steps=20, log_every=10, checkpoint_every=10**6, seed=seed,
        threads_per_worker=cfg.threads, probe_every=cfg.probe_every,
        probe_file=str(probe_file) if cfg.probe_every else "", run_name=slug(name),
        input_map=cfg.input_map, translate_vox=cfg.translate_vox, use_gpu=cfg.gpu, amp=cfg.amp,
        **{f: getattr(cfg, ("moco_" if over["model"] == "moco" else "drasclr_") + f)
           for f in PER_METHOD})
    return PretrainConfig(**{**base, **over})


def method_overrides(cfg: ScienceConfig, name: str) -> dict[str, Any] | None:
    """One method's pretraining overrides, DrasCLR's and its ablation's in
    ``cfg.drasclr_recipe`` form (:func:`drasclr.train.recipes.recipe_overrides`)."""
    return recipe_overrides(cfg.drasclr_recipe, name, SCIENCE_METHODS[name], cfg.batch_size)


#: How a run's budget is held (``ScienceConfig.budget_mode``).
BUDGET_MODES: tuple[str, ...] = ("time", "calibrated")
#: Step cap of a time-boxed run (the budget ends it long before).
TIME_BOX_STEP_CAP = 10**7

#: Seconds a trained run takes beyond its budget (model build, export; 12-24 s measured on
#: the 2-core machine, docs/results.md), allowed for by :func:`fit_budget_s`.
RUN_OVERHEAD_S = 30.0
#: The least budget :func:`fit_budget_s` gives a run, however late the run is.
MIN_BUDGET_S = 60.0


def _budget(cfg: ScienceConfig, budget_s: float | None) -> float:
    return cfg.budget_minutes * 60 if budget_s is None else float(budget_s)


def fit_budget_s(
    cap_s: float, deadline_s: float, spent_s: float, eval_s: float, methods: int, seeds: int,
    overhead_s: float = RUN_OVERHEAD_S, floor_s: float = MIN_BUDGET_S,
) -> float:
    """The per-run pretraining budget that ends the benchmark by ``deadline_s``.

    Args:
        cap_s: the configured budget (the most a run gets).
        deadline_s: the whole run's target length (<= 0: no deadline, ``cap_s``).
        spent_s: seconds the run has worked so far.
        eval_s: seconds one method's evaluation takes over all seeds (extraction + scoring,
            measured on the random encoder).
        methods: trained methods still to run; ``seeds``: pretraining seeds of each.
        overhead_s: seconds a run takes beyond its budget.
        floor_s: the least budget returned.

    Returns:
        ``min(cap_s, fit)`` with ``fit`` the equal share of what is left after the
        evaluations and overheads, and at least ``floor_s``.
    """
    runs = methods * seeds
    if deadline_s <= 0 or runs == 0:
        return float(cap_s)
    fit = (deadline_s - spent_s - methods * eval_s) / runs - overhead_s
    return float(min(cap_s, max(floor_s, fit)))


def projected_end_s(spent_s: float, eval_s: float, methods: int, seeds: int, budget_s: float,
                    overhead_s: float = RUN_OVERHEAD_S) -> float:
    """When the benchmark ends if every trained run gets ``budget_s`` (the sum
    :func:`fit_budget_s` solves for its deadline)."""
    return spent_s + methods * (seeds * (budget_s + overhead_s) + eval_s)


def plan_budget(out: Path, cfg: ScienceConfig, seconds: dict[str, float],
                say: Any = _silent) -> dict[str, float]:
    """Decide (once; ``budget.json``) every trained run's budget from the stage times so far.

    ``seconds`` are the run's stage timings (:class:`_Clock`); the random encoder's
    extractions and scorings must be among them. Returns the record saved: ``budget_s``,
    ``cap_s``, ``deadline_s``, ``spent_s``, ``eval_s``.
    """
    path = out / "budget.json"
    if path.exists():
        return dict(json.loads(path.read_text()))
    untrained = [m for m, over in SCIENCE_METHODS.items() if over is None]
    eval_s = float(np.mean([sum(seconds.get(f"{stage} {m} s{s}", 0.0) for s in cfg.seeds
                                for stage in ("extract", "score")) for m in untrained]))
    spent = float(sum(seconds.values()))
    methods = len(SCIENCE_METHODS) - len(untrained)
    cap, deadline = cfg.budget_minutes * 60, cfg.deadline_minutes * 60
    budget = fit_budget_s(cap, deadline, spent, eval_s, methods, len(cfg.seeds))
    rec = {"budget_s": round(budget, 1), "cap_s": cap, "deadline_s": deadline,
           "spent_s": round(spent, 1), "eval_s": round(eval_s, 1)}
    ends = projected_end_s(spent, eval_s, methods, len(cfg.seeds), budget)
    say(f"[science] budget per pretraining run: {budget / 60:.2f} min (cap "
        f"{cap / 60:.2f}; {spent / 60:.1f} min spent, evaluation {eval_s:.0f} s a method; "
        f"the run should end near {ends / 60:.0f} min"
        + (f", deadline {deadline / 60:.0f} min)" if deadline > 0 else ")"))
    if deadline > 0 and budget <= MIN_BUDGET_S and ends > deadline + 1.0:  # not a rounding
        say(f"[science] warning: this machine cannot end the run by {deadline / 60:.0f} min "
            f"even with the least budget ({MIN_BUDGET_S:.0f} s a run)")
    atomic_write_text(path, json.dumps(rec, indent=1))
    return rec


#: Calibration-table suffix of a neighbour method's local-only (warm-up) steps.
LOCAL_ONLY = " [local-only steps]"


def split_budget(budget_s: float, full_s: float, local_s: float, share: float) -> tuple[int, int]:
    """``(steps, warm-up steps)`` filling ``budget_s``: ``share`` of it with local-only steps of
    ``local_s`` seconds, the rest with full steps of ``full_s`` seconds (at least 10 steps)."""
    warm = int(share * budget_s / max(local_s, 1e-3)) if share > 0 else 0
    full = int((1 - share) * budget_s / max(full_s, 1e-3))
    return max(10, warm + full), warm


def budget_steps(
    out: Path, cfg: ScienceConfig, name: str, seed: int, store: Path, probe_file: Path,
    say: Any = _silent, budget_s: float | None = None,
) -> tuple[int, int]:
    """Steps (and neighbour warm-up steps) of one method within the budget, from a calibration
    of its step time.

    Every trained method is calibrated before any training, in alternating passes (cached in
    ``calibration.json``), so all methods are timed under the same machine conditions; with
    ``neighbour_warmup_share`` a neighbour method's local-only steps are timed as one more
    entry. ``say`` receives one progress line per timing run and one per method's step count.
    """
    path = out / "calibration.json"
    table = json.loads(path.read_text()) if path.exists() else {}
    if name not in table:
        trained: dict[str, Any] = {}
        for m in SCIENCE_METHODS:
            trained_m = method_config(cfg, m, cfg.seeds[0], probe_file)
            if trained_m is None:
                continue
            trained[m] = trained_m
            if trained_m.neighbours and trained_m.neighbour_weight and cfg.neighbour_warmup_share:
                trained[m + LOCAL_ONLY] = trained[m].replace(warmup_steps=10**9)
        table = calibrate(trained, store, out / "scratch", cfg.calibration_steps,
                          cfg.calibration_passes, say)
        for m in trained:
            if m.endswith(LOCAL_ONLY):
                continue
            row = table[m]
            local = table.get(m + LOCAL_ONLY, row)["seconds_per_step"]
            share = cfg.neighbour_warmup_share if m + LOCAL_ONLY in table else 0.0
            fill = row["prefill_seconds"]
            row["steps"], row["warmup_steps"] = split_budget(
                max(0.0, _budget(cfg, budget_s) - fill), row["seconds_per_step"], local, share)
            say(f"[science] {m}: {row['seconds_per_step']:.3f} s/step -> {row['steps']} steps"
                + (f" after a {fill:.1f} s queue pre-fill" if fill > 0 else "")
                + (f" ({row['warmup_steps']} local-only at {local:.3f} s/step)"
                   if row["warmup_steps"] else ""))
        atomic_write_text(path, json.dumps(table, indent=1))
    return int(table[name]["steps"]), int(table[name].get("warmup_steps", 0))


def extract(out: Path, cfg: ScienceConfig, name: str, seed: int, encoder: Path, store: Path,
            bn_stats: str | None = None) -> Path:
    """Patch features of every stored subject (skipped when done).

    ``bn_stats`` overrides ``cfg.bn_stats``; features with other statistics than the
    benchmark's go to a folder suffixed with them (``<method>_s<seed>_running``).
    """
    from drasclr.features import FeaturesConfig, extract_features

    stats = bn_stats or cfg.bn_stats
    suffix = "" if stats == cfg.bn_stats else f"_{stats}"
    folder = out / "features" / f"{slug(name)}_s{seed}{suffix}"
    extract_features(encoder, store, folder,
                     FeaturesConfig(bn_stats=stats, batch_size=256))  # type: ignore[arg-type]
    return folder


# ------------------------------------------------------------------------------------ metrics
def _metrics_of_features(
    patch: np.ndarray, subject_ids: list[str], truth: pd.DataFrame, labels: pd.DataFrame,
    store: Any, cfg: ScienceConfig, seed: int, laa: np.ndarray,
) -> tuple[dict[str, list[float]], np.ndarray]:
    from drasclr.evaluate.patch_probe import features_for_truth
    from drasclr.evaluate.science import (
        detection_metrics,
        image_metrics,
        patch_metrics,
        standardized_mean,
        survival_metric,
        with_density_r2,
    )

    rows = features_for_truth(patch, subject_ids, truth)
    metrics, oof = patch_metrics(rows, truth, cfg.probe_repeats, seed)
    metrics.update(with_density_r2(rows, laa, truth, cfg.probe_repeats, seed))
    lab = labels.set_index("subject_id").loc[subject_ids].reset_index()
    metrics.update(image_metrics(patch, None, lab, cfg.image_repeats, seed))
    metrics.update(survival_metric(standardized_mean(patch), lab, seed))
    true = labels.set_index("subject_id")["true_emphysema_fraction"].to_dict()
    det = detection_metrics(oof, truth, store.lung_fraction, true)
    metrics.update({k: [v] for k, v in det.items()})
    return metrics, oof


def score_method(
    out: Path, cfg: ScienceConfig, name: str, seed: int, features: Path, truth: pd.DataFrame,
    labels: pd.DataFrame, store: Any, cohort: Path, laa: np.ndarray,
) -> dict[str, list[float]]:
    """Metrics of one feature folder (cached in ``metrics/<method>_s<seed>.json``); ``laa``: each
    truth row's LAA-950 (patch), for ``patch_lesion_r2_with_laa950``."""
    from drasclr.features import read_patch_features

    path = out / "metrics" / f"{slug(name)}_s{seed}.json"
    if path.exists():
        return json.loads(path.read_text())
    pf = read_patch_features(features)
    metrics, _ = _metrics_of_features(pf.features.astype(np.float64), list(pf.subject_ids),
                                      truth, labels, store, cfg, seed, laa)
    if seed == cfg.seeds[0] and cfg.dense_subjects:
        out = features.parent.parent  # <out>/features/<method>_s<seed>
        dense_pf = pf
        if cfg.bn_stats != "running":
            # dense maps encode windows anywhere in the lung, where no per-landmark statistics
            # exist: their probe is fitted on features with the encoder's running statistics too
            from drasclr.train.export import EXPORT_DIR

            encoder = out / "models" / f"{slug(name)}_s{seed}" / EXPORT_DIR
            dense_pf = read_patch_features(extract(out, cfg, name, seed, encoder, out / "store",
                                                   bn_stats="running"))
        metrics["dense_dice"] = [dense_dice(out, cfg, name, seed, dense_pf, truth, labels, store,
                                            cohort)]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(metrics))
    return metrics


def dense_subject_ids(labels: pd.DataFrame, k: int) -> list[str]:
    """The ``k`` subjects with the most true emphysema (Dice needs lesions to overlap)."""
    lab = labels.sort_values(["true_emphysema_fraction", "subject_id"], ascending=[False, True])
    return lab["subject_id"].astype(str).head(k).tolist()


def dense_dice(
    out: Path, cfg: ScienceConfig, name: str, seed: int, pf: Any, truth: pd.DataFrame,
    labels: pd.DataFrame, store: Any, cohort: Path,
) -> float:
    """Mean Dice of dense emphysema maps vs voxel truth on the dense subjects.

    The map: a ridge probe (patch features -> emphysema fraction) fitted on the *other* subjects'
    patches, applied at every stride-th lung voxel (trilinear in between); a voxel is flagged
    where the predicted fraction is at least ``DETECT_FRACTION``.
    """
    from drasclr.evaluate.boxes import read_scan
    from drasclr.evaluate.detection import EMPHYSEMA_CODES
    from drasclr.evaluate.patch_probe import emphysema_head, features_for_truth, probed
    from drasclr.evaluate.science import DETECT_FRACTION
    from drasclr.features import dense_features, store_bounds
    from drasclr.imaging.overlap import dice
    from drasclr.preprocess.config import saved_config
    from drasclr.train.export import load_encoder

    dense_ids = dense_subject_ids(labels, cfg.dense_subjects)
    rows = features_for_truth(pf.features.astype(np.float64), list(pf.subject_ids), truth)
    ok = probed(truth) & np.isfinite(rows).all(axis=1)
    train = ok & ~truth["subject_id"].isin(dense_ids).to_numpy()
    head = emphysema_head(rows[train], truth["emphysema"].to_numpy(np.float64)[train])
    enc_dir = out / "models" / f"{slug(name)}_s{seed}"
    encoder, _ = load_encoder(enc_dir)
    man = store.manifest.set_index("subject_id")
    bounds = store_bounds(store)
    pp = saved_config(store.path)
    scores = []
    for sid in dense_ids:
        scan, _ = read_scan(man.loc[sid, "input_path"], sid, cohort, spacing_mm=pp.spacing_mm,
                            with_lesions=True, segment=pp.segment)
        d = dense_features(encoder, scan.hu, scan.geometry, man.loc[sid, "inverse_transform"],
                           bounds, mask=scan.lungs, stride=cfg.dense_stride, head=head,
                           device="cpu")
        pred = d.to_volume(fill=0.0)[0] >= DETECT_FRACTION
        truth_mask = np.isin(scan.lesions, EMPHYSEMA_CODES) & scan.lungs
        scores.append(dice(pred & scan.lungs, truth_mask))
    return float(np.mean(scores))


def baseline_metrics(
    truth: pd.DataFrame, labels: pd.DataFrame, subjects: pd.DataFrame, store: Any,
    cfg: ScienceConfig, laa: np.ndarray,
) -> dict[str, dict[str, list[float]]]:
    """LAA-950 (patch) (``laa``, per truth row) through the same probes and readouts (its
    ``patch_lesion_r2_with_laa950`` is LAA-950 beside itself: its own R²); LAA-950 (image) as
    one feature."""
    from drasclr.evaluate.science import image_metrics, survival_metric

    S, L = store.num_subjects, store.num_landmarks
    grid = np.full((S, L, 1), np.nan)
    pos = {s: k for k, s in enumerate(store.subject_ids)}
    grid[truth["subject_id"].map(pos).to_numpy(), truth["landmark"].to_numpy(), 0] = laa
    grid[~np.broadcast_to(truth.pivot(index="subject_id", columns="landmark", values="valid")
                          .reindex(store.subject_ids).to_numpy(bool)[..., None], grid.shape)] = np.nan
    patch, _ = _metrics_of_features(grid, store.subject_ids, truth, labels, store, cfg, 0, laa)
    lab = labels.set_index("subject_id").loc[store.subject_ids].reset_index()
    img = subjects.set_index("subject_id").loc[store.subject_ids, ["laa950_image"]].to_numpy()
    image = image_metrics(None, img, lab, cfg.image_repeats, 0)
    image.update(survival_metric(img, lab, 0))
    true = labels.set_index("subject_id").loc[store.subject_ids, "true_emphysema_fraction"]
    from scipy.stats import spearmanr

    healthy = img[:, 0][true.to_numpy() < 0.001]
    image["detected_true_spearman"] = [float(spearmanr(img[:, 0], true.to_numpy()).statistic)]
    image["healthy_detected_fraction"] = [float(healthy.mean()) if len(healthy) else math.nan]
    return {"LAA-950 (patch)": patch, "LAA-950 (image)": image}


# ------------------------------------------------------------------------------------- table
def summarise(results: dict[str, list[dict[str, list[float]]]]) -> list[dict[str, Any]]:
    """Rows ``{"method", "metric", "mean", "sd", "n"}``: values pooled over seeds x repeats."""
    rows = []
    for method, runs in results.items():
        names = list(dict.fromkeys([*SCIENCE_METRICS, *(k for r in runs for k in r)]))
        for metric in names:
            vals = np.asarray([v for r in runs for v in r.get(metric, [])], dtype=np.float64)
            vals = vals[np.isfinite(vals)]
            rows.append({"method": method, "metric": metric,
                         "mean": float(vals.mean()) if vals.size else math.nan,
                         "sd": float(vals.std(ddof=1)) if vals.size > 1 else
                         (0.0 if vals.size else math.nan),
                         "n": int(vals.size)})
    return rows


def markdown_table(rows: list[dict[str, Any]], metrics: tuple[str, ...] = SCIENCE_METRICS) -> str:
    """Methods x metrics as ``mean ± sd``."""
    frame = pd.DataFrame(rows)
    methods = list(dict.fromkeys(frame["method"]))
    head = "| method | " + " | ".join(metrics) + " |\n|---|" + "---|" * len(metrics) + "\n"
    lines = []
    for m in methods:
        cells = []
        for k in metrics:
            r = frame[(frame["method"] == m) & (frame["metric"] == k)]
            if r.empty or not np.isfinite(r["mean"].iloc[0]):
                cells.append("n/a")
            else:
                cells.append(f"{r['mean'].iloc[0]:.3f} ± {r['sd'].iloc[0]:.3f}")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return head + "\n".join(lines) + "\n"


def training_table(training: dict[str, dict[str, Any]]) -> str:
    """Markdown lines: the steps and seconds each pretraining run got."""
    lines = [f"| {run} | {r['steps']} | {r['seconds']:.1f} | {r['prefill_seconds']:.1f} |"
             for run, r in training.items() if r]
    return ("\n| pretraining run | steps | seconds | of which queue pre-fill |\n|---|---|---|---|\n"
            + "\n".join(lines) + "\n") if lines else ""


def per_seed(results: dict[str, list[dict[str, list[float]]]],
             metric: str = "patch_lesion_r2") -> dict[str, list[float]]:
    """Method -> one value per pretraining seed (the mean over that seed's CV repeats)."""
    out: dict[str, list[float]] = {}
    for method, runs in results.items():
        vals = [np.asarray(r.get(metric, []), dtype=np.float64) for r in runs]
        out[method] = [float(v[np.isfinite(v)].mean()) if np.isfinite(v).any() else math.nan
                       for v in vals]
    return out


def comparisons(rows: list[dict[str, Any]], method: str = "DrasCLR",
                others: tuple[str, ...] = ("random encoder", "plain MoCo",
                                           "DrasCLR (no neighbour loss)")) -> list[dict[str, Any]]:
    """``method`` against each of ``others``, read as the issue's bar reads it.

    Returns:
        One dict per other method: ``patch_margin`` (mean difference of ``patch_lesion_r2``),
        ``larger_sd`` (the larger of the two spreads), ``patch_clears`` (margin > larger_sd),
        ``image_above`` / ``image_below`` (the :data:`IMAGE_METRICS` whose mean is above /
        not above the other's; a metric missing on either side is in neither).
    """
    stat = {(r["method"], r["metric"]): (r["mean"], r["sd"]) for r in rows}
    nan = (math.nan, math.nan)
    out = []
    for other in others:
        (m1, s1), (m2, s2) = (stat.get((method, "patch_lesion_r2"), nan),
                              stat.get((other, "patch_lesion_r2"), nan))
        pairs = {k: (stat.get((method, k), nan)[0], stat.get((other, k), nan)[0])
                 for k in IMAGE_METRICS}
        both = {k: v for k, v in pairs.items() if np.isfinite(v).all()}
        out.append({"method": method, "other": other, "patch_margin": m1 - m2,
                    "larger_sd": max(s1, s2), "patch_clears": bool(m1 - m2 > max(s1, s2)),
                    "image_above": [k for k, (a, b) in both.items() if a > b],
                    "image_below": [k for k, (a, b) in both.items() if not a > b]})
    return out


def comparisons_text(comps: list[dict[str, Any]], seeds: dict[str, list[float]]) -> str:
    """Markdown: the patch probe per pretraining seed, and each comparison in one line."""
    lines = ["\n| method | patch_lesion_r2 per pretraining seed |", "|---|---|"]
    lines += [f"| {m} | " + " / ".join(f"{v:.3f}" for v in vals) + " |"
              for m, vals in seeds.items()]
    lines.append("")
    for c in comps:
        n = len(c["image_above"]) + len(c["image_below"])
        lines.append(
            f"- {c['method']} vs {c['other']}: patch probe {c['patch_margin']:+.3f} against the "
            f"larger spread {c['larger_sd']:.3f} "
            f"({'clears it' if c['patch_clears'] else 'does not clear it'}); "
            f"above on {len(c['image_above'])} of {n} image metrics"
            + (f" (not on {', '.join(c['image_below'])})" if c["image_below"] else ""))
    return "\n".join(lines) + "\n"


def density_text(rows: list[dict[str, Any]], laa: str = "LAA-950 (patch)") -> str:
    """Markdown lines: each method's patch probe against the density score's, alone and with
    the density score beside its features (:data:`WITH_LAA950_METRIC`)."""
    stat = {(r["method"], r["metric"]): (r["mean"], r["sd"]) for r in rows}
    base = stat.get((laa, "patch_lesion_r2"))
    if base is None or not np.isfinite(base[0]):
        return ""
    lines = [f"\nAgainst {laa} ({base[0]:.3f}), alone and with {laa} beside the features:"]
    for method in SCIENCE_METHODS:
        alone = stat.get((method, "patch_lesion_r2"), (math.nan, math.nan))[0]
        both, sd = stat.get((method, WITH_LAA950_METRIC), (math.nan, math.nan))
        if np.isfinite(alone) and np.isfinite(both):
            lines.append(f"- {method}: {alone - base[0]:+.3f} alone; with {laa} {both:.3f} ± "
                         f"{sd:.3f} ({both - base[0]:+.3f})")
    return "\n".join(lines) + "\n"


def run_science(
    out_dir: str | Path, cfg: ScienceConfig, progress: bool = True, say: Any = _silent
) -> dict[str, Any]:
    """The whole benchmark (resumable); writes and returns ``science.json``'s content.

    ``progress`` shows progress bars; ``say`` receives one line as each stage starts and ends
    (``drasclr bench science`` prints them; :mod:`drasclr.commands.bench`).
    """
    from drasclr.evaluate.patch_probe import density_scores, read_patch_truth, write_probe_file
    from drasclr.labels import read_labels
    from drasclr.raytools import ray_session
    from drasclr.report.figures import science_figure
    from drasclr.store.reader import PatchStore

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg.claim(out / "science_config.yaml")
    clock = _Clock(out / "timings.json", say)
    t0 = time.perf_counter()
    with ray_session(num_cpus=cfg.threads):
        cohort, store_path = clock.run("synth + atlas + preprocess",
                                       lambda: prepare(out, cfg, progress))
    store = PatchStore(store_path)
    labels = read_labels(cohort / "labels.parquet", cohort / "truth.parquet")
    labels = labels[labels["subject_id"].isin(store.subject_ids)]
    truth_file, subj_file = out / "patch_truth.parquet", out / "subjects.parquet"
    if not truth_file.exists():
        truth = clock.run("patch truth", lambda: read_patch_truth(cohort, store, progress=progress))
        truth.to_parquet(truth_file)
    truth = pd.read_parquet(truth_file)
    if not subj_file.exists():
        clock.run("image LAA-950", lambda: subject_table(cohort, store_path, progress)
                  ).to_parquet(subj_file)
    subjects = pd.read_parquet(subj_file)
    probe_file = write_probe_file(truth, out / "probe_train.npz", seed=cfg.seed)
    laa = clock.run("patch LAA-950", lambda: density_scores(store, truth)["LAA-950 (patch)"])
    results: dict[str, list[dict[str, list[float]]]] = {}
    # the untrained encoder first: its evaluation times set the trained runs' budget
    order = sorted(SCIENCE_METHODS, key=lambda m: SCIENCE_METHODS[m] is not None)
    budget: dict[str, float] = {}
    for name in order:
        if SCIENCE_METHODS[name] is not None and not budget:
            budget = plan_budget(out, cfg, clock.seconds, say)
        for seed in cfg.seeds:
            b_s = budget.get("budget_s")
            enc = clock.run(f"pretrain {name} s{seed}", lambda n=name, s=seed, b=b_s:
                            pretrain_method(out, cfg, n, s, store_path, probe_file, say, b))
            feats = clock.run(f"extract {name} s{seed}",
                              lambda n=name, s=seed, e=enc: extract(out, cfg, n, s, e, store_path))
            results.setdefault(name, []).append(clock.run(
                f"score {name} s{seed}", lambda n=name, s=seed, f=feats: score_method(
                    out, cfg, n, s, f, truth, labels, store, cohort, laa)))
    base = clock.run("baselines",
                     lambda: baseline_metrics(truth, labels, subjects, store, cfg, laa))
    results = {m: results[m] for m in SCIENCE_METHODS}
    for name, m in base.items():
        results[name] = [m]
    rows = summarise(results)
    trained = {f"{name} s{seed}": out / "models" / f"{slug(name)}_s{seed}"
               for name, over in SCIENCE_METHODS.items() if over is not None
               for seed in cfg.seeds}
    training = {label: training_record(run) for label, run in trained.items()}
    seeds = per_seed({m: results[m] for m in SCIENCE_METHODS})
    comps = comparisons(rows)
    science_figure(rows, seeds, {label: probe_curve(run) for label, run in trained.items()},
                   out / FIGURE_FILE, image_metrics=IMAGE_METRICS)
    doc = {"rows": rows, "per_seed_patch_lesion_r2": seeds, "comparisons": comps,
           "figure": FIGURE_FILE,
           "training": training, "budget": budget, "config": cfg.to_dict(),
           "minutes": round((time.perf_counter() - t0) / 60, 1), "timings": clock.seconds,
           "n_subjects": store.num_subjects, "n_landmarks": store.num_landmarks}
    atomic_write_text(out / "science.json", json.dumps(doc, indent=1, default=float))
    atomic_write_text(out / "science.md", markdown_table(rows) + comparisons_text(comps, seeds)
                      + density_text(rows) + training_table(training)
                      + f"\n![bench science]({FIGURE_FILE})\n")
    return doc


def run_from_args(args: argparse.Namespace, say: Any = _silent) -> dict[str, Any]:
    """``drasclr bench science``: :func:`run_science` with the command's options."""
    cfg = ScienceConfig(preset=args.preset, n_subjects=args.n, seed=args.seed,
                        budget_minutes=args.budget_minutes, batch_size=args.batch_size,
                        deadline_minutes=args.deadline_minutes,
                        seeds=tuple(range(args.pretrain_seeds)), bn_stats=args.bn_stats,
                        **({"input_map": args.input_map} if args.input_map else {}),
                        drasclr_recipe=args.drasclr_recipe, budget_mode=args.budget_mode,
                        translate_vox=args.translate_vox, threads=args.threads, gpu=args.gpu,
                        amp=args.amp,
                        **{f"{m}_{f}": getattr(args, f"{m}_{f}")
                           for m in ("drasclr", "moco") for f in PER_METHOD},
                        **({"neighbour_warmup_share": args.neighbour_warmup_share}
                           if args.neighbour_warmup_share is not None else {}))
    return run_science(args.out, cfg, progress=not args.quiet, say=say)


def register(sub: Any) -> None:
    """Add ``bench science``."""
    p = sub.add_parser("science", help="synth -> preprocess -> pretrain DrasCLR and baselines "
                                       "(equal wall-clock budgets, several seeds) -> patch probe, "
                                       "image readouts, survival, detection; science.json")
    p.add_argument("--out", type=Path, default=Path("runs/science"), help="run folder")
    p.add_argument("--preset", default="bench", help="synthetic cohort preset")
    p.add_argument("--n", type=int, default=200, help="subjects")
    p.add_argument("--seed", type=int, default=0, help="cohort seed")
    p.add_argument("--budget-minutes", type=float, default=ScienceConfig.budget_minutes,
                   help="pretraining wall-clock minutes per method and seed (at most)")
    p.add_argument("--deadline-minutes", type=float, default=ScienceConfig.deadline_minutes,
                   help="lower every run's budget alike where the whole run would end later "
                        "than this (0: never)")
    p.add_argument("--pretrain-seeds", type=int, default=2, help="pretraining seeds per method")
    p.add_argument("--batch-size", type=int, default=32, help="subjects per pretraining batch")
    p.add_argument("--bn-stats", choices=("running", "landmark"), default="landmark",
                   help="BatchNorm statistics at feature extraction")
    p.add_argument("--input-map", choices=INPUT_MAPS, default=None,
                   help="the encoders' input map, every method alike (default: ScienceConfig's)")
    p.add_argument("--neighbour-warmup-share", type=float, default=None,
                   help="share of DrasCLR's budget trained with the local loss only "
                        "(default: ScienceConfig's)")
    p.add_argument("--drasclr-recipe", choices=list(DRASCLR_RECIPES), default="paired",
                   help="paired: B/2 anchors + 1 neighbour each, the neighbour also trained "
                        "locally (a step costs what one without the neighbour loss costs), "
                        "the neighbour loss through a head of its own; "
                        "paper: B anchors + 2 neighbours for the neighbour loss only")
    p.add_argument("--translate-vox", type=float, default=ScienceConfig.translate_vox,
                   help="translation range of every trained method's views, voxels")
    p.add_argument("--drasclr-momentum", type=float, default=ScienceConfig.drasclr_momentum,
                   help="key-encoder momentum of DrasCLR (its ablation's too)")
    p.add_argument("--moco-momentum", type=float, default=ScienceConfig.moco_momentum,
                   help="key-encoder momentum of plain MoCo")
    p.add_argument("--drasclr-temperature", type=float,
                   default=ScienceConfig.drasclr_temperature,
                   help="tau of DrasCLR's losses (its ablation's too)")
    p.add_argument("--moco-temperature", type=float, default=ScienceConfig.moco_temperature,
                   help="tau of plain MoCo's loss")
    p.add_argument("--drasclr-nn-positive-weight", type=float,
                   default=ScienceConfig.drasclr_nn_positive_weight,
                   help="share of DrasCLR's local target on the nearest other subject's key "
                        "(its ablation's too)")
    p.add_argument("--moco-nn-positive-weight", type=float,
                   default=ScienceConfig.moco_nn_positive_weight,
                   help="share of plain MoCo's target on the nearest other subject's key")
    p.add_argument("--drasclr-shuffle-block-vox", type=int,
                   default=ScienceConfig.drasclr_shuffle_block_vox,
                   help="cube edge of DrasCLR's view shuffle, voxels (its ablation's too; 0: off)")
    p.add_argument("--moco-shuffle-block-vox", type=int,
                   default=ScienceConfig.moco_shuffle_block_vox,
                   help="cube edge of plain MoCo's view shuffle, voxels (0: off)")
    p.add_argument("--budget-mode", choices=BUDGET_MODES, default="time",
                   help="time: every run trains until its budget is spent (equal time); "
                        "calibrated: step counts from a step-time calibration")
    p.add_argument("--threads", type=int, default=ScienceConfig.threads,
                   help="CPU threads (torch and Ray) for preprocessing, pretraining, extraction")
    p.add_argument("--gpu", action="store_true",
                   help="pretrain on the CUDA device (issue 10 item 7; CPU is the default)")
    p.add_argument("--amp", action="store_true",
                   help="pretrain in mixed precision (float16 on GPU, bfloat16 on CPU)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(bench_run=run_from_args)
