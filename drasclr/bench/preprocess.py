"""``drasclr bench preprocess``: per-subject cost, accuracy, scaling and store figures in one run.

Measured in one invocation (figures printed and written to ``<dir>/bench_preprocess.json``):

1. A ``paper``-preset synthetic cohort (real-scan size) is generated (or reused); subject 0 is
   the atlas (its lungs segmented, its landmark grid built).
2. The cohort is preprocessed with 1 Ray worker: median core-seconds per subject (sum of the
   single-threaded stage timings), p50/p95 per stage.
3. Scaling: the same cohort again into a fresh store with 2 workers, on the same Ray instance
   (wall time includes hashing, actor start and the driver's block writes): subjects/s of each
   and their ratio.
4. Registration accuracy, two ways. (a) Known transforms: each subject's own lung mask is
   resampled through a random affine (rotation up to 10 deg, scale 0.9-1.1, shift up to 20 mm)
   and registered back: landmark error against the known inverse and Dice. (b) Inter-subject,
   against the generator's truth: landmark error of ``T_i(l_j)`` vs ``C_i C_atlas^-1``
   (canonical-to-world transforms) and Dice; the Dice that the *true* transform itself reaches
   is printed beside it, since the phantom's anatomy is not an affine copy between subjects.
4. Our registration and the published one (DESIGN.md 6 parameters at 1 mm, antspyx) on the same
   subjects' lung masks in the same run, each speed printed with its Dice and landmark error
   (:func:`registration_comparison`; ``--iteration-fraction`` runs fewer published iterations
   and says how the time was extrapolated).
5. Store size vs raw int16 and read throughput of the two access patterns (training batch of
   128 subjects at a landmark + 2 neighbours; one subject's full landmark set), on this cohort's
   store and on a larger CT-like synthetic store (:func:`drasclr.bench.store.bench_store`).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np


def _true_transform_dice(cohort: Path, sid: str, atlas_subject: str, t_true: np.ndarray) -> float:
    """Dice of the subject's truth lungs warped by the true transform with the atlas's truth."""
    from drasclr.imaging.io import read_mask
    from drasclr.imaging.register import Registration, dice, warp_mask_to_fixed
    from drasclr.imaging.resample import resample_isotropic

    fixed = resample_isotropic(read_mask(cohort / "truth" / f"{atlas_subject}_lungs.nii.gz"),
                               1.0, order=0, fill=0)
    moving = resample_isotropic(read_mask(cohort / "truth" / f"{sid}_lungs.nii.gz"), 1.0,
                                order=0, fill=0)
    w = warp_mask_to_fixed(Registration.from_matrix(t_true), moving.array, moving.geometry,
                           fixed.array.shape, fixed.geometry)
    return dice(w, fixed.array)


def _landmark_errors(store: Path, synth_manifest: Any, atlas_subject: str,
                     cohort: Path | None = None) -> dict[str, float]:
    from drasclr.store.reader import PatchStore

    ps = PatchStore(store)
    man = ps.manifest.set_index("subject_id")
    truth = synth_manifest.set_index("subject_id")
    c_atlas = np.asarray(truth.loc[atlas_subject, "canonical_to_world"]).reshape(4, 4)
    errs, dices, true_dices = [], [], []
    for sid in ps.subject_ids:
        if sid == atlas_subject:
            continue
        c_i = np.asarray(truth.loc[sid, "canonical_to_world"]).reshape(4, 4)
        t_true = c_i @ np.linalg.inv(c_atlas)
        t_reg = np.asarray(man.loc[sid, "transform"]).reshape(4, 4)
        lm = ps.landmarks
        p_true = lm @ t_true[:3, :3].T + t_true[:3, 3]
        p_reg = lm @ t_reg[:3, :3].T + t_reg[:3, 3]
        errs.append(np.linalg.norm(p_true - p_reg, axis=1))
        dices.append(float(man.loc[sid, "dice"]))
        if cohort is not None:
            true_dices.append(_true_transform_dice(cohort, sid, atlas_subject, t_true))
    e = np.concatenate(errs) if errs else np.array([np.nan])
    return {"landmark_error_mean_mm": float(e.mean()), "landmark_error_p95_mm":
            float(np.percentile(e, 95)), "landmark_error_max_mm": float(e.max()),
            "dice_min": float(min(dices)) if dices else float("nan"),
            "dice_median": float(np.median(dices)) if dices else float("nan"),
            "true_transform_dice_median": float(np.median(true_dices)) if true_dices
            else float("nan")}


def _random_affine(rng: np.random.Generator, centre: np.ndarray) -> np.ndarray:
    """4x4 affine about ``centre``: rotations up to 10 deg, scales 0.9-1.1, shifts up to 20 mm."""
    from drasclr.synth.phantom import rotation_matrix

    a = rotation_matrix(rng.uniform(-10, 10, 3)) @ np.diag(rng.uniform(0.9, 1.1, 3))
    m = np.eye(4)
    m[:3, :3] = a
    m[:3, 3] = centre - a @ centre + rng.uniform(-20, 20, 3)
    return m


def _known_affine_accuracy(cohort: Path, subjects: list[str], atlas_dir: Path,
                           seed: int = 0) -> dict[str, float]:
    """Register each subject's lung mask to a copy of itself moved by a known affine."""
    import SimpleITK as sitk

    from drasclr.imaging.atlas import load_atlas
    from drasclr.imaging.geometry import to_sitk
    from drasclr.imaging.io import read_ct
    from drasclr.imaging.register import dice, map_landmarks, register_affine, warp_mask_to_fixed
    from drasclr.imaging.resample import clipped_ct
    from drasclr.imaging.segment import segment_lungs
    from drasclr.preprocess.config import PreprocessConfig

    cfg = PreprocessConfig()
    atlas = load_atlas(atlas_dir)
    rng = np.random.default_rng(seed)
    errs, dices, secs = [], [], []
    for sid in subjects:
        iso = clipped_ct(read_ct(cohort / "images" / f"{sid}.nii.gz"))
        mask = segment_lungs(iso, cfg.segment)
        pts = np.argwhere(mask)[:, ::-1].astype(float)  # x, y, z voxel
        centre = iso.geometry.index_to_world(pts.mean(axis=0))
        known = _random_affine(rng, centre)  # moved(x) = mask(known(x))
        tx = sitk.AffineTransform(3)
        tx.SetMatrix(known[:3, :3].ravel().tolist())
        tx.SetTranslation(known[:3, 3].tolist())
        src = to_sitk(mask.astype(np.uint8), iso.geometry)
        moved = sitk.GetArrayFromImage(sitk.Resample(src, src, tx, sitk.sitkNearestNeighbor, 0))
        t0 = time.perf_counter()
        reg = register_affine(moved, iso.geometry, mask, iso.geometry, cfg.register)
        secs.append(time.perf_counter() - t0)
        # landmarks of this subject: the atlas grid carried to the subject's lung centre
        lm = atlas.landmarks_mm - atlas.landmarks_mm.mean(axis=0) + centre
        truth = lm @ np.linalg.inv(known)[:3, :3].T + np.linalg.inv(known)[:3, 3]
        errs.append(np.linalg.norm(map_landmarks(reg, lm) - truth, axis=1))
        warped = warp_mask_to_fixed(reg, moved, iso.geometry, mask.shape, iso.geometry)
        dices.append(dice(warped, mask))
    e = np.concatenate(errs)
    return {"known_error_mean_mm": float(e.mean()), "known_error_max_mm": float(e.max()),
            "known_dice_min": float(min(dices)), "known_dice_median": float(np.median(dices)),
            "known_register_s_median": float(np.median(secs)), "known_subjects": len(subjects)}


