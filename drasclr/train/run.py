"""Pretraining entry points: Ray Train (:func:`pretrain`) and one plain process
(:func:`train_single_process`); both run :func:`drasclr.train.loop.train_worker`.

Output folder ``<out>`` (the same for both, except where checkpoints live)::

    pretrain_config.yaml    the run's PretrainConfig (a re-run with another config is refused)
    metrics.jsonl           rank 0's log: {"event": "start"|"train"|"end", "step", "loss",
                            "local_loss", "neighbour_loss", "top1", "samples_per_s",
                            "data_wait_fraction", "lr", ...}; a restart appends a new "start"
    tensorboard/            the same scalars, when TensorBoard (or tensorboardX) is installed
    ray/<run_name>/         Ray Train storage (default ``storage_path``): checkpoint_step_XXXXXXXX/
                            directories (layout in :mod:`drasclr.train.checkpoint`) + Ray state
    checkpoints/step_XXXXXXXX/   the same checkpoints, for :func:`train_single_process`
    nonfinite_loss.json     diagnostic written when the loss became NaN/inf
    export/                 encoder.safetensors, encoder_config.json, model_card.md
                            (:mod:`drasclr.train.export`; read with ``load_encoder``)
    result.json             summary of the finished run

Re-running the same command resumes from the latest checkpoint (Ray Train restores it from the
storage path; the single-process runner from ``checkpoints/``); a finished run returns at once.
"""

from __future__ import annotations

import os
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from drasclr.config import ConfigError
from drasclr.fsutil import atomic_path
from drasclr.store.reader import PatchStore
from drasclr.train.checkpoint import (
    META_FILE,
    CheckpointError,
    checkpoint_step,
    latest_checkpoint,
    load_model_state,
    load_rank_state,
    read_meta,
)
from drasclr.train.config import CONFIG_FILE, PretrainConfig
from drasclr.train.export import export_encoder, write_result
from drasclr.train.loop import (
    NAN_DIAGNOSTIC_FILE,
    NonFiniteLossError,
    WorkerContext,
    total_steps,
    train_worker,
)

RAY_DIR = "ray"
SINGLE_CHECKPOINTS = "checkpoints"


class PretrainError(RuntimeError):
    """Training failed on the workers; the message carries their errors."""


@dataclass(frozen=True)
class PretrainResult:
    """What a finished run left behind.

    Attributes:
        out_dir: the run folder.
        export_dir: ``<out>/export`` (pass to ``load_encoder``).
        checkpoint: the final checkpoint directory.
        steps: optimizer steps done.
        metrics: final metrics (last logging window, rank-averaged).
        resumed: the run continued from an earlier checkpoint.
        seconds: wall time of this call.
    """

    out_dir: Path
    export_dir: Path
    checkpoint: Path
    steps: int
    metrics: dict[str, Any] = field(default_factory=dict)
    resumed: bool = False
    seconds: float = 0.0


# --------------------------------------------------------------------------- shared checks
def check_setup(config: PretrainConfig, store: PatchStore) -> int:
    """Check the store can feed ``config`` on every worker; returns the run's total steps.

    Raises:
        LoaderError: too few landmarks/subjects for the workers, batch size or neighbours.
    """
    sampler = config.batch_sampler(store, 0, config.workers)
    return total_steps(config, sampler.steps_per_epoch)


