"""The cluster path for real: ``ray job submit`` to a local head, object storage, node loss.

Every scenario runs outside this process (a ``ray start`` head, ``ray job submit``, entry-point
scripts, a multi-node helper script), so the session's embedded Ray (``ray_local``) is neither
used nor disturbed. Each Ray started here gets a private, short ``RAY_TMPDIR``; only the head
started here is stopped, by signalling its own ``ray start --block`` process (``ray stop`` would
stop every Ray on the machine).

The three runs share one tiny cohort: the submitted demo job generates it, builds the atlas and
preprocesses it; the S3 run and the node-loss run preprocess the same inputs again and must give
a byte-identical store (``store_digest``). The four runs take about five minutes on 2 cores;
they are part of the default run (the cluster path is what CI must prove), next to a quick test of
the staging of ``s3://`` arguments.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _s3 import moto_bucket

from drasclr import uri
from drasclr.store.digest import store_digest
from drasclr.store.reader import PatchStore

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
N_SUBJECTS = 4


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(ray_tmp: Path | None = None, **extra: str) -> dict[str, str]:
    """Environment for a child process: this venv first, no inherited cluster address."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ADDRESS", "RAY_JOB_ID", "RAY_API_SERVER_ADDRESS")}
    env.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0",
               RAY_DATA_DISABLE_PROGRESS_BARS="1", RAY_TRAIN_ENABLE_PREEMPTION_WATCHER="0",
               PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", **extra)
    if ray_tmp is not None:
        env["RAY_TMPDIR"] = str(ray_tmp)
    return env


def _ray_tmp() -> Path:
    """A short private folder (Ray's unix socket paths must stay under 107 characters)."""
    return Path(tempfile.mkdtemp(prefix="rj", dir="/tmp"))


def _processes_under(folder: Path) -> dict[int, str]:
    """Live processes whose command line mentions ``folder`` (the Ray we started there)."""
    found = {}
    needle = str(folder).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in cmd and state != "Z":
            found[int(entry.name)] = cmd.replace(b"\0", b" ").decode(errors="replace")[:120]
    return found


# ---------------------------------------------------------------------------- job submission
@dataclass
class JobRun:
    """What the submission fixture saw."""

    out: Path
    submit: subprocess.CompletedProcess[str]
    status: str
    head_start_s: float
    submit_s: float
    stop_s: float
    leftover: list[str]
    session_ray_ok: bool


def _start_head(tmp: Path) -> tuple[subprocess.Popen[bytes], int, float]:
    """``ray start --head --block`` on loopback with the job server; (process, port, seconds)."""
    port, dash = _free_port(), _free_port()
    # every fixed default port gets a free one: other Ray instances may run on this machine
    ports = [f"--{name}={_free_port()}" for name in (
        "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port",
        "metrics-export-port", "ray-client-server-port")]
    log = (tmp / "head.log").open("wb")
    t0 = time.perf_counter()
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
         f"--port={port}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", *ports,
         "--num-cpus=2", f"--temp-dir={tmp}", "--include-dashboard=true", "--disable-usage-stats"],
        env=_env(tmp, RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0"),  # SIGTERM: stop at once
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{dash}/api/version"
    while True:
        if head.poll() is not None:
            raise RuntimeError(f"ray start exited with {head.returncode}: "
                               f"{(tmp / 'head.log').read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    break
        except OSError:
            pass
        if time.perf_counter() - t0 > 180:
            head.terminate()
            raise TimeoutError(f"job server at {url} not up after 180 s")
        time.sleep(0.5)
    return head, dash, time.perf_counter() - t0


def _stop_head(head: subprocess.Popen[bytes], tmp: Path) -> tuple[float, list[str]]:
    """SIGTERM our ``ray start --block`` (it stops the processes it started); leftovers killed."""
    t0 = time.perf_counter()
    head.send_signal(signal.SIGTERM)
    try:
        head.wait(timeout=60)
    except subprocess.TimeoutExpired:
        head.kill()
        head.wait(timeout=30)
    deadline = time.perf_counter() + 30
    left = _processes_under(tmp)
    while left and time.perf_counter() < deadline:
        time.sleep(0.5)
        left = _processes_under(tmp)
    for pid in left:  # only processes of the head started here
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return time.perf_counter() - t0, list(left.values())


@pytest.fixture(scope="module")
def job_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JobRun]:
    """Start a head, submit ``ray_jobs/demo_tiny.py`` with ``--working-dir``, stop the head."""
    import ray

    session_ray = ray.is_initialized()
    out = tmp_path_factory.mktemp("job") / "out"
    tmp = _ray_tmp()
    head, dash, head_s = _start_head(tmp)
    submission = f"drasclr-demo-{uuid.uuid4().hex[:8]}"
    runtime_env = {"env_vars": {"RAY_DATA_DISABLE_PROGRESS_BARS": "1",
                                "RAY_USAGE_STATS_ENABLED": "0"},
                   "excludes": [".git", ".venv*", ".mypy_cache", ".ruff_cache", "runs"]}
    env = _env(tmp, RAY_API_SERVER_ADDRESS=f"http://127.0.0.1:{dash}")
    try:
        cmd = [str(BIN / "ray"), "job", "submit", "--submission-id", submission,
               "--working-dir", str(REPO), "--runtime-env-json", json.dumps(runtime_env), "--",
               "python", "ray_jobs/demo_tiny.py", "--out", str(out), "--n-subjects",
               str(N_SUBJECTS)]
        t0 = time.perf_counter()
        while True:  # the job server may answer before the node's agent has registered
            submit = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=420,
                                    cwd=REPO)
            if ("No available agent" not in submit.stderr + submit.stdout
                    or time.perf_counter() - t0 > 90):
                break
            time.sleep(2)
        submit_s = time.perf_counter() - t0
        status = subprocess.run([str(BIN / "ray"), "job", "status", submission],
                                check=False, env=env,
                                capture_output=True, text=True, timeout=60).stdout
    finally:
        stop_s, leftover = _stop_head(head, tmp)
        shutil.rmtree(tmp, ignore_errors=True)
    session_ok = (not session_ray) or (ray.is_initialized()
                                       and ray.cluster_resources().get("CPU", 0) > 0)
    yield JobRun(out, submit, status, head_s, submit_s, stop_s, leftover, session_ok)