def _scaled_iterations(cfg: Any, fraction: float) -> Any:
    """``cfg`` with every level's iteration cap multiplied by ``fraction`` (at least 1)."""
    return cfg.replace(iterations=tuple(max(1, round(i * fraction)) for i in cfg.iterations))


def registration_comparison(
    cohort: Path,
    atlas_dir: Path,
    subjects: list[str],
    synth_manifest: Any,
    atlas_subject: str,
    iteration_fraction: float = 1.0,
) -> dict[str, Any]:
    """Our registration and the published one on the same subjects, same masks, same run.

    Each subject is read and segmented as preprocessing does; both settings register that one
    lung mask to the atlas. Per setting: seconds per subject (median), Dice with the atlas mask
    (registration QC) and landmark error against the generator's true transform
    (``C_i C_atlas^-1``). ``iteration_fraction`` < 1 runs the published setting with that
    fraction of its iterations and with half of it, fits ``seconds = a + b * fraction`` through
    the two and extrapolates to the full count (said so in ``published.timing``); its accuracy is
    that of the reduced run.
    """
    from drasclr.imaging.atlas import load_atlas
    from drasclr.imaging.io import read_ct
    from drasclr.imaging.register import RegisterConfig, register_affine, registration_qc
    from drasclr.imaging.resample import clipped_ct
    from drasclr.imaging.segment import segment_lungs
    from drasclr.preprocess.config import PreprocessConfig

    if not 0.0 < iteration_fraction <= 1.0:
        raise ValueError(f"iteration_fraction must lie in (0, 1], got {iteration_fraction}")
    pp = PreprocessConfig()
    atlas = load_atlas(atlas_dir)
    truth = synth_manifest.set_index("subject_id")
    c_atlas = np.asarray(truth.loc[atlas_subject, "canonical_to_world"]).reshape(4, 4)
    reduced = iteration_fraction < 1.0
    settings = {"ours": pp.register,
                "published": _scaled_iterations(RegisterConfig.published(), iteration_fraction)}
    if reduced:
        settings["published_half"] = _scaled_iterations(RegisterConfig.published(),
                                                         iteration_fraction / 2)
    rows: dict[str, dict[str, list[float]]] = {k: {"s": [], "dice": [], "err": []}
                                               for k in settings}
    for sid in subjects:
        iso = clipped_ct(read_ct(cohort / "images" / f"{sid}.nii.gz"), pp.spacing_mm)
        mask = segment_lungs(iso, pp.segment)
        t_true = np.asarray(truth.loc[sid, "canonical_to_world"]).reshape(4, 4) @ np.linalg.inv(
            c_atlas)
        lm = atlas.landmarks_mm
        p_true = lm @ t_true[:3, :3].T + t_true[:3, 3]
        for name, cfg in settings.items():
            t0 = time.perf_counter()
            reg = register_affine(mask, iso.geometry, atlas.mask, atlas, cfg)
            rows[name]["s"].append(time.perf_counter() - t0)
            qc = registration_qc(reg, mask, iso.geometry, atlas.mask, atlas, lm, pp.patch_size)
            rows[name]["dice"].append(float(qc["dice"]))
            p_reg = lm @ reg.matrix[:3, :3].T + reg.matrix[:3, 3]
            rows[name]["err"].append(float(np.linalg.norm(p_reg - p_true, axis=1).mean()))

    def summary(name: str) -> dict[str, Any]:
        r = rows[name]
        return {"seconds_median": float(np.median(r["s"])), "seconds": r["s"],
                "dice_median": float(np.median(r["dice"])), "dice_min": float(min(r["dice"])),
                "landmark_error_mean_mm": float(np.mean(r["err"])),
                "iterations": list(settings[name].iterations),
                "resolution_mm": settings[name].resolution_mm}

    out: dict[str, Any] = {"subjects": subjects, "iteration_fraction": iteration_fraction,
                           "ours": summary("ours"), "published": summary("published")}
    pub = out["published"]
    if reduced:
        half = summary("published_half")
        t_f, t_h = pub["seconds_median"], half["seconds_median"]
        slope = (t_f - t_h) / (iteration_fraction / 2)
        pub["measured_seconds_median"] = t_f
        pub["seconds_median"] = t_f + slope * (1.0 - iteration_fraction)
        pub["timing"] = (
            f"REDUCED: ran {iteration_fraction:.0%} ({pub['iterations']}) and "
            f"{iteration_fraction / 2:.0%} ({half['iterations']}) of the published iterations "
            f"({t_f:.1f} s, {t_h:.1f} s) and extrapolated linearly to the full "
            f"{list(RegisterConfig.published().iterations)}; assumes every iteration runs "
            "(early convergence would make the full run faster); accuracy is of the reduced run"
        )
    else:
        pub["timing"] = "measured at the full published iterations"
    out["published_over_ours"] = pub["seconds_median"] / out["ours"]["seconds_median"]
    return out


