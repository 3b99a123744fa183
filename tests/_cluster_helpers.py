"""Multi-node scenarios for tests/test_cluster_jobs.py, each run in its own Python process.

A Ray driver can belong to one cluster only, and the test session may already run its own
embedded Ray, so the test starts this script as a subprocess::

    python tests/_cluster_helpers.py preprocess-node-loss --inputs … --atlas … --config … \
        --store … --report report.json
    python tests/_cluster_helpers.py pretrain-node-loss --work … --report report.json

It starts a ``ray.cluster_utils.Cluster`` (a head without CPUs and two 1-CPU worker nodes),
preprocesses on it in a background thread, removes one worker node from the main thread as soon
as the first subject's QC figure appears (the run is then in the middle of its subjects), adds a
replacement node, waits for the run to finish and writes a JSON report (outcome, store digest,
progress at the moment of the removal, timings). ``pretrain-node-loss`` does the same with two
Ray Train workers (one per worker node) on a synthetic store, removing a node once a checkpoint
exists and training has gone past it. Set ``RAY_TMPDIR`` to a private, short folder.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

NODE_ARGS: dict[str, Any] = {"num_cpus": 1, "object_store_memory": 200 * 2**20}


def _wait_for(predicate: Any, timeout: float, what: str) -> float:
    """Poll ``predicate`` every 50 ms; seconds waited, or TimeoutError naming ``what``."""
    t0 = time.perf_counter()
    while not predicate():
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(0.05)
    return time.perf_counter() - t0


def preprocess_node_loss(args: argparse.Namespace) -> dict[str, Any]:
    """Preprocess on a 3-node cluster and lose a worker node half way; returns the report."""
    import ray
    from ray.cluster_utils import Cluster

    from drasclr.preprocess.config import PreprocessConfig
    from drasclr.preprocess.run import QC_DIR, run_preprocess
    from drasclr.store.digest import store_digest
    from drasclr.store.reader import PatchStore

    t0 = time.perf_counter()
    cluster = Cluster(initialize_head=True,
                      head_node_args={**NODE_ARGS, "num_cpus": 0, "include_dashboard": False})
    workers = [cluster.add_node(**NODE_ARGS) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    report: dict[str, Any] = {"cluster_start_s": round(time.perf_counter() - t0, 2),
                              "cluster_cpus": ray.cluster_resources().get("CPU", 0.0)}
    store = Path(args.store)
    config = PreprocessConfig.load(args.config)
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["summary"] = run_preprocess(args.inputs, args.atlas, store, config,
                                                progress=False)
        except BaseException as err:  # noqa: BLE001 - reported to the parent process
            outcome["error"] = "".join(traceback.format_exception(err))

    try:
        t_run = time.perf_counter()
        thread = threading.Thread(target=work, name="preprocess", daemon=True)
        thread.start()
        qc = store / QC_DIR
        report["first_qc_s"] = round(_wait_for(
            lambda: not thread.is_alive() or (qc.is_dir() and any(qc.glob("*.png"))),
            args.timeout, "the first QC figure"), 2)
        report["qc_at_removal"] = len(list(qc.glob("*.png"))) if qc.is_dir() else 0
        report["run_alive_at_removal"] = thread.is_alive()
        t_rm = time.perf_counter()
        cluster.remove_node(workers[0], allow_graceful=False)  # main thread only
        report["remove_node_s"] = round(time.perf_counter() - t_rm, 2)
        cluster.add_node(**NODE_ARGS)
        thread.join(args.timeout)
        if thread.is_alive():
            raise TimeoutError(f"preprocessing did not finish within {args.timeout:.0f} s "
                               "after the node loss")
        report["run_s"] = round(time.perf_counter() - t_run, 2)
        alive = {n["NodeID"]: n["Alive"] for n in ray.nodes()}
        report["removed_node_alive"] = alive.get(workers[0].node_id)
        report["alive_nodes"] = sum(alive.values())
    finally:
        ray.shutdown()
        cluster.shutdown()
    if "error" in outcome:
        report["error"] = outcome["error"]
        return report
    summary = outcome["summary"]
    manifest = PatchStore(store).manifest
    report.update(
        n_ok=summary.n_ok, n_failed=summary.n_failed, failures=summary.failures,
        statuses=manifest.set_index("subject_id")["status"].to_dict(),
        digest=store_digest(store), total_s=round(time.perf_counter() - t0, 2),
    )
    return report


def pretrain_node_loss(args: argparse.Namespace) -> dict[str, Any]:
    """Pretrain 2 Ray Train workers on 2 worker nodes, lose one after a checkpoint; report."""
    import ray
    import torch
    from ray.cluster_utils import Cluster

    from drasclr.train.checkpoint import rank_file
    from drasclr.train.config import PretrainConfig
    from drasclr.train.loop import read_metrics
    from drasclr.train.run import pretrain
    from drasclr.train.synthetic import make_synthetic_store

    t0 = time.perf_counter()
    work = Path(args.work)
    store = make_synthetic_store(work / "store", 8, 16, 16, subject_offset_hu=200, seed=0)
    cfg = PretrainConfig(
        workers=2, cpus_per_worker=1.0, threads_per_worker=1, batch_size=8, queue_size=24,
        steps=args.steps, lr=0.1, momentum=0.99, checkpoint_every=4, log_every=2,
        max_failures=3, prefetch=2, run_name="node_loss",
    )
    out = work / "run"
    cluster = Cluster(initialize_head=True,
                      head_node_args={**NODE_ARGS, "num_cpus": 0, "include_dashboard": False})
    workers = [cluster.add_node(**NODE_ARGS) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    report: dict[str, Any] = {"cluster_start_s": round(time.perf_counter() - t0, 2)}
    outcome: dict[str, Any] = {}

    def train() -> None:
        try:
            outcome["result"] = pretrain(cfg, store, out, progress=False)
        except BaseException as err:  # noqa: BLE001 - reported to the parent process
            outcome["error"] = "".join(traceback.format_exception(err))

    def trained_past_a_checkpoint() -> bool:
        ckpts = list((out / "ray" / cfg.run_name).glob("checkpoint*"))
        steps = [m["step"] for m in read_metrics(out) if m["event"] == "train"]
        return bool(ckpts) and bool(steps) and max(steps) > cfg.checkpoint_every

    try:
        t_run = time.perf_counter()
        thread = threading.Thread(target=train, name="pretrain", daemon=True)
        thread.start()
        report["wait_s"] = round(_wait_for(
            lambda: not thread.is_alive() or trained_past_a_checkpoint(), args.timeout,
            "a training step after the first checkpoint"), 2)
        report["run_alive_at_removal"] = thread.is_alive()
        report["step_at_removal"] = max(
            [m["step"] for m in read_metrics(out) if m["event"] == "train"], default=-1)
        cluster.remove_node(workers[0], allow_graceful=False)  # main thread only
        cluster.add_node(**NODE_ARGS)
        thread.join(args.timeout)
        if thread.is_alive():
            raise TimeoutError(f"pretraining did not finish within {args.timeout:.0f} s "
                               "after the node loss")
        report["run_s"] = round(time.perf_counter() - t_run, 2)
    finally:
        ray.shutdown()
        cluster.shutdown()
    if "error" in outcome:
        report["error"] = outcome["error"]
        return report
    result = outcome["result"]
    log = read_metrics(out)
    last_start = max(i for i, m in enumerate(log) if m["event"] == "start")
    banks = [torch.load(result.checkpoint / rank_file(r), weights_only=True) for r in range(2)]
    report.update(
        steps=result.steps, target_steps=cfg.steps, resumed=result.resumed,
        starts=[{"step": m["step"], "restored_from": m.get("restored_from")}
                for m in log if m["event"] == "start"],
        train_steps=[m["step"] for m in log if m["event"] == "train"],
        train_steps_after_restart=[m["step"] for m in log[last_start:] if m["event"] == "train"],
        max_step_before_restart=max(
            [m["step"] for m in log[:last_start] if m["event"] == "train"], default=-1),
        log_every=cfg.log_every, checkpoint_every=cfg.checkpoint_every,
        bank_landmarks=[sorted(b["memory_bank"]["landmark_ids"].tolist()) for b in banks],
        n_landmarks=8, export=(out / "export" / "encoder.safetensors").is_file(),
        total_s=round(time.perf_counter() - t0, 2),
    )
    return report


def main(argv: list[str]) -> int:
    """Run one scenario; the report goes to ``--report`` as JSON."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("scenario", choices=sorted(SCENARIOS))
    p.add_argument("--inputs", help="preprocess: cohort folder")
    p.add_argument("--atlas", help="preprocess: atlas folder")
    p.add_argument("--config", help="preprocess: preprocess_config.yaml")
    p.add_argument("--store", help="preprocess: store to write")
    p.add_argument("--work", help="pretrain: folder for the synthetic store and the run")
    p.add_argument("--steps", type=int, default=40, help="pretrain: optimizer steps")
    p.add_argument("--report", required=True)
    p.add_argument("--timeout", type=float, default=300.0)
    args = p.parse_args(argv)
    report = SCENARIOS[args.scenario](args)
    Path(args.report).write_text(json.dumps(report, indent=1, default=str))
    return 1 if "error" in report else 0


SCENARIOS = {"preprocess-node-loss": preprocess_node_loss, "pretrain-node-loss": pretrain_node_loss}

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
