"""Preprocessing on Ray Data: plan -> subject actors -> block writes -> ordered manifest commits.

Flow of :func:`run_preprocess` (DESIGN.md 3.4 and 5):

1. On the driver: discover inputs, hash them, validate the labels table, open (or create) the
   patch store, and plan: subjects already ``ok`` with the same input hash and config fingerprint
   are skipped; the rest get store indices in fresh blocks after the last committed block.
2. Ray Data maps the plan through an actor pool (:class:`_SubjectWorker`, ``num_cpus`` per actor,
   the atlas and any segmentation model loaded once per actor). Every subject comes back as a row
   with its patches or its error, so a failing subject never fails the job.
3. The driver groups finished subjects by block; a complete block is written whole by one writer
   thread (no two writers ever touch one shard) and its manifest rows are committed strictly in
   block order. A crash therefore leaves a committed prefix of blocks, and the re-run assigns the
   remaining subjects to the same store indices, so the final store is byte-identical to that of an
   uninterrupted run.

A lost worker process (a crash inside ITK, the out-of-memory killer) is replaced and its subject
re-run; a small counter actor records the attempts each subject started and never finished, and
after ``max_worker_deaths`` such deaths the subject becomes a ``failed`` row ("worker died while
processing: ...") instead of being retried forever.

Besides the arrays and the manifest (:mod:`drasclr.store`), the run writes into the store the
stage config (``preprocess_config.yaml``), one QC figure per subject (``qc/<subject_id>.png``),
the cohort QC sheet (``reports/qc_sheet.png``) and the run summary
(``reports/preprocess_summary.json``, :class:`PreprocessSummary`).

Fault points for the tests (:mod:`drasclr.faults`, spec in ``DRASCLR_FAULT``):
``preprocess.worker`` (key: the subject id) where a worker starts a subject, and
``preprocess.driver_commit`` (key: blocks committed so far) right after the driver commits a
block. The driver hands its spec to the workers.
"""

from __future__ import annotations

import io
import json
import os
import queue
import shutil
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from drasclr import faults
from drasclr.fsutil import atomic_write_bytes, atomic_write_text
from drasclr.imaging.atlas import Atlas, load_atlas
from drasclr.imaging.io import InputError
from drasclr.preprocess.config import CONFIG_FILE, PreprocessConfig
from drasclr.preprocess.inputs import discover_inputs, input_hash
from drasclr.preprocess.subject import (
    SubjectResult,
    process_subject,
    set_worker_threads,
    stage_seconds,
    subject_seconds,
)
from drasclr.store.reader import SubjectPatches
from drasclr.store.writer import PlanItem, StoreWriter, open_store

__all__ = [
    "CONFIG_FILE",
    "SUMMARY_FILE",
    "QC_DIR",
    "PreprocessSummary",
    "run_preprocess",
]




SUMMARY_FILE = "reports/preprocess_summary.json"


SHEET_FILE = "reports/qc_sheet.png"


QC_DIR = "qc"


@dataclass
class PreprocessSummary:
    """Outcome of one preprocessing run.

    Attributes:
        store: the store path.
        n_ok: subjects stored in this run.
        n_failed: subjects that failed in this run.
        n_skipped: subjects skipped (already done, or failed before without ``retry_failed``).
        seconds: wall time of the run.
        stage_seconds: p50/p95 seconds per stage over the whole store's ok subjects.
        outliers: ids of ok subjects below the QC thresholds.
        failures: subject id -> error, for this run's failures.
    """

    store: Path
    n_ok: int
    n_failed: int
    n_skipped: int
    seconds: float
    stage_seconds: dict[str, dict[str, float]] = field(default_factory=dict)
    outliers: list[str] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return {
            "store": str(self.store), "ok": self.n_ok, "failed": self.n_failed,
            "skipped": self.n_skipped, "seconds": round(self.seconds, 3),
            "stage_seconds": self.stage_seconds, "qc_outliers": self.outliers,
            "failures": self.failures,
        }

    def text(self) -> str:
        """Human-readable closing summary."""
        lines = [f"preprocess {self.store}: ok {self.n_ok}, failed {self.n_failed}, "
                 f"skipped {self.n_skipped} in {self.seconds:.1f} s"]
        for s, v in self.stage_seconds.items():
            lines.append(f"  {s:<9} p50 {v['p50']:7.2f} s   p95 {v['p95']:7.2f} s")
        if self.outliers:
            lines.append(f"  QC outliers: {', '.join(self.outliers[:20])}")
        for sid, err in list(self.failures.items())[:20]:
            lines.append(f"  FAILED {sid}: {err}")
        return "\n".join(lines)