def _store_reads(store: Path, batch: int = 128) -> dict[str, float]:
    from drasclr.store.reader import PatchStore

    ps = PatchStore(store)
    L, S = ps.num_landmarks, ps.num_subjects
    idx = ps.store_indices
    rng = np.random.default_rng(0)
    n_b, t_b = 0, 0.0
    for _ in range(8):
        j = int(rng.integers(L))
        lms = np.array([j, *ps.neighbours[j, :2]])
        subj = np.sort(rng.choice(idx, min(batch, S), replace=False))
        t0 = time.perf_counter()
        out = ps.read_landmarks_batch(lms, subj)
        t_b += time.perf_counter() - t0
        n_b += int(np.prod(out.shape[:2]))
    n_s, t_s = 0, 0.0
    for s in rng.choice(idx, min(8, S), replace=False):
        t0 = time.perf_counter()
        out = ps.read_subject(int(s))
        t_s += time.perf_counter() - t0
        n_s += out.shape[0]
    raw = L * S * ps.patch_size**3 * 2
    size = sum(p.stat().st_size for p in (store / "patches").rglob("*") if p.is_file())
    return {"store_bytes_ratio": size / raw, "batch_patches_per_s": n_b / t_b,
            "subject_patches_per_s": n_s / t_s, "landmarks": L, "subjects": S}


