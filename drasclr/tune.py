"""Ray Tune sweeps over the whole pretrain -> extract -> evaluate chain (paper Tables 6, 8, 9).

Each trial pretrains in its own process (:func:`drasclr.train.run.train_single_process`, one
trial = one CPU or GPU slot, sized by :class:`SweepConfig`), and every ``eval_every`` steps
extracts image features from the latest checkpoint and runs the image-level readouts; the
readout metrics are reported to Tune, so a scheduler (ASHA) can stop weak trials early on an
intermediate *downstream* metric. Trials resume from their checkpoints, and a re-run of the same
sweep restores the Tune experiment (finished trials are not run again).

Output ``<out>/``: ``sweep_config.yaml``, ``tune/`` (Ray Tune storage), ``trials/<id>/`` (each
trial's pretraining run), ``results.csv`` / ``results.parquet`` (one row per trial: parameters,
final metrics, ``status``: ``ok`` or ``failed: ...`` when the optimised metric is not finite,
which is kept as NaN rather than turned into a score) and ``sweep.png``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from drasclr.config import ConfigError, StageConfig, check
from drasclr.fsutil import atomic_write_bytes

__all__ = ["RESULTS_FILE", "SPACES", "SweepConfig", "run_sweep", "trial_metrics", "trial_status"]

RESULTS_FILE = "results.csv"

#: Named search spaces: parameter -> ("grid", values) | ("choice", values) | ("loguniform", lo, hi)
#: | ("uniform", lo, hi). ``store`` picks one of the stores given to :func:`run_sweep` by name.
SPACES: dict[str, dict[str, tuple[Any, ...]]] = {
    # the CI-sized ablation of issue 6: neighbours {0, 2} x conditioning {none, Loc-CondConv}
    "neighbours_x_conditioning": {"neighbours": ("grid", [0, 2]),
                                  "conditioning": ("grid", ["none", "loccondconv"])},
    "neighbours": {"neighbours": ("grid", [0, 1, 2, 3])},  # paper Table 8
    "conditioning": {"conditioning": ("grid", ["none", "concat", "hypernet", "loccondconv"])},
    "atlas": {"store": ("grid", ["healthy", "diseased"])},  # paper Table 9: one store per atlas
    "hyper": {"lr": ("loguniform", 1e-3, 1e-1), "temperature": ("uniform", 0.05, 0.5),
              "queue_size": ("choice", [64, 256, 1024, 4096]), "experts": ("choice", [4, 8])},
}


@dataclass(frozen=True)
class SweepConfig(StageConfig):
    """A sweep: search space, per-trial pretraining budget and resources, early stopping.

    Attributes:
        space: name of a space in :data:`SPACES`.
        num_samples: samples of the space (grids are crossed and each grid point is run this
            many times; random spaces are sampled this many times).
        steps: pretraining steps per trial.
        eval_every: steps between intermediate downstream evaluations (reports to Tune).
        batch_size, queue_size, lr, experts, neighbours, conditioning, temperature: base
            pretraining settings that the space overrides.
        metric: reported metric optimised and used for early stopping
            (``<task>_<metric>`` of the image readouts, e.g. ``log_fev1pp_r2``).
        mode: ``max`` or ``min``.
        early_stopping: use ASHA (stops trials below the median at each rung).
        cpus_per_trial: CPUs per trial (torch threads follow).
        gpus_per_trial: GPUs per trial.
        max_concurrent: trials running at once (0 = as resources allow).
        seed: seed of sampling and of every trial's pretraining.
    """

    stage: ClassVar[str] = "sweep"

    space: str = "neighbours_x_conditioning"
    num_samples: int = 1
    steps: int = 40
    eval_every: int = 20
    batch_size: int = 16
    queue_size: int = 64
    lr: float = 0.03
    experts: int = 8
    neighbours: int = 2
    conditioning: str = "loccondconv"
    temperature: float = 0.2
    metric: str = "log_fev1pp_r2"
    mode: str = "max"
    early_stopping: bool = True
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int = 0
    seed: int = 0

    def validate(self) -> None:
        """Check names and ranges."""
        s = self.stage
        check(self.space in SPACES, s, "space", f"unknown {self.space!r}; one of {list(SPACES)}")
        check(self.num_samples >= 1, s, "num_samples", "must be >= 1")
        check(self.steps >= 1 and self.eval_every >= 1, s, "steps", "steps, eval_every >= 1")
        check(self.mode in ("max", "min"), s, "mode", "must be max or min")
        check(self.cpus_per_trial > 0, s, "cpus_per_trial", "must be > 0")
        check(self.gpus_per_trial >= 0, s, "gpus_per_trial", "must be >= 0")


def _param_space(space: dict[str, tuple[Any, ...]]) -> dict[str, Any]:
    from ray import tune

    out: dict[str, Any] = {}
    for name, spec in space.items():
        kind = spec[0]
        if kind == "grid":
            out[name] = tune.grid_search(list(spec[1]))
        elif kind == "choice":
            out[name] = tune.choice(list(spec[1]))
        elif kind == "loguniform":
            out[name] = tune.loguniform(spec[1], spec[2])
        elif kind == "uniform":
            out[name] = tune.uniform(spec[1], spec[2])
        else:
            raise ConfigError(f"sweep space parameter {name}: unknown kind {kind!r}")
    return out


def encoder_from_checkpoint(ckpt: Path, config: Any) -> Any:
    """The query encoder of a training checkpoint (for intermediate evaluations), built as
    ``config`` (a :class:`~drasclr.train.config.PretrainConfig`) trained it
    (:func:`drasclr.train.config.new_encoder`)."""
    from drasclr.train.checkpoint import load_model_state
    from drasclr.train.config import new_encoder
    from drasclr.train.export import encoder_state

    enc = new_encoder(config)
    enc.load_state_dict(encoder_state(load_model_state(ckpt)["model"]))
    return enc.eval()


def trial_metrics(encoder: Any, store: Path, labels: pd.DataFrame) -> dict[str, float]:
    """Image features of every store subject and their readouts, flattened to
    ``<task>_<metric>`` (fold mean) for Tune."""
    from drasclr.evaluate.readouts import image_readout_table
    from drasclr.features import FeaturesConfig, extract_patch_features
    from drasclr.features.output import image_table

    feats = extract_patch_features(encoder, store, FeaturesConfig(device="cpu"))
    table = image_readout_table(image_table(feats).to_pandas(), labels)
    out: dict[str, float] = {}
    for r in table.itertuples():
        v = float(r.mean) if r.mean is not None else math.nan
        out[f"{r.task}_{r.metric}"] = v if math.isfinite(v) else math.nan  # never a fake score
    return out


def trial_status(value: Any, metric: str) -> str:
    """``ok``, or ``failed: ...`` when the optimised metric is missing or not finite."""
    try:
        ok = math.isfinite(float(value))
    except (TypeError, ValueError):
        ok = False
    return "ok" if ok else f"failed: {metric} is {value} (not a finite number)"


def _trial(params: dict[str, Any], *, sweep: dict[str, Any], stores: dict[str, str],
           labels: str, trials_dir: str) -> None:
    """Tune trainable: pretrain in chunks of ``eval_every`` steps, evaluate, report."""
    import ray.tune
    import torch

    from drasclr.train.checkpoint import latest_checkpoint
    from drasclr.train.config import PretrainConfig
    from drasclr.train.run import SINGLE_CHECKPOINTS, train_single_process

    cfg = SweepConfig.from_dict(sweep)
    torch.set_num_threads(max(1, int(cfg.cpus_per_trial)))
    store_name = params.get("store", next(iter(stores)))
    base = {k: getattr(cfg, k) for k in ("batch_size", "queue_size", "lr", "experts",
                                         "neighbours", "conditioning", "temperature")}
    base.update({k: v for k, v in params.items() if k != "store"})
    pcfg = PretrainConfig(steps=cfg.steps, checkpoint_every=cfg.eval_every, seed=cfg.seed,
                          use_gpu=cfg.gpus_per_trial > 0, log_every=cfg.eval_every, **base)
    tid = "_".join(f"{k}={v}" for k, v in sorted(params.items()))
    out = Path(trials_dir) / "".join(c if c.isalnum() or c in "=_.-" else "-" for c in tid)
    lab = pd.read_parquet(labels)
    store = Path(stores[store_name])
    for stop in list(range(cfg.eval_every, cfg.steps, cfg.eval_every)) + [cfg.steps]:
        train_single_process(pcfg, store, out, stop_after=stop if stop < cfg.steps else None)
        ckpt = latest_checkpoint(out / SINGLE_CHECKPOINTS)
        assert ckpt is not None
        enc = encoder_from_checkpoint(ckpt, pcfg)
        metrics = trial_metrics(enc, store, lab)
        status = trial_status(metrics.get(cfg.metric), cfg.metric)
        ray.tune.report({**metrics, "step": stop, "store": store_name, "trial_status": status})
        if status != "ok":  # a broken trial does not train on
            return


def run_sweep(
    stores: dict[str, str | Path],
    labels: str | Path,
    out: str | Path,
    config: SweepConfig | None = None,
) -> pd.DataFrame:
    """Run (or resume) a sweep; returns one row per trial (parameters + final metrics).

    Args:
        stores: store name -> patch store (one store per atlas for the ``atlas`` space; any name
            for the others).
        labels: the cohort's labels table.
        out: sweep folder (layout in the module docstring).
        config: the sweep; a folder holding another sweep is refused.
    """
    from ray import tune

    from drasclr.raytools import ray_session

    config = config or SweepConfig()
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    cfg_file = out / "sweep_config.yaml"
    if cfg_file.exists() and SweepConfig.load(cfg_file) != config:
        raise ConfigError(f"{out}: holds another sweep ({cfg_file}); use another folder")
    config.save(cfg_file)
    space = SPACES[config.space]
    if "store" in space:
        missing = [s for s in space["store"][1] if s not in stores]
        if missing:
            raise ConfigError(f"sweep space {config.space!r} needs stores named {missing}")
    trainable = tune.with_parameters(
        _trial, sweep=config.to_dict(), stores={k: str(Path(v).resolve()) for k, v in
                                                stores.items()},
        labels=str(Path(labels).resolve()), trials_dir=str(out / "trials"))
    trainable = tune.with_resources(trainable, {"cpu": config.cpus_per_trial,
                                                "gpu": config.gpus_per_trial})
    scheduler = None
    if config.early_stopping:
        from ray.tune.schedulers import ASHAScheduler

        rungs = max(1, math.ceil(config.steps / config.eval_every))
        scheduler = ASHAScheduler(time_attr="training_iteration", max_t=rungs, grace_period=1,
                                  reduction_factor=2)
    storage = out / "tune"
    with ray_session():
        path = storage / "sweep"
        if tune.Tuner.can_restore(str(path)):
            tuner = tune.Tuner.restore(str(path), trainable, resume_errored=True)
        else:
            tuner = tune.Tuner(
                trainable,
                param_space=_param_space(space),
                tune_config=tune.TuneConfig(
                    metric=config.metric, mode=config.mode, num_samples=config.num_samples,
                    scheduler=scheduler, max_concurrent_trials=config.max_concurrent or None),
                run_config=tune.RunConfig(name="sweep", storage_path=str(storage),
                                          failure_config=tune.FailureConfig(max_failures=1)),
            )
        grid = tuner.fit()
    frame = grid.get_dataframe()
    keep = [c for c in frame.columns if c.startswith("config/") or c in (
        "step", "store", "training_iteration", config.metric, "trial_id")]
    keep += [c for c in frame.columns if c.endswith(("_r2", "_accuracy")) and c not in keep]
    table = frame[keep].rename(columns=lambda c: c.replace("config/", "param_"))
    table["status"] = [trial_status(v, config.metric) for v in table[config.metric]]
    table = table.sort_values(config.metric, ascending=config.mode == "min")
    table.to_csv(out / RESULTS_FILE, index=False)
    table.to_parquet(out / "results.parquet", index=False)
    from drasclr.report.figures import sweep_figure

    atomic_write_bytes(out / "sweep.png", sweep_figure(table, config.metric))
    return table
