"""The embedded Ray session keeps a quiet, truthful console."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from drasclr.raytools import BENIGN_STDERR, filtered_stderr

BENIGN = (b"[2026-12-02 05:56:05,030 E 10384 10384] core_worker.cc:2465: Actor with class name: "
          b"'MapWorker(Map(_SubjectWorker))' and ID: '4705' has constructor arguments in the "
          b"object store and max_restarts > 0. If the arguments in the object store go out of "
          b"scope or are lost, the actor restart will fail.\n")


def test_filtered_stderr_drops_only_the_listed_lines(capfd: pytest.CaptureFixture[str]) -> None:
    with filtered_stderr(BENIGN_STDERR):
        os.write(2, b"before\n")
        os.write(2, BENIGN)
        os.write(2, b"[2026-12-02 05:56:05,031 E 1 1] raylet.cc:1: a real error\n")
        os.write(2, b"\rprogress 50%")  # a progress bar: passed on at once, no newline needed
        print("python stderr", file=sys.stderr, flush=True)
    err = capfd.readouterr().err
    assert "constructor arguments" not in err
    assert "before\n" in err and "a real error" in err and "python stderr" in err
    assert "\rprogress 50%" in err
    os.write(2, b"after\n")  # stderr is restored
    assert capfd.readouterr().err == "after\n"


SCRIPT = """
import ray
from drasclr.raytools import ray_session

class AddOne:
    def __call__(self, row):
        return {"x": row["id"] + 1}

with ray_session(num_cpus=2):
    ds = ray.data.range(4).map(AddOne, compute=ray.data.ActorPoolStrategy(size=1), num_cpus=1)
    print(sorted(r["x"] for r in ds.iter_rows()))
"""


def test_embedded_session_console_has_no_ray_warnings() -> None:
    """A fresh embedded session (token auth left to Ray's default) running a Ray Data actor
    pool: the answer and one line naming Ray's log folder, nothing else from Ray."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_AUTH_MODE", "RAY_DATA_DISABLE_PROGRESS_BARS")}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          check=False, env=env, timeout=300,
                          cwd=Path(__file__).resolve().parents[1])
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "[1, 2, 3, 4]" in proc.stdout  # range(4) + 1
    logs = [ln for ln in proc.stdout.splitlines() if "Ray's own logs:" in ln]
    assert len(logs) == 1 and Path(logs[0].rsplit(": ", 1)[1]).is_dir()
    for bad in ("WARNING", "Warning", " E ", "Traceback", "deprecated", "INFO"):
        assert bad not in out, f"{bad!r} in console:\n{out}"