def test_job_submission_runs_the_tiny_pipeline(job_run: JobRun) -> None:
    print(f"head start {job_run.head_start_s:.1f} s, submit->done {job_run.submit_s:.1f} s, "
          f"stop {job_run.stop_s:.1f} s")
    log = job_run.submit.stdout[-4000:] + job_run.submit.stderr[-4000:]
    assert job_run.submit.returncode == 0, log
    assert "succeeded" in job_run.status, job_run.status  # "Job '<id>' succeeded"
    assert "demo_tiny: done" in job_run.submit.stdout, log
    # outputs of the three stages, written by the job on the cluster
    store = PatchStore(job_run.out / "store")
    m = store.manifest
    assert sorted(m["subject_id"]) == [f"SYN{i:05d}" for i in range(N_SUBJECTS)]
    assert (m["status"] == "ok").all(), m[["subject_id", "status", "error"]]
    assert len(list((job_run.out / "store" / "qc").glob("*.png"))) == N_SUBJECTS
    assert (job_run.out / "atlas" / "atlas.json").is_file()
    summary = json.loads((job_run.out / "demo_summary.json").read_text())
    assert summary["preprocess"]["ok"] == N_SUBJECTS and summary["n_landmarks"] > 0
    # only our head went away
    assert job_run.leftover == [], job_run.leftover
    assert job_run.session_ray_ok


# ---------------------------------------------------------------------------- object storage
@pytest.fixture(scope="module")
def bucket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``s3://drasclr-jobs`` on a moto S3 server on 127.0.0.1; the env points botocore at it."""
    with moto_bucket(tmp_path_factory.mktemp("aws"), "drasclr-jobs") as url:
        yield url


