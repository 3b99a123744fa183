"""``drasclr bench NAME``: benchmarks discovered from :mod:`drasclr.bench`, printed here.

Each benchmark module runs and returns its figures (``bench_run(args, say)``, see
:mod:`drasclr.bench`); this command prints them with a ``print_<name>(res, args)`` function
below (a benchmark without one has its result printed as JSON).
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import drasclr.bench


def _say(line: str) -> None:
    """Progress lines of a running benchmark: printed at once."""
    print(line, flush=True)


def print_kernels(res: dict[str, Any], args: argparse.Namespace | None = None) -> None:
    """``drasclr bench kernels``: each timing beside its target."""
    t = res["targets_s"]
    print(f"\n== drasclr bench kernels (best of {res['repeats']} after one warm-up)")
    print(f"landmark grid on {res['atlas']}: {res['landmark_grid_s']:.3f} s, "
          f"{res['landmarks']} landmarks (target < {t['landmark_grid']} s)")
    print(f"cut 575 patches of 32^3 from 300^3 int16: {1e3 * res['cut_patches_s']:.0f} ms "
          f"(target < {1e3 * t['cut_patches']:.0f} ms)")
    print(f"resample {tuple(res['resample_shape_in'])} at 0.7 mm to 1 mm "
          f"{tuple(res['resample_shape_out'])}: {res['resample_s']:.2f} s "
          f"(target < {t['resample']} s)")


def print_preprocess(res: dict[str, Any], args: argparse.Namespace) -> None:
    """``drasclr bench preprocess``: cost, scaling, accuracy, registration and store figures."""
    pr = res["paper_run"]
    r1, r2 = res["runs"][1], res["runs"][2]
    acc, st = res["accuracy"], res["store"]
    print(f"\n== drasclr bench preprocess ({res['preset']} preset, {res['n_subjects']} subjects)")
    print(f"median core-seconds per subject (single-threaded worker): "
          f"{pr['median_core_s_per_subject']:.2f} s (target <= 15); {pr['wall_s']:.1f} s wall "
          f"for {pr['ok']} subjects incl. actor start")
    for s, v in pr["stage_seconds"].items():
        print(f"  {s:<9} p50 {v['p50']:6.2f} s   p95 {v['p95']:6.2f} s")
    print(f"scaling on these {r1['ok']} subjects: 1 worker {r1['subjects_per_s']:.3f} "
          f"subj/s ({r1['wall_s']:.1f} s), 2 workers {r2['subjects_per_s']:.3f} subj/s "
          f"({r2['wall_s']:.1f} s) -> {res['scaling_2_vs_1']:.2f}x (target >= 1.7)")
    print(f"registration on known affines ({acc['known_subjects']} subjects, own mask moved by a "
          f"random affine): landmark error mean {acc['known_error_mean_mm']:.2f} mm, max "
          f"{acc['known_error_max_mm']:.2f} mm (target <= 2); Dice min {acc['known_dice_min']:.3f}"
          f" (target >= 0.95); {acc['known_register_s_median']:.1f} s per registration")
    print(f"inter-subject vs the generator's true transform: landmark error mean "
          f"{acc['landmark_error_mean_mm']:.2f} mm, p95 {acc['landmark_error_p95_mm']:.2f} mm; "
          f"Dice with the atlas median {acc['dice_median']:.3f} (the true transform itself "
          f"reaches Dice {acc['true_transform_dice_median']:.3f}: the phantom's lungs differ "
          "between subjects beyond an affine)")
    if "registration" in res:
        rc = res["registration"]
        ours, pub = rc["ours"], rc["published"]
        print(f"registration, both settings on the same {len(rc['subjects'])} subject(s) in this "
              "run (speed | Dice with the atlas | landmark error vs the true transform):")
        for name, r in (("ours", ours), ("published", pub)):
            res_mm = f"{r['resolution_mm']} mm" if r["resolution_mm"] else "native 1 mm"
            print(f"  {name:<9} {res_mm:<11} iterations {r['iterations']}: "
                  f"{r['seconds_median']:7.2f} s | Dice median {r['dice_median']:.3f} "
                  f"(min {r['dice_min']:.3f}) | {r['landmark_error_mean_mm']:.2f} mm")
        print(f"  published timing: {pub['timing']}")
        print(f"  -> the published setting takes {rc['published_over_ours']:.1f}x our "
              f"registration time on these subjects; "
              f"{pub['seconds_median'] / pr['median_core_s_per_subject']:.1f}x our whole "
              "per-subject preprocessing (median core-seconds above)")
    print(f"store on this cohort: {st['store_bytes_ratio']:.3f}x raw int16; batch read "
          f"{st['batch_patches_per_s']:.0f} patches/s, subject read "
          f"{st['subject_patches_per_s']:.0f} patches/s (L={st['landmarks']}, S={st['subjects']})")
    ct = res["store_ct_like"]
    print("store on CT-like noisy patches (96 landmarks x 256 subjects): "
          + ", ".join(f"{k} {v:.3g}" for k, v in ct.items()))
    print(f"figures saved: {args.dir / 'bench_preprocess.json'}")


def print_reproduce(res: dict[str, Any], args: argparse.Namespace) -> None:
    """``drasclr bench reproduce``: run time, report and the image-readout table."""
    import pandas as pd

    print(f"\nreproduce finished in {res['minutes']:.1f} min; report {res['report']}")
    if res["table"] is not None:
        with pd.option_context("display.width", 200, "display.max_columns", 30):
            print(res["table"].to_string(index=False))


def print_scale(res: dict[str, Any], args: argparse.Namespace) -> None:
    """``drasclr bench scale``: measured inputs, stated cluster and the projected hours."""
    a, m, proj = args, res["measured"], res["projection"]
    print("== drasclr bench scale")
    print(f"measured here: preprocessing {m['subject_core_s']:.1f} core-s/subject "
          f"(parallel efficiency {m['efficiency']:.2f}; {m['preprocess_source']}); training step "
          f"B={a.batch}, k={a.neighbours}: {m['step_s']:.2f} s wall / {m['step_cpu_s']:.2f} "
          f"CPU-s on {m['threads']} threads; extraction {m['extract_patches_per_s']:.0f} "
          "patches/s (CPU)")
    gpu = (f"{a.gpu_step_seconds} s/step (given)" if a.gpu_step_seconds else
           f"ASSUMED {a.gpu_speedup:.0f}x one CPU core per GPU (no GPU measured)")
    print(f"cluster: {a.cpu_nodes} x {a.cpus_per_node} CPUs for preprocessing, {a.gpus} GPUs for "
          f"training ({gpu})")
    print(f"{a.subjects} subjects, {a.landmarks} landmarks, {a.epochs} epochs, batch {a.batch}:")
    print(f"  preprocessing  {proj['preprocess_h']:8.2f} h on {proj['cores']} cores")
    print(f"  pretraining    {proj['train_h']:8.2f} h ({proj['train_steps']} steps of "
          f"{proj['train_step_gpu_s']:.3f} s on {a.gpus} GPUs)")
    print(f"  extraction     {proj['extract_h']:8.2f} h")
    print(f"  total          {proj['total_h']:8.2f} h")
    if "published_registration_serial_h" in proj:
        print(f"published registration alone: {proj['published_registration_serial_h']:.0f} h "
              f"serial ({m['published_registration_s']:.0f} s/subject measured by bench "
              f"preprocess, Dice median {m['published_registration_dice']:.3f}; "
              f"{m['published_registration_note']}), "
              f"{proj['published_registration_same_cores_h']:.1f} h on the same "
              f"{proj['cores']} cores -> our whole preprocessing "
              f"{proj['published_registration_same_cores_h'] / proj['preprocess_h']:.0f}x faster")
    else:
        print("published registration: not measured in the preprocessing run used here (run "
              "`drasclr bench preprocess` without --skip-reference); no comparison printed")
    print(f"figures saved: {Path(a.dir) / 'bench_scale.json'}")


def print_science(res: dict[str, Any], args: argparse.Namespace) -> None:
    """``drasclr bench science``: the methods x metrics table, DrasCLR against each other
    method (patch probe per seed, margins against the larger spread, image metrics above), each
    method against LAA-950 (patch), and where science.json and its figure are."""
    from drasclr.bench.science import comparisons_text, density_text, markdown_table

    print(markdown_table(res["rows"]))
    print(comparisons_text(res["comparisons"], res["per_seed_patch_lesion_r2"]))
    print(density_text(res["rows"]))
    print(f"science.json: {Path(args.out) / 'science.json'} ({res['minutes']} min)")
    print(f"figure: {Path(args.out) / res['figure']}")


def print_train_step(ts: dict[str, Any]) -> None:
    """The training-step block of ``drasclr bench train``: every variant, the ratios."""
    print(f"\nfull DrasCLR training step (B={ts['batch_size']}, k={ts['neighbours']}):")
    for c in ts["samples_per_s"]:
        print(f"  {c:16s} {ts['samples_per_s'][c]:8.1f} samples/s   "
              f"{ts['samples_per_cpu_s'][c]:8.1f} samples/CPU-s")
    r_wall = ts["samples_per_s"]["loccondconv"] / ts["samples_per_s"]["none"]
    r_cpu = ts["samples_per_cpu_s"]["loccondconv"] / ts["samples_per_cpu_s"]["none"]
    print(f"  Loc-CondConv / static: {r_wall:.2f} wall, {r_cpu:.2f} CPU (target >= 0.85)")
    if "amp_speedup" in ts:
        amp = ", ".join(f"{c} {v:.2f}x" for c, v in ts["amp_speedup"].items())
        print(f"  mixed precision speed-up (wall, float32 step time / amp step time): {amp}")


def print_train(res: dict[str, Any], args: argparse.Namespace | None = None) -> None:
    """``drasclr bench train``: step, extraction, data-wait and queue-memory figures."""
    print(f"threads {res['threads']}, device {res['device']}")
    print_train_step(res["train_step"])
    ex = res["extraction"]
    print(f"\nfeature extraction (B={ex['batch_size']}, encoder forward, no grad):")
    names = {"loop": "per-sample loop", "auto": "mixed-location (one subject, all landmarks)",
             "shared": "landmark-major shared kernel", "static": "static convolutions"}
    for p in ("loop", "auto", "shared", "static"):
        print(f"  {names[p]:45s} {ex['samples_per_s'][p]:8.1f} samples/s "
              f"{ex['samples_per_cpu_s'][p]:8.1f} samples/CPU-s")
    for key in ("samples_per_s", "samples_per_cpu_s"):
        r = ex[key]
        print(f"  [{key}] mixed / loop {r['auto'] / r['loop']:.2f} (target >= 1.5); "
              f"shared / static {r['shared'] / r['static']:.2f} (target >= 0.9)")
    dw = res["data_wait"]
    print(f"\ndata wait (single-process run, B={dw['batch_size']}, {dw['steps']} steps, P=32): "
          f"{100 * dw['data_wait_fraction']:.2f} % of step time (target < 10 %), "
          f"{dw['samples_per_s']:.1f} samples/s")
    print("\nmemory bank per worker, measured in N worker processes at once:")
    for q in res["queue_memory"]:
        per = ", ".join(f"rank {r['rank']} ({r['landmarks']} landmarks) "
                        f"{r['measured_bytes'] / 2**20:.1f} MiB" for r in q["ranks"])
        print(f"  N={q['workers']}: {per} [{q['ranks'][0]['source']}] vs "
              f"L*K*D*4/N = {q['formula_bytes'] / 2**20:.1f} MiB")
    if not res["cuda_available"]:
        print("\nGPU: not available on this machine (no samples/s per GPU, no NCCL run)")
    print(f"\ntotal {res['seconds']:.0f} s")


def print_location(res: dict[str, Any], args: argparse.Namespace | None = None) -> None:
    """``drasclr bench location``: the patch probe at own / swapped / random locations."""
    print(f"\n== drasclr bench location ({res['run']}, {res['n_landmarks']} landmarks, "
          f"seed {res['seed']}): patch-probe R² at each landmark's own location, at one other "
          "landmark's (swapped) and at a random landmark's per patch")
    print(f"{'model':<34} {'conditioning':<12} {'emphysema own/swapped/random':>29} "
          f"{'CLE own/swapped/random':>23} {'features moved':>15} {'kernels move':>13}")
    for r in res["rows"]:
        km = "n/a" if r["kernel_move"] is None else f"{r['kernel_move']:.3f}"
        emph = "/".join(f"{r[f'emphysema_r2_{k}']:.3f}" for k in ("own", "swapped", "random"))
        cle = "/".join(f"{r[f'cle_r2_{k}']:.3f}" for k in ("own", "swapped", "random"))
        print(f"{r['model']:<34} {r['conditioning']:<12} {emph:>29} {cle:>23} "
              f"{r['feature_change']:15.3f} {km:>13}")
    print("own - swapped: what the right location's kernels buy; swapped - random: what one "
          "kernel per landmark (consistency) buys. The paper reports drops of 6 and 16 points "
          "(CLE, PSE accuracy) at random locations; without location conditioning all three "
          "are equal.")


def _print_json(res: Any, args: argparse.Namespace) -> None:
    print(json.dumps(res, indent=1, default=str))


PRINTERS: dict[str, Callable[[Any, argparse.Namespace], None]] = {
    "kernels": print_kernels, "location": print_location, "preprocess": print_preprocess,
    "reproduce": print_reproduce,
    "scale": print_scale, "science": print_science, "train": print_train,
}


def _bench(args: argparse.Namespace) -> int:
    res = args.bench_run(args, _say)
    PRINTERS.get(args.bench_cmd, _print_json)(res, args)
    return 0


def register(sub: Any) -> None:
    """Add ``bench`` with one sub-subcommand per module of :mod:`drasclr.bench`."""
    p = sub.add_parser("bench", help="benchmarks: figures and ratios measured in one run")
    p.set_defaults(handler=_bench)
    bench_sub = p.add_subparsers(dest="bench_cmd", required=True, help="the benchmark to run")
    for mod in sorted(pkgutil.iter_modules(drasclr.bench.__path__), key=lambda m: m.name):
        if mod.name.startswith("_"):
            continue
        module = importlib.import_module(f"drasclr.bench.{mod.name}")
        if hasattr(module, "register"):
            module.register(bench_sub)
