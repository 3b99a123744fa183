"""Thin helpers for running library functions as Ray tasks (the only place synth touches Ray)."""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


#: Lines Ray prints on the driver's stderr that are not problems of the run, as regular
#: expressions over one line. Ray Data passes its map function to every actor-pool worker as an
#: object-store argument and keeps the workers restartable, which Ray core reports as an
#: ``E ... core_worker.cc`` line (ray-project/ray#57733); the line stays in Ray's driver log.
BENIGN_STDERR: tuple[re.Pattern[bytes], ...] = (
    re.compile(rb"core_worker\.cc:\d+: Actor with class name: '.*' has constructor arguments in "
               rb"the object store and max_restarts > 0"),
)


@contextmanager
def ray_session(num_cpus: int | None = None, address: str | None = None) -> Iterator[None]:
    """Use the running Ray instance, or start an embedded one (and stop only that one on exit).

    An embedded instance keeps a quiet, truthful console: token authentication is chosen
    explicitly (so Ray does not warn that it enabled it by default), the driver logs Ray at
    WARNING and Ray Data only errors to the console, worker output stays in Ray's log files
    (errors still reach the driver as exceptions), :data:`BENIGN_STDERR` lines are dropped, and
    one line says where Ray's logs are.

    Args:
        num_cpus: logical CPUs for an embedded instance (default: all cores).
        address: connect to this cluster instead (e.g. ``auto`` under ``ray job submit``).
    """
    import ray

    if ray.is_initialized():
        yield
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address:
        ray.init(address=address, log_to_driver=True)
        try:
            yield
        finally:
            ray.shutdown()
        return
    _explicit_token_auth()
    n = num_cpus or os.cpu_count() or 1
    ray.init(
        address="local",
        num_cpus=n,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
        runtime_env={"worker_process_setup_hook": "drasclr.raytools.quiet_worker_logs"},
    )
    quiet_ray_data_console()
    print(f"[drasclr] embedded Ray ({n} CPU); Ray's own logs: {ray_log_dir()}", flush=True)
    try:
        with filtered_stderr(BENIGN_STDERR):
            yield
    finally:
        ray.shutdown()


def _explicit_token_auth() -> None:
    """Token authentication for an embedded instance, chosen explicitly (RAY_AUTH_MODE=token):
    what Ray does by default, minus its console warning that it did so. A mode the user set is
    kept. Ray caches its config at import, so it is refreshed as Ray does itself."""
    if "RAY_AUTH_MODE" in os.environ:
        return
    from ray._raylet import Config

    os.environ["RAY_AUTH_MODE"] = "token"
    Config.initialize("")


def ray_log_dir() -> str:
    """The log folder of the connected Ray session (``<temp dir>/session_<...>/logs``)."""
    import ray

    node = ray._private.worker._global_node  # Ray has no public accessor for the session folder
    return node.get_logs_dir_path() if node is not None else "<Ray temp dir>/session_latest/logs"


def quiet_ray_data_console() -> None:
    """Ray Data's console handler shows errors only; everything still goes to ``ray-data.log``."""
    import ray.data  # noqa: F401 - configures the "ray.data" logger on import

    for handler in logging.getLogger("ray.data").handlers:
        if not isinstance(handler, logging.FileHandler):
            handler.setLevel(logging.ERROR)


@contextmanager
def filtered_stderr(patterns: tuple[re.Pattern[bytes], ...]) -> Iterator[None]:
    """Drop whole lines matching ``patterns`` from this process's stderr (file descriptor 2,
    so lines written by Ray's C++ core are filtered too); everything else passes unchanged.

    A reader thread forwards what arrives at once; only a line that starts like a Ray C++ log
    line (``[``) waits for its end so it can be matched.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump() -> None:
        pending = b""
        while chunk := os.read(read_end, 65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            out = b"".join(ln + b"\n" for ln in lines if not any(p.search(ln) for p in patterns))
            if pending and not pending.startswith(b"["):
                out, pending = out + pending, b""
            if out:
                os.write(saved, out)
        if pending:
            os.write(saved, pending)

    thread = threading.Thread(target=pump, name="drasclr-stderr", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's last write end: the reader drains and stops
        thread.join(timeout=5)
        os.close(read_end)
        os.close(saved)


def quiet_worker_logs() -> None:
    """Worker setup hook of the embedded instance: silence Ray-internal polling warnings.

    Without the dashboard (not started for an embedded instance) the State API is unavailable,
    and Ray Train's placement-group cleaner warns about it every few seconds for the whole run.
    """
    import logging

    logging.getLogger(
        "ray.train.v2._internal.execution.controller.placement_group_cleaner"
    ).setLevel(logging.ERROR)


def map_tasks(
    fn: Callable[..., T],
    items: Sequence[Any],
    *,
    num_cpus: float = 1.0,
    memory_mb: float | None = None,
    desc: str = "tasks",
    progress: bool = True,
    max_in_flight: int | None = None,
    on_result: Callable[[int, T], None] | None = None,
) -> list[T]:
    """Run ``fn(item)`` as one Ray task per item; results in input order, with a progress bar.

    Args:
        fn: a picklable function of one argument.
        items: the arguments.
        num_cpus: CPUs reserved per task (Ray sets OMP threads accordingly).
        memory_mb: memory reserved per task, if known (lets Ray avoid overcommitting RAM).
        desc: progress-bar label.
        progress: show a tqdm bar.
        max_in_flight: bound on submitted-but-unfinished tasks (default 2x cluster CPUs).
        on_result: called on the driver as each result arrives (index, result).
    """
    import ray

    options: dict[str, Any] = {"num_cpus": num_cpus, "max_retries": 2}
    if memory_mb:
        options["memory"] = int(memory_mb * 2**20)
    remote = ray.remote(fn).options(**options)
    if max_in_flight is None:
        max_in_flight = max(2, int(2 * ray.cluster_resources().get("CPU", 1) / max(num_cpus, 1e-3)))
    results: dict[int, T] = {}
    pending: dict[Any, int] = {}
    next_item = 0
    with tqdm(total=len(items), desc=desc, disable=not progress, unit="subj") as bar:
        while next_item < len(items) or pending:
            while next_item < len(items) and len(pending) < max_in_flight:
                pending[remote.remote(items[next_item])] = next_item
                next_item += 1
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                idx = pending.pop(ref)
                results[idx] = ray.get(ref)
                if on_result is not None:
                    on_result(idx, results[idx])
                bar.update(1)
    return [results[i] for i in range(len(items))]