def _storage_module() -> Any:
    """``ray_jobs/_storage.py`` (ray_jobs is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("_storage", REPO / "ray_jobs" / "_storage.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_staged_argv_stages_remote_locations(bucket: str, tmp_path: Path) -> None:
    staged_argv = _storage_module().staged_argv
    local_in = tmp_path / "in"
    (local_in / "images").mkdir(parents=True)
    (local_in / "images" / "a.nii.gz").write_bytes(b"scan-a")
    uri.put(local_in, f"{bucket}/stage/in", marker=False)  # inputs need no marker
    store = f"{bucket}/stage/store"
    reads, writes = ("--inputs", "--atlas"), ("--store",)

    # local paths pass through; unknown options are kept
    argv = ["--inputs", str(local_in), "--quiet", "--store=/x/store"]
    with staged_argv(argv, reads=reads, writes=writes) as got:
        assert got == ["--quiet", "--inputs", str(local_in), "--store", "/x/store"]

    # remote input downloaded; remote store created, uploaded with its marker on success
    with staged_argv(["--inputs", f"{bucket}/stage/in", f"--store={store}"],
                     reads=reads, writes=writes) as got:
        local = dict(zip(got[::2], got[1::2]))
        assert Path(local["--inputs"], "images", "a.nii.gz").read_bytes() == b"scan-a"
        Path(local["--store"]).mkdir()
        Path(local["--store"], "manifest.parquet").write_bytes(b"v1")
    assert uri.is_complete(store) and "manifest.parquet" in uri.read_marker(store)["files"]

    # resume: the store comes down; a failing block uploads nothing
    with pytest.raises(RuntimeError, match="boom"),  \
            staged_argv(["--store", store], reads=reads, writes=writes) as got:
        assert Path(got[1], "manifest.parquet").read_bytes() == b"v1"
        Path(got[1], "manifest.parquet").write_bytes(b"v2")
        raise RuntimeError("boom")
    assert uri.get(store, tmp_path / "after").joinpath("manifest.parquet").read_bytes() == b"v1"

    # an output without its marker (interrupted upload) is refused unless overwritten
    uri.put(local_in, f"{bucket}/stage/broken", marker=False)
    with pytest.raises(uri.RemoteError, match="incomplete"), \
            staged_argv(["--store", f"{bucket}/stage/broken"], reads=reads, writes=writes):
        pass
    with staged_argv(["--store", f"{bucket}/stage/broken", "--overwrite"],
                     reads=reads, writes=writes) as got:
        assert not Path(got[-1]).exists()  # nothing downloaded
        Path(got[-1]).mkdir()
        Path(got[-1], "zarr.json").write_text("{}")
    assert uri.listdir(f"{bucket}/stage/broken", recursive=True) == [
        uri.SUCCESS_MARKER, "zarr.json"]


def _preprocess_job(*args: str, ray_tmp: Path) -> subprocess.CompletedProcess[str]:
    """``python ray_jobs/preprocess.py …`` with an embedded 2-CPU Ray."""
    return subprocess.run(
        [sys.executable, "ray_jobs/preprocess.py", *args, "--num-cpus", "2", "--quiet"],
        check=False, env=_env(ray_tmp), capture_output=True, text=True, timeout=400, cwd=REPO)


def test_s3_end_to_end(job_run: JobRun, bucket: str, tmp_path: Path) -> None:
    src = job_run.out
    uri.put(src / "cohort", f"{bucket}/in/cohort")
    uri.put(src / "atlas", f"{bucket}/in/atlas")
    uri.put(src / "store" / "preprocess_config.yaml", f"{bucket}/in/preprocess_config.yaml")
    store_uri = f"{bucket}/stores/tiny"
    args = ("--inputs", f"{bucket}/in/cohort", "--atlas", f"{bucket}/in/atlas",
            "--config", f"{bucket}/in/preprocess_config.yaml", "--store", store_uri)
    ray_tmp = _ray_tmp()
    try:
        t0 = time.perf_counter()
        first = _preprocess_job(*args, ray_tmp=ray_tmp)
        t1 = time.perf_counter()
        assert first.returncode == 0, first.stderr[-4000:]
        assert f"ok {N_SUBJECTS}, failed 0" in first.stdout, first.stdout
        assert uri.is_complete(store_uri)
        listed = uri.read_marker(store_uri)["files"]
        assert "manifest.parquet" in listed and "zarr.json" in listed
        local = uri.get(store_uri, tmp_path / "store", require_complete=True)
        m = PatchStore(local).manifest
        assert (m["status"] == "ok").all() and len(m) == N_SUBJECTS
        digest = store_digest(local)
        assert digest == store_digest(src / "store")  # same bytes as the submitted job's store
        # a re-run downloads the store, finds every subject done, publishes it unchanged
        second = _preprocess_job(*args, ray_tmp=ray_tmp)
        t2 = time.perf_counter()
        assert second.returncode == 0, second.stderr[-4000:]
        assert f"ok 0, failed 0, skipped {N_SUBJECTS}" in second.stdout, second.stdout
        again = uri.get(store_uri, tmp_path / "again", require_complete=True)
        assert store_digest(again) == digest
        # an interrupted upload (files, no marker) is refused, not resumed from
        uri.put(src / "atlas", f"{bucket}/stores/broken", marker=False)
        broken = _preprocess_job(*args[:-1], f"{bucket}/stores/broken", ray_tmp=ray_tmp)
        assert broken.returncode == 2 and "incomplete" in broken.stderr, broken.stderr[-2000:]
        assert not uri.is_complete(f"{bucket}/stores/broken")
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    print(f"s3 first run {t1 - t0:.1f} s, resumed run {t2 - t1:.1f} s")


# ---------------------------------------------------------------------------- node loss
def test_node_loss_during_preprocessing(job_run: JobRun, tmp_path: Path) -> None:
    src = job_run.out
    report_path = tmp_path / "report.json"
    ray_tmp = _ray_tmp()
    try:
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, str(REPO / "tests" / "_cluster_helpers.py"), "preprocess-node-loss",
             "--inputs", str(src / "cohort"), "--atlas", str(src / "atlas"),
             "--config", str(src / "store" / "preprocess_config.yaml"),
             "--store", str(tmp_path / "store"), "--report", str(report_path)],
            check=False, env=_env(ray_tmp), capture_output=True, text=True, timeout=540,
            cwd=REPO)
        seconds = time.perf_counter() - t0
        leftover = _processes_under(ray_tmp)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert report_path.is_file(), proc.stderr[-4000:]
    report = json.loads(report_path.read_text())
    print(f"node-loss run {seconds:.1f} s: {report}")
    assert proc.returncode == 0 and "error" not in report, report.get("error", proc.stderr[-4000:])
    assert report["cluster_cpus"] == 2.0
    # the node went away in the middle of the run ...
    assert report["run_alive_at_removal"] and report["qc_at_removal"] < N_SUBJECTS
    # ... and nothing was lost: every subject ok, the store identical to an uninterrupted run
    assert report["n_ok"] == N_SUBJECTS and report["n_failed"] == 0
    assert set(report["statuses"].values()) == {"ok"} and len(report["statuses"]) == N_SUBJECTS
    assert report["digest"] == store_digest(src / "store")
    assert leftover == {}, leftover


def test_node_loss_during_pretraining(tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    ray_tmp = _ray_tmp()
    steps = 16
    try:
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, str(REPO / "tests" / "_cluster_helpers.py"), "pretrain-node-loss",
             "--work", str(tmp_path / "work"), "--steps", str(steps),
             "--report", str(report_path)],
            check=False, env=_env(ray_tmp), capture_output=True, text=True, timeout=540,
            cwd=REPO)
        seconds = time.perf_counter() - t0
        leftover = _processes_under(ray_tmp)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert report_path.is_file(), proc.stderr[-4000:]
    report = json.loads(report_path.read_text())
    print(f"pretrain node-loss run {seconds:.1f} s: "
          f"{ {k: v for k, v in report.items() if k != 'train_steps'} }")
    assert proc.returncode == 0 and "error" not in report, report.get("error", proc.stderr[-4000:])
    # the node went away after a checkpoint, in the middle of training ...
    assert report["run_alive_at_removal"]
    assert report["checkpoint_every"] < report["step_at_removal"] < steps
    # ... the worker group restarted once from the last checkpoint (at most one interval lost)
    starts = report["starts"]
    assert len(starts) == 2 and starts[0]["step"] == 0, starts
    restart = starts[1]["step"]
    assert starts[1]["restored_from"] and restart % report["checkpoint_every"] == 0
    assert 0 < restart < steps
    assert 0 <= report["max_step_before_restart"] - restart <= report["checkpoint_every"]
    # ... and ran every remaining step to the end, with both workers' memory banks complete
    every = report["log_every"]
    assert report["train_steps_after_restart"] == list(range(restart + every, steps + 1, every))
    assert report["steps"] == steps and report["export"]
    ids = report["bank_landmarks"]
    assert set(ids[0]).isdisjoint(ids[1]) and sorted(ids[0] + ids[1]) == list(range(8))
    assert leftover == {}, leftover


def test_run_job_stages_s3_labels_and_publishes_nothing_on_bad_labels(bucket: str,
                                                                      tmp_path: Path) -> None:
    """``ray_jobs/run.py`` takes ``s3://`` scans and labels like the other entry points; a labels
    table in the wrong unit stops it with the column and row named, and ``--out`` stays empty."""
    scans = tmp_path / "scans"
    scans.mkdir()
    for sid in ("S1", "S2", "S3"):
        (scans / f"{sid}.nii.gz").write_bytes(b"not read before the labels check")
    uri.put(scans, f"{bucket}/run/scans", marker=False)
    labels = tmp_path / "labels.csv"
    labels.write_text("subject_id,FEV1/FVC\nS1,0.7\nS2,61\nS3,0.5\n")
    uri.put(labels, f"{bucket}/run/labels.csv")
    out = f"{bucket}/run/out"
    ray_tmp = _ray_tmp()
    try:
        proc = subprocess.run(
            [sys.executable, "ray_jobs/run.py", "--inputs", f"{bucket}/run/scans", "--labels",
             f"{bucket}/run/labels.csv", "--out", out, "--num-cpus", "2", "--quiet"],
            check=False, env=_env(ray_tmp), capture_output=True, text=True, timeout=400,
            cwd=REPO)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "column 'FEV1/FVC' (fev1_fvc), row 2 (subject 'S2'): 61" in proc.stderr
    assert "staged --labels" in proc.stderr
    assert not uri.is_complete(out)