def run_bench(
    out: Path,
    n_subjects: int = 10,
    preset: str = "paper",
    reference_subjects: int = 2,
    iteration_fraction: float = 1.0,
    skip_reference: bool = False,
) -> dict[str, Any]:
    """Run the whole benchmark; returns the figures (also saved as JSON)."""
    from drasclr.bench.store import bench_store
    from drasclr.imaging.atlas import save_atlas
    from drasclr.preprocess.config import PreprocessConfig
    from drasclr.preprocess.run import median_core_seconds, run_preprocess
    from drasclr.preprocess.subject import atlas_from_ct, stage_seconds
    from drasclr.raytools import ray_session
    from drasclr.store.reader import PatchStore
    from drasclr.synth.cohort import generate_cohort
    from drasclr.synth.config import preset_config
    from drasclr.tables import read_frame

    out.mkdir(parents=True, exist_ok=True)
    res: dict[str, Any] = {"preset": preset, "n_subjects": n_subjects}
    cohort = out / f"cohort-{preset}-{n_subjects}"
    with ray_session(num_cpus=2):
        t0 = time.perf_counter()
        generate_cohort(preset_config(preset, n_subjects=n_subjects), cohort, progress=True)
        res["synth_seconds"] = time.perf_counter() - t0
    synth = read_frame(cohort / "manifest.parquet", "synth_manifest")
    atlas_subject = str(synth["subject_id"].iloc[0])
    cfg = PreprocessConfig()
    atlas_dir = out / "atlas"
    if not (atlas_dir / "atlas.json").exists():
        save_atlas(atlas_from_ct(cohort / "images" / f"{atlas_subject}.nii.gz", cfg), atlas_dir)
    runs = {}
    with ray_session(num_cpus=2):  # one Ray instance for both runs: its start is not timed
        for workers in (1, 2):
            store = out / f"store-w{workers}"
            t0 = time.perf_counter()
            s = run_preprocess(cohort, atlas_dir, store, cfg.replace(workers=workers),
                               overwrite=True, progress=True)
            wall = time.perf_counter() - t0
            man = PatchStore(store).manifest
            runs[workers] = {"wall_s": wall, "subjects_per_s": s.n_ok / wall, "ok": s.n_ok,
                             "failed": s.n_failed,
                             "median_core_s_per_subject": median_core_seconds(man),
                             "stage_seconds": stage_seconds(man)}
    res["paper_run"] = runs[1]
    res["runs"] = runs
    res["scaling_2_vs_1"] = runs[2]["subjects_per_s"] / runs[1]["subjects_per_s"]
    res["accuracy"] = _landmark_errors(out / "store-w1", synth, atlas_subject, cohort)
    others = [str(x) for x in synth["subject_id"] if str(x) != atlas_subject]
    res["accuracy"].update(_known_affine_accuracy(cohort, others, atlas_dir))
    res["store"] = _store_reads(out / "store-w1")
    res["store_ct_like"] = {
        k: v for k, v in bench_store(out / "bench_store", num_landmarks=96, num_subjects=256,
                                     baselines=False)["layouts"]["store"].items()
        if isinstance(v, (int, float))
    }
    if not skip_reference:
        res["registration"] = registration_comparison(
            cohort, atlas_dir, others[: max(1, reference_subjects)], synth, atlas_subject,
            iteration_fraction)
    (out / "bench_preprocess.json").write_text(json.dumps(res, indent=1, default=float))
    return res


def run_from_args(args: argparse.Namespace, say: Any = None) -> dict[str, Any]:
    """``drasclr bench preprocess``: :func:`run_bench` with the command's options."""
    return run_bench(args.dir, args.n, args.preset, args.reference_subjects,
                     args.iteration_fraction, args.skip_reference)


def register(sub: Any) -> None:
    """Add ``bench preprocess`` (printed by :mod:`drasclr.commands.bench`)."""
    p = sub.add_parser("preprocess", help="per-subject cost, accuracy, 2-vs-1 worker scaling, "
                                          "store size and read speed")
    p.add_argument("--dir", type=Path, default=Path("runs/bench-preprocess"),
                   help="work folder: cohort, atlas, stores and bench_preprocess.json (default "
                        "runs/bench-preprocess; the cohort is reused when present)")
    p.add_argument("--n", type=int, default=10,
                   help="subjects (subject 0 is the atlas; default 10)")
    p.add_argument("--preset", default="paper", help="synthetic preset (default paper)")
    p.add_argument("--reference-subjects", dest="reference_subjects", type=int, default=2,
                   help="subjects registered with both our and the published settings "
                        "(default 2)")
    p.add_argument("--iteration-fraction", dest="iteration_fraction", type=float, default=1.0,
                   help="run the published setting at this fraction of its iterations (and half "
                        "of it) and extrapolate its time linearly; said so in the output "
                        "(default 1.0: full iterations)")
    p.add_argument("--skip-reference", action="store_true",
                   help="skip the registration comparison")
    p.set_defaults(bench_run=run_from_args)