def prepare_out_dir(config: PretrainConfig, out_dir: Path, overwrite: bool = False) -> None:
    """Create ``out_dir`` with the config; refuse a folder that holds a run with another config."""
    cfg_file = out_dir / CONFIG_FILE
    if cfg_file.exists() and overwrite:
        shutil.rmtree(out_dir)
    if cfg_file.exists():
        old = PretrainConfig.load(cfg_file)
        if old.fingerprint() != config.fingerprint():
            a, b = old.to_dict(), config.to_dict()
            diff = sorted(key for key in a if a[key] != b[key])
            raise ConfigError(
                f"{out_dir}: holds a run with another config (differs in {diff}); use another "
                "output folder, or overwrite to start over"
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    config.save(cfg_file)


def verify_checkpoint(directory: Path, world_size: int) -> int:
    """Load every file of a checkpoint once (hashes, keys); returns its step.

    Raises:
        CheckpointError: naming the missing or corrupt file.
    """
    load_model_state(directory)
    for rank in range(world_size):
        load_rank_state(directory, rank, world_size)
    return int(read_meta(directory)["step"])


def _finished(out: Path, config: PretrainConfig) -> PretrainResult | None:
    import json

    path = out / "result.json"
    if not path.is_file():
        return None
    res = json.loads(path.read_text())
    if res.get("config_fingerprint") != config.fingerprint() or not res.get("complete"):
        return None
    if not (out / "export" / "encoder.safetensors").is_file():
        return None
    return PretrainResult(out, out / "export", Path(res["checkpoint"]), int(res["steps"]),
                          res.get("metrics", {}), resumed=True)


def _finish(
    config: PretrainConfig, store: PatchStore, out: Path, checkpoint: Path, resumed: bool,
    t0: float,
) -> PretrainResult:
    meta = read_meta(checkpoint)
    metrics = dict(meta.get("metrics", {}))
    export_dir = export_encoder(checkpoint, config, store, out, metrics)
    result = PretrainResult(out, export_dir, checkpoint, int(meta["step"]), metrics, resumed,
                            time.perf_counter() - t0)
    write_result(out, {
        "complete": True,
        "steps": result.steps,
        "checkpoint": str(checkpoint),
        "export": str(export_dir),
        "config_fingerprint": config.fingerprint(),
        "metrics": metrics,
        "seconds_last_call": result.seconds,
    })
    return result


def _raise_if_nonfinite(out: Path) -> None:
    import json

    path = out / NAN_DIAGNOSTIC_FILE
    if path.is_file():
        raise NonFiniteLossError(json.loads(path.read_text()))


# --------------------------------------------------------------------------- one process
def train_single_process(
    config: PretrainConfig,
    store: str | Path,
    out: str | Path,
    *,
    stop_after: int | None = None,
    device: str | torch.device | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> PretrainResult | None:
    """Train in this process without Ray or torch.distributed (same loop as the workers).

    Checkpoints go to ``<out>/checkpoints/step_XXXXXXXX``; a call resumes from the latest.

    Args:
        config: run configuration (``workers`` is ignored: one worker owns every landmark).
        store: patch store directory.
        out: run folder.
        stop_after: stop after this global step (an interruption, for tests); no export then.
        device: training device (default: cuda when ``config.use_gpu``, else cpu).
        overwrite: wipe an existing run in ``out`` first.
        progress: show a progress bar.

    Returns:
        The result, or None when stopped early by ``stop_after``.

    Raises:
        PretrainError: ``use_gpu`` is set and no CUDA device is visible (before anything is
            written).
    """
    t0 = time.perf_counter()
    if device is None and config.use_gpu and not torch.cuda.is_available():
        raise PretrainError(f"{out}: use_gpu is set but torch sees no CUDA device "
                            f"(torch {torch.__version__}); drop --gpu to train on the CPU")
    config = config.replace(workers=1)
    out = Path(out)
    patch_store = PatchStore(store)
    check_setup(config, patch_store)
    prepare_out_dir(config, out, overwrite)
    done = _finished(out, config)
    if done is not None:
        return done
    ckpt_root = out / SINGLE_CHECKPOINTS
    restore = latest_checkpoint(ckpt_root)
    if restore is not None:
        verify_checkpoint(restore, 1)

    def publish(directory: Path, step: int, metrics: dict[str, Any]) -> None:
        target = ckpt_root / f"step_{step:08d}"
        with atomic_path(target) as tmp:
            shutil.copytree(directory, tmp)
        kept = sorted(p for p in ckpt_root.iterdir() if p.name.startswith("step_"))
        for old in kept[: -config.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)

    dev = torch.device(device) if device is not None else torch.device(
        "cuda" if config.use_gpu else "cpu"
    )
    ctx = WorkerContext(0, 1, dev, False, restore, publish, stop_after, None, progress)
    final = train_worker(config, store, out, ctx)
    if not final["complete"]:
        return None
    last = latest_checkpoint(ckpt_root)
    assert last is not None
    return _finish(config, patch_store, out, last, restore is not None, t0)


# --------------------------------------------------------------------------- Ray Train
def worker_config(config: PretrainConfig) -> dict[str, Any]:
    """The config as the Ray Train workers receive it: local file paths made absolute.

    Workers run in their own working directory, so a path relative to the driver's (e.g. the
    training probe's ``runs/demo/models/probe_train.npz``) would not be found there. The run's
    saved config keeps the path as given.
    """
    d = config.to_dict()
    if config.probe_file and "://" not in config.probe_file:
        d["probe_file"] = str(Path(config.probe_file).resolve())
    return d


def _ray_train_fn(loop_config: dict[str, Any]) -> None:
    """The Ray Train worker function: build the context from Ray and run the loop."""
    import ray.train

    config = PretrainConfig.from_dict(loop_config["config"])
    rctx = ray.train.get_context()
    rank, world = rctx.get_world_rank(), rctx.get_world_size()
    if config.use_gpu:
        import ray.train.torch

        device = ray.train.torch.get_device()
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")

    def publish(directory: Path, step: int, metrics: dict[str, Any]) -> None:
        ray.train.report(
            metrics,
            checkpoint=ray.train.Checkpoint.from_directory(str(directory)),
            checkpoint_dir_name=f"checkpoint_step_{step:08d}",
        )

    checkpoint = ray.train.get_checkpoint()
    # A checkpoint is on the storage path as soon as every rank has reported it, but the Ray
    # Train controller registers it asynchronously: a worker killed right after a report can
    # leave it unregistered. With local storage, restore from the newest *complete* checkpoint
    # on disk when it is newer than the one Ray hands back.
    on_disk = _newest_complete(Path(loop_config["run_dir"]), world) if loop_config.get(
        "run_dir") else None
    if on_disk is not None and (checkpoint is None or _step_of(Path(checkpoint.path)) <
                                checkpoint_step(on_disk)):
        checkpoint = None
    with checkpoint.as_directory() if checkpoint is not None else nullcontext(on_disk) as restore:
        ctx = WorkerContext(
            rank=rank,
            world_size=world,
            device=device,
            distributed=world > 1,
            restore_from=Path(restore) if restore is not None else None,
            publish=publish,
            fault=loop_config.get("fault"),
            progress=bool(loop_config.get("progress", False)),
        )
        try:
            train_worker(config, loop_config["store"], loop_config["out"], ctx)
        except NonFiniteLossError:
            # Every rank raises together; ending normally avoids Ray retrying a deterministic
            # failure. Rank 0 wrote the diagnostic file the driver turns into the error.
            return


def _step_of(directory: Path) -> int:
    """Step of a checkpoint directory (-1 when it cannot be read locally)."""
    try:
        return checkpoint_step(directory)
    except (CheckpointError, OSError):
        return -1


def _newest_complete(run_dir: Path, world_size: int) -> Path | None:
    """The highest-step checkpoint under a local Ray Train run folder whose files all verify."""
    found = sorted(run_dir.glob("checkpoint_step_*"), reverse=True) if run_dir.is_dir() else []
    for directory in found:
        try:
            verify_checkpoint(directory, world_size)
        except CheckpointError:
            continue
        return directory
    return None


def _latest_ray_checkpoint(run_dir: Path) -> Path | None:
    found = sorted(
        p for p in run_dir.glob("checkpoint_step_*") if (p / META_FILE).is_file()
    ) if run_dir.is_dir() else []
    return found[-1] if found else None


def pretrain(
    config: PretrainConfig,
    store_path: str | Path,
    out_dir: str | Path,
    *,
    storage_path: str | None = None,
    address: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    fault: dict[str, Any] | None = None,
) -> PretrainResult:
    """Pretrain with Ray Train (``config.workers`` workers; gloo on CPU, NCCL on GPU).

    Uses the running Ray instance, the cluster at ``address`` (e.g. ``"auto"``), or starts an
    embedded one. Re-running the same call resumes from the latest checkpoint; a finished run
    returns its result without training.

    Args:
        config: run configuration.
        store_path: patch store directory.
        out_dir: run folder (layout in the module docstring); local or mounted shared storage.
        storage_path: Ray Train storage (local path or ``s3://`` URI); default ``<out>/ray``.
        address: Ray cluster address when Ray is not initialised yet.
        overwrite: wipe an existing run in ``out_dir`` first.
        progress: progress bar on rank 0.
        fault: test hook, see :class:`drasclr.train.loop.WorkerContext`.

    Returns:
        The :class:`PretrainResult`.

    Raises:
        StoreError: no store, or a store of another schema version.
        LoaderError: the store cannot feed the configured workers / batch size / neighbours.
        ConfigError: ``out_dir`` holds a run with another config.
        CheckpointError: the checkpoint to resume from is missing files or corrupt.
        NonFiniteLossError: the loss became NaN/inf (diagnostic in ``nonfinite_loss.json``).
        PretrainError: the workers failed (more than ``max_failures`` times).
    """
    import ray
    import ray.train
    from ray.train.torch import TorchTrainer

    from drasclr.raytools import ray_session

    t0 = time.perf_counter()
    out = Path(out_dir).resolve()
    store = PatchStore(store_path)
    check_setup(config, store)
    prepare_out_dir(config, out, overwrite)
    done = _finished(out, config)
    if done is not None:
        return done
    (out / NAN_DIAGNOSTIC_FILE).unlink(missing_ok=True)
    storage = storage_path or str(out / RAY_DIR)
    local_run = None if "://" in storage else Path(storage) / config.run_name
    restore = _latest_ray_checkpoint(local_run) if local_run is not None else None
    if restore is not None:
        verify_checkpoint(restore, config.workers)

    resources: dict[str, float] = {"CPU": config.cpus_per_worker}
    if config.use_gpu:
        resources["GPU"] = 1.0
    trainer = TorchTrainer(
        _ray_train_fn,
        train_loop_config={
            "config": worker_config(config),
            "store": str(Path(store_path).resolve()),
            "out": str(out),
            "fault": fault,
            "progress": progress,
            "run_dir": str(local_run) if local_run is not None else None,
        },
        scaling_config=ray.train.ScalingConfig(
            num_workers=config.workers, use_gpu=config.use_gpu, resources_per_worker=resources
        ),
        run_config=ray.train.RunConfig(
            name=config.run_name,
            storage_path=storage,
            failure_config=ray.train.FailureConfig(max_failures=config.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=config.keep_checkpoints),
        ),
    )
    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    with ray_session(address=address):
        try:
            result = trainer.fit()
        except ray.train.TrainingFailedError as err:
            _raise_if_nonfinite(out)
            raise PretrainError(f"pretraining run '{config.run_name}' in {out} failed: {err}") from err
    _raise_if_nonfinite(out)
    if result.checkpoint is None:
        raise PretrainError(f"pretraining run '{config.run_name}' finished without a checkpoint")
    with result.checkpoint.as_directory() as d:
        ckpt = Path(d)
        if "://" in storage:  # copy the final checkpoint next to the export
            final = out / "final_checkpoint"
            with atomic_path(final) as tmp:
                shutil.copytree(ckpt, tmp)
            ckpt = final
        return _finish(config, store, out, ckpt, restore is not None, t0)
