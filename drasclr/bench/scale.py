"""``drasclr bench scale``: measure per-subject and per-step costs here, project a cluster run.

Measured inputs (this machine, one run): preprocessing core-seconds per subject at real-scan size
and the 2-vs-1-worker scaling efficiency (from ``drasclr bench preprocess``'s JSON, or measured
now on ``--n`` ``paper`` subjects), the core-seconds of one DrasCLR training step at the paper's
batch (B subjects at a landmark + k neighbours) and the feature-extraction throughput on CPU.
Stated inputs (flags): cohort size, cluster shape, GPU speed-up over one CPU core's step rate
(no GPU was measured unless ``--gpu-step-seconds`` is given from a GPU run).

The model (also in ``docs/scale.md``)::

    preprocess  = N * c_subject / (nodes * cpus_per_node * eff)
    train steps = epochs * L * ceil(N / B)               (one step = one landmark x B subjects)
    train       = steps * t_step_gpu / gpus              (landmark-sharded DDP, gpus workers)
    extract     = N * L / (gpus * r_gpu)                 (landmark-major batches)
    published registration = N * t_published / (parallel antsRegistration jobs)

``t_published`` is the published registration's seconds per subject measured by ``drasclr bench
preprocess`` in the same run as ``c_subject`` (its JSON); without it the comparison is left out
rather than taken from the paper's quoted minutes.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any


def _measure_train(batch: int, neighbours: int, threads: int) -> dict[str, float]:
    from drasclr.nn.speed import encoder_forward_speed, training_step_speed

    step = training_step_speed(batch_size=batch, conditionings=("loccondconv",),
                               neighbours=neighbours, queue_size=4096, steps=2, threads=threads)
    fwd = encoder_forward_speed(batch_size=128, paths=("shared",), repeats=2, threads=threads)
    return {"step_s": float(step["seconds"]["loccondconv"]),
            "step_cpu_s": float(step["cpu_seconds"]["loccondconv"]),
            "extract_patches_per_s": float(fwd["samples_per_s"]["shared"]),
            "threads": threads}


def project(m: dict[str, float], a: argparse.Namespace) -> dict[str, float]:
    """Wall-time projection (hours) from measured ``m`` and stated cluster ``a``."""
    cores = a.cpu_nodes * a.cpus_per_node
    pre_h = a.subjects * m["subject_core_s"] / (cores * m["efficiency"]) / 3600
    steps = a.epochs * a.landmarks * math.ceil(a.subjects / a.batch)
    step_gpu = a.gpu_step_seconds if a.gpu_step_seconds else m["step_cpu_s"] / a.gpu_speedup
    train_h = steps * step_gpu / a.gpus / 3600
    rate_gpu = m["extract_patches_per_s"] / max(m["threads"], 1) * a.gpu_speedup
    extract_h = a.subjects * a.landmarks / (a.gpus * rate_gpu) / 3600
    out = {"cores": cores, "preprocess_h": pre_h, "train_steps": steps,
           "train_step_gpu_s": step_gpu, "train_h": train_h, "extract_h": extract_h,
           "total_h": pre_h + train_h + extract_h}
    if m.get("published_registration_s"):
        pub_serial_h = a.subjects * m["published_registration_s"] / 3600
        out["published_registration_serial_h"] = pub_serial_h
        out["published_registration_same_cores_h"] = pub_serial_h / cores
    return out


def run_from_args(a: argparse.Namespace, say: Any = None) -> dict[str, Any]:
    """``drasclr bench scale``: measured and stated inputs and the projection (also saved as
    ``<dir>/bench_scale.json``)."""
    measured: dict[str, Any] = {}
    src = Path(a.bench_json)
    if src.is_file():
        b = json.loads(src.read_text())
        runs = {int(k): v for k, v in b["runs"].items()}
        measured["subject_core_s"] = runs[1]["median_core_s_per_subject"]
        measured["efficiency"] = min(1.0, float(b["scaling_2_vs_1"]) / 2.0)
        measured["preprocess_source"] = f"{src} (drasclr bench preprocess, {b['preset']} preset)"
        if "registration" in b:  # measured in that same run, with its accuracy
            measured["published_registration_s"] = b["registration"]["published"][
                "seconds_median"]
            measured["published_registration_note"] = b["registration"]["published"]["timing"]
            measured["published_registration_dice"] = b["registration"]["published"][
                "dice_median"]
    else:
        from drasclr.bench.preprocess import run_bench

        t0 = time.perf_counter()
        b = run_bench(Path(a.dir) / "preprocess", n_subjects=a.n, skip_reference=True)
        measured["subject_core_s"] = b["runs"][1]["median_core_s_per_subject"]
        measured["efficiency"] = min(1.0, float(b["scaling_2_vs_1"]) / 2.0)
        measured["preprocess_source"] = f"measured now ({time.perf_counter() - t0:.0f} s)"
    measured.update(_measure_train(a.batch, a.neighbours, a.threads))
    proj = project(measured, a)
    res = {"measured": measured, "stated": {k: getattr(a, k) for k in (
        "subjects", "landmarks", "epochs", "batch", "cpu_nodes", "cpus_per_node", "gpus",
        "gpu_speedup", "gpu_step_seconds")}, "projection": proj}
    Path(a.dir).mkdir(parents=True, exist_ok=True)
    (Path(a.dir) / "bench_scale.json").write_text(json.dumps(res, indent=1, default=str))
    return res


def register(sub: Any) -> None:
    """Add ``bench scale`` (printed by :mod:`drasclr.commands.bench`)."""
    p = sub.add_parser("scale", help="measure per-subject / per-step costs, project a cluster run")
    p.add_argument("--dir", default="runs/bench-scale",
                   help="output folder for bench_scale.json and any preprocessing measured now "
                        "(default runs/bench-scale)")
    p.add_argument("--bench-json", default="runs/bench-preprocess/bench_preprocess.json",
                   help="reuse drasclr bench preprocess figures (measured now when missing)")
    p.add_argument("--n", type=int, default=3,
                   help="paper subjects to measure when needed (default 3)")
    p.add_argument("--subjects", type=int, default=10_000,
                   help="stated: subjects N of the projected cohort (default 10000)")
    p.add_argument("--landmarks", type=int, default=581,
                   help="stated: landmarks L per subject (default 581)")
    p.add_argument("--epochs", type=int, default=20,
                   help="stated: pretraining epochs (default 20)")
    p.add_argument("--batch", type=int, default=128,
                   help="subjects B per training step, measured here and projected (default 128)")
    p.add_argument("--neighbours", type=int, default=2,
                   help="k neighbouring landmarks per training step (default 2)")
    p.add_argument("--threads", type=int, default=2,
                   help="torch threads of the training-step and extraction measurements "
                        "(default 2)")
    p.add_argument("--cpu-nodes", type=int, default=32,
                   help="stated: CPU nodes for preprocessing (default 32)")
    p.add_argument("--cpus-per-node", type=int, default=16,
                   help="stated: CPUs per preprocessing node (default 16)")
    p.add_argument("--gpus", type=int, default=8,
                   help="stated: GPUs for training and extraction (default 8)")
    p.add_argument("--gpu-speedup", type=float, default=50.0,
                   help="assumed GPU step rate over one CPU core (stated, not measured; "
                        "default 50)")
    p.add_argument("--gpu-step-seconds", type=float, default=None,
                   help="measured seconds per training step on one GPU, if you have it")
    p.set_defaults(bench_run=run_from_args)
