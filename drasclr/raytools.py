"""Thin helpers for running library functions as Ray tasks (the only place synth touches Ray)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


@contextmanager
def ray_session(num_cpus: int | None = None, address: str | None = None) -> Iterator[None]:
    """Use the running Ray instance, or start an embedded one (and stop only that one on exit).

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
    else:
        ray.init(
            address="local",
            num_cpus=num_cpus or os.cpu_count() or 1,
            include_dashboard=False,
            log_to_driver=True,
            runtime_env={"worker_process_setup_hook": "drasclr.raytools.quiet_worker_logs"},
        )
    try:
        yield
    finally:
        ray.shutdown()


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