# ----------------------------------------------------------------------------------- worker
def _pack(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def _unpack(blob: bytes) -> np.ndarray:
    return np.load(io.BytesIO(blob), allow_pickle=False)


class _Attempts:
    """Ray actor (one per run): attempts each subject started and did not finish.

    With one subject in flight per worker, an attempt that never finishes is a worker process that
    died on that subject.
    """

    def __init__(self) -> None:
        self.unfinished: dict[str, int] = {}

    def begin(self, subject_id: str) -> int:
        """Record that an attempt starts; returns the earlier unfinished attempts (deaths)."""
        deaths = self.unfinished.get(subject_id, 0)
        self.unfinished[subject_id] = deaths + 1
        return deaths

    def end(self, subject_id: str) -> None:
        """Record that the subject finished (ok or failed)."""
        self.unfinished.pop(subject_id, None)


class _SubjectWorker:
    """Ray Data actor: holds the atlas (and segmentation model) and preprocesses subjects."""

    def __init__(
        self, atlas_dir: str, config: dict[str, Any], store: str, fault_spec: str, attempts: Any
    ) -> None:
        faults.install(fault_spec)
        self.attempts = attempts
        self.config = PreprocessConfig.from_dict(config)
        set_worker_threads(int(max(1, round(self.config.cpus_per_subject))))
        self.atlas: Atlas = load_atlas(atlas_dir)
        self.qc_dir = Path(store) / QC_DIR

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        import ray

        item = PlanItem(row["subject_id"], row["input_path"], row["input_hash"],
                        int(row["store_index"]), row["reason"])
        try:
            deaths = ray.get(self.attempts.begin.remote(item.subject_id))
        except ray.exceptions.RayActorError:  # counter lost with its node: count from zero
            deaths = 0
        if deaths >= self.config.max_worker_deaths:
            res = SubjectResult(None, (
                f"worker died while processing: {item.input_path} (the worker process died "
                f"{deaths} times on this subject: a crash inside a library, or out of memory)"), {})
        else:
            faults.fault_point("preprocess.worker", item.subject_id)
            res = process_subject(item, self.atlas, self.config)
        try:
            self.attempts.end.remote(item.subject_id)
        except ray.exceptions.RayActorError:
            pass
        out: dict[str, Any] = {
            "subject_id": item.subject_id,
            "store_index": item.store_index,
            "error": res.error or "",
            "record": json.dumps(res.record),
            "patches": b"", "valid": b"", "lung_fraction": b"", "centre_mm": b"",
        }
        if res.patches is not None:
            sp = res.patches
            out.update(patches=_pack(np.asarray(sp.patches, dtype=np.int16)),
                       valid=_pack(np.asarray(sp.valid)),
                       lung_fraction=_pack(np.asarray(sp.lung_fraction, dtype=np.float32)),
                       centre_mm=_pack(np.asarray(sp.centre_mm, dtype=np.float32)))
        if res.qc_png is not None:
            atomic_write_bytes(self.qc_dir / f"{item.subject_id}.png", res.qc_png)
        return out


# ----------------------------------------------------------------------------------- driver
def _inputs_with_hashes(inputs: str | Path, progress: bool) -> pd.DataFrame:
    table = discover_inputs(inputs)
    dups = table["subject_id"][table["subject_id"].duplicated()].unique().tolist()
    if dups:
        rows = table[table["subject_id"].isin(dups)]
        detail = "; ".join(f"{r.subject_id} <- {r.input_path}" for r in rows.head(10).itertuples())
        raise InputError(inputs, f"duplicate subject id(s) {dups[:10]}: {detail}")
    hashes = []
    errors = []
    for p in tqdm(table["input_path"], desc="hash inputs", disable=not progress, unit="scan"):
        try:
            hashes.append(input_hash(p))
            errors.append(None)
        except (InputError, OSError) as err:
            hashes.append("missing")
            errors.append(str(err))
    table["input_hash"] = hashes
    table["hash_error"] = errors
    return table


def _check_labels(labels: str | Path | None, inputs: str | Path) -> Path | None:
    """Validate the labels table (schema ``labels``) before any work; returns its path."""
    from drasclr.tables import read_frame

    path = Path(labels) if labels else Path(inputs) / "labels.parquet"
    if labels is None and not path.is_file():
        return None
    if not path.is_file():
        raise InputError(path, "labels table not found")
    read_frame(path, "labels")  # raises SchemaError naming the file and column
    return path


def _block_writer(
    writer: StoreWriter,
    jobs: queue.Queue[Any],
    committed: list[int],
    errors: list[BaseException],
) -> None:
    """Writer thread: write whole blocks, then commit their rows strictly in block order."""
    pending: dict[int, list[dict[str, Any]]] = {}
    next_block: int | None = None
    order: list[int] = []
    while True:
        job = jobs.get()
        if job is None:
            break
        kind, payload = job
        if kind == "order":
            order = list(payload)
            next_block = order[0] if order else None
            continue
        block, subjects, failed_rows = payload
        try:
            rows = writer.write_block(block, subjects) if subjects else []
            pending[block] = rows + failed_rows
            while next_block is not None and next_block in pending:
                writer.commit_rows(pending.pop(next_block))
                committed.append(next_block)
                faults.fault_point("preprocess.driver_commit", str(len(committed)))
                i = order.index(next_block) + 1
                next_block = order[i] if i < len(order) else None
        except BaseException as err:  # noqa: BLE001 - reported on the driver
            errors.append(err)
            return


def run_preprocess(
    inputs: str | Path,
    atlas_dir: str | Path,
    store: str | Path,
    config: PreprocessConfig | None = None,
    *,
    labels: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
    num_cpus: int | None = None,
) -> PreprocessSummary:
    """Preprocess a cohort into a patch store on Ray (embedded, or the cluster Ray is attached to).

    Args:
        inputs: folder of scans, synthetic cohort folder, or table of ``subject_id, input_path``.
        atlas_dir: atlas folder (``drasclr atlas`` / :func:`drasclr.imaging.atlas.save_atlas`).
        store: patch store directory (created, resumed or appended to).
        config: stage settings (saved in the store as ``preprocess_config.yaml``).
        labels: labels table to validate and copy into the store (default: ``labels.parquet``
            beside the inputs, if present).
        overwrite: replace an existing store.
        progress: show progress bars.
        num_cpus: CPUs of an embedded Ray instance (default: all).

    Returns:
        The run summary (also written to ``reports/preprocess_summary.json`` in the store).

    Raises:
        InputError: inputs missing, empty, or with duplicate subject ids.
        SchemaError: the labels table breaks its schema.
        StoreError: an existing store of another schema version, atlas or patch size.
    """
    from drasclr.raytools import ray_session

    t_start = time.perf_counter()
    config = config or PreprocessConfig()
    store = Path(store)
    atlas_dir = Path(atlas_dir)
    atlas = load_atlas(atlas_dir)
    if atlas.patch_size != config.patch_size:
        raise InputError(atlas_dir, f"atlas grid is for patch {atlas.patch_size}, "
                                    f"config asks for {config.patch_size}")
    labels_path = _check_labels(labels, inputs)
    table = _inputs_with_hashes(inputs, progress)
    fingerprint = config.store_fingerprint()
    writer = open_store(
        store, landmarks_mm=atlas.landmarks_mm, neighbours=atlas.neighbour_table,
        atlas_id=atlas.atlas_id, landmarks_norm=atlas.landmarks_norm,
        patch_size=config.patch_size, block_size=config.block_size,
        config_fingerprint=fingerprint, overwrite=overwrite,
    )
    config.save(store / CONFIG_FILE)
    if labels_path is not None:
        shutil.copyfile(labels_path, store / ".labels.parquet.tmp")
        os.replace(store / ".labels.parquet.tmp", store / "labels.parquet")

    # subjects that failed before with the same input and config are not retried by default
    previous = writer.manifest()
    known_failed: set[str] = set()
    if not config.retry_failed and len(previous):
        f = previous[(previous["status"] == "failed")
                     & (previous["config_fingerprint"] == fingerprint)]
        same = table.merge(f[["subject_id", "input_hash"]], on=["subject_id", "input_hash"])
        known_failed = set(same["subject_id"])
    todo = table[~table["subject_id"].isin(known_failed)]
    plan = writer.plan(list(zip(todo["subject_id"], todo["input_path"], todo["input_hash"])))
    hash_errors = dict(zip(table["subject_id"], table["hash_error"]))

    failures: dict[str, str] = {}
    n_ok = 0
    blocks = plan.blocks
    if len(plan):
        with ray_session(num_cpus=num_cpus):
            n_ok = _run_plan(plan.items, blocks, writer, atlas_dir, store, config, hash_errors,
                             failures, progress)
    manifest = writer.manifest()
    _write_reports(store, manifest, config)
    from drasclr.report.qc import qc_outliers

    summary = PreprocessSummary(
        store=store, n_ok=n_ok, n_failed=len(failures),
        n_skipped=len(plan.skipped) + len(known_failed), seconds=time.perf_counter() - t_start,
        stage_seconds=stage_seconds(manifest),
        outliers=qc_outliers(manifest, config.qc_dice, config.qc_fov_fraction)[
            "subject_id"].tolist(),
        failures=failures,
    )
    atomic_write_text(store / SUMMARY_FILE, json.dumps(summary.to_dict(), indent=1))
    return summary


def _run_plan(
    items: tuple[PlanItem, ...],
    blocks: dict[int, tuple[PlanItem, ...]],
    writer: StoreWriter,
    atlas_dir: Path,
    store: Path,
    config: PreprocessConfig,
    hash_errors: dict[str, str | None],
    failures: dict[str, str],
    progress: bool,
) -> int:
    """Run the planned subjects through Ray Data and the block writer; returns ok count."""
    import ray

    cluster_cpus = float(ray.cluster_resources().get("CPU", 1.0))
    n_workers = config.workers or max(1, int(cluster_cpus // config.cpus_per_subject))
    n_workers = max(1, min(n_workers, len(items)))
    jobs: queue.Queue[Any] = queue.Queue()
    committed: list[int] = []
    errors: list[BaseException] = []
    thread = threading.Thread(target=_block_writer, args=(writer, jobs, committed, errors),
                              name="drasclr-block-writer", daemon=True)
    thread.start()
    jobs.put(("order", sorted(blocks)))

    block_of = {it.subject_id: it.store_index // writer.info.block_size for it in items}
    by_id = {it.subject_id: it for it in items}
    done: dict[int, list[SubjectPatches]] = defaultdict(list)
    failed_rows: dict[int, list[dict[str, Any]]] = defaultdict(list)
    remaining = {b: len(v) for b, v in blocks.items()}
    n_ok = 0

    def finish(sid: str, sp: SubjectPatches | None, error: str | None, record: dict) -> None:
        nonlocal n_ok
        b = block_of[sid]
        if sp is not None:
            done[b].append(sp)
            n_ok += 1
        else:
            failures[sid] = error or "unknown error"
            failed_rows[b].append(writer.failed_row(by_id[sid], failures[sid], **record))
        remaining[b] -= 1
        if remaining[b] == 0:
            jobs.put(("block", (b, done.pop(b, []), failed_rows.pop(b, []))))

    runnable = []
    for it in items:  # unreadable inputs fail up front, without a worker
        if hash_errors.get(it.subject_id):
            finish(it.subject_id, None, f"read: InputError: {hash_errors[it.subject_id]}", {})
        else:
            runnable.append(it)

    bar = tqdm(total=len(items), initial=len(items) - len(runnable), desc="preprocess",
               unit="subj", disable=not progress)
    if runnable:
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = False
        ctx.enable_progress_bars = False
        ds = ray.data.from_items(
            [{"subject_id": it.subject_id, "input_path": it.input_path,
              "input_hash": it.input_hash, "store_index": it.store_index, "reason": it.reason}
             for it in runnable],
            override_num_blocks=len(runnable),
        )
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        # the counter lives on the driver's node: it survives the loss of a worker node
        here = ray.get_runtime_context().get_node_id()
        attempts = ray.remote(num_cpus=0)(_Attempts).options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=True)).remote()
        ds = ds.map(
            _SubjectWorker,
            fn_constructor_kwargs={"atlas_dir": str(atlas_dir), "config": config.to_dict(),
                                   "store": str(store), "fault_spec": faults.current_spec(),
                                   "attempts": attempts},
            # one subject in flight per actor: a subject takes seconds, so queueing more on the
            # first actor to start would leave the others idle
            compute=ray.data.ActorPoolStrategy(size=n_workers, max_tasks_in_flight_per_actor=1),
            num_cpus=config.cpus_per_subject,
            # a lost worker process is replaced and its subject re-run: Ray Data's actor pools
            # default to max_restarts=-1 and max_task_retries=-1 (passing them is the deprecated
            # **ray_remote_args path); _Attempts turns the subject into a failed row after
            # config.max_worker_deaths deaths (tests/test_preprocess.py)
        )
        try:
            _consume(ds, by_id, finish, bar, failures, committed, errors)
        finally:
            ray.kill(attempts)
    bar.close()
    jobs.put(None)
    thread.join()
    if errors:
        raise errors[0]
    return n_ok


def _consume(
    ds: Any,
    by_id: dict[str, PlanItem],
    finish: Callable[[str, SubjectPatches | None, str | None, dict[str, Any]], None],
    bar: Any,
    failures: dict[str, str],
    committed: list[int],
    errors: list[BaseException],
) -> None:
    """Hand every finished subject of the dataset to ``finish`` (stops on a writer error)."""
    for row in ds.iter_rows():
        sid = str(row["subject_id"])
        record = json.loads(row["record"])
        if row["error"]:
            finish(sid, None, str(row["error"]), _failed_record(record))
        else:
            sp = SubjectPatches(
                by_id[sid], _unpack(row["patches"]), _unpack(row["valid"]),
                _unpack(row["lung_fraction"]), _unpack(row["centre_mm"]), record=record)
            finish(sid, sp, None, record)
        bar.update(1)
        bar.set_postfix(failed=len(failures), committed=len(committed))
        if errors:
            break


_FAILED_KEYS = ("spacing", "origin", "direction", "shape", "transform", "inverse_transform",
                "dice", "fov_fraction", "registration_start", "lung_volume_ml", "t_read",
                "t_resample", "t_segment", "t_register", "t_cut")


def _failed_record(record: dict[str, Any]) -> dict[str, Any]:
    """The manifest fields a failed row keeps (geometry and timings known before the failure)."""
    return {k: record[k] for k in _FAILED_KEYS if k in record}


def _write_reports(store: Path, manifest: pd.DataFrame, config: PreprocessConfig) -> None:
    """Cohort QC sheet (PNG) under ``reports/`` of the store."""
    from drasclr.report.qc import cohort_qc_png

    if len(manifest):
        atomic_write_bytes(store / SHEET_FILE,
                           cohort_qc_png(manifest, config.qc_dice, config.qc_fov_fraction))


def median_core_seconds(manifest: pd.DataFrame) -> float:
    """Median summed stage seconds per ok subject (single-threaded workers: core-seconds)."""
    s = subject_seconds(manifest)
    return float(np.median(s)) if s.size else float("nan")
