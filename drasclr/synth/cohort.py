"""Generate a synthetic cohort into a folder: images, truth masks, labels, boxes, manifest.

Layout of a cohort folder::

    synth_config.yaml            the SynthConfig that defines the cohort (its contract)
    images/<id>.nii.gz           CT, int16 HU, scanner geometry (LPS)
    dicom/<id>/                  the same CT as a DICOM series, for some subjects
    truth/<id>_lungs.nii.gz      1 right lung, 2 left lung
    truth/<id>_lesions.nii.gz    1 cle, 2 pse, 3 ple, 4 ggo, 5 consolidation
    labels.parquet               schema ``labels`` (what a lab would have)
    truth.parquet                schema ``truth`` (generator-only: latents, true fractions)
    boxes.parquet                schema ``boxes``
    manifest.parquet             schema ``synth_manifest``
    .parts/<id>.json             per-subject results; a subject is done iff its part exists

Subjects are rendered by one Ray task each; re-running the same command skips finished subjects.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from drasclr.config import ConfigError
from drasclr.fsutil import atomic_write_text
from drasclr.synth.config import SynthConfig
from drasclr.synth.latents import sample_latents
from drasclr.synth.outcomes import compute_labels
from drasclr.tables import write_table

CONFIG_NAME = "synth_config.yaml"
LESION_CODES = {"cle": 1, "pse": 2, "ple": 3, "ggo": 4, "consolidation": 5}
BOX_MM = 32.0


class CohortFolderError(ConfigError):
    """The output folder cannot take this cohort (holds another cohort, or foreign files)."""


@dataclass(frozen=True)
class CohortResult:
    """What :func:`generate_cohort` produced."""

    folder: Path
    n_subjects: int
    n_generated: int
    n_skipped: int
    seconds: float


# ----------------------------------------------------------------------------------------- folder
def check_folder(cfg: SynthConfig, out: Path, overwrite: bool) -> bool:
    """Decide what to do with ``out`` before writing anything.

    Returns:
        True when ``out`` already holds this very cohort (resume), False when it is new/empty.

    Raises:
        CohortFolderError: ``out`` holds a different cohort (and no ``overwrite``), or is a
            non-empty folder that is not a cohort folder, or is a file.
    """
    if out.exists() and not out.is_dir():
        raise CohortFolderError(f"{out}: exists and is not a folder")
    if not out.exists() or not any(out.iterdir()):
        return False
    cfg_path = out / CONFIG_NAME
    if not cfg_path.exists():
        raise CohortFolderError(
            f"{out}: folder is not empty and holds no {CONFIG_NAME}; refusing to write a cohort "
            "into it (choose an empty or new folder)"
        )
    try:
        existing = SynthConfig.load(cfg_path)
    except ConfigError as err:
        if overwrite:
            return False
        raise CohortFolderError(f"{out}: unreadable cohort config ({err}); use --overwrite") from err
    if existing.content_key() == cfg.content_key() and not overwrite:
        return True
    if not overwrite:
        raise CohortFolderError(
            f"{out}: holds a different cohort (preset={existing.preset}, mode={existing.mode}, "
            f"n_subjects={existing.n_subjects}, seed={existing.seed}); pass --overwrite to replace it "
            "or choose another folder"
        )
    return False


def _wipe_cohort(out: Path) -> None:
    """Remove a cohort folder's generated content (only called with --overwrite)."""
    for name in ("images", "dicom", "truth", ".parts", "report"):
        shutil.rmtree(out / name, ignore_errors=True)
    for name in (CONFIG_NAME, "labels.parquet", "truth.parquet", "boxes.parquet",
                 "manifest.parquet"):
        (out / name).unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------- subject
def phantom_spec(cfg: SynthConfig, row: dict[str, Any]) -> Any:
    """The PhantomSpec of one subject from its latent row."""
    from drasclr.synth.phantom import PhantomSpec

    return PhantomSpec(
        shape=(int(row["nxy"]), int(row["nxy"]), int(row["nz"])),
        spacing=(float(row["spacing_xy"]), float(row["spacing_xy"]), float(row["spacing_z"])),
        anatomy_scale=cfg.anatomy_scale,
        body_scale=(row["body_scale_x"], row["body_scale_y"], row["body_scale_z"]),
        inspiration=float(row["inspiration"]),
        rotation_deg=(row["rotation_x"], row["rotation_y"], row["rotation_z"]),
        translation_mm=(row["translation_x"], row["translation_y"], row["translation_z"]),
        noise_hu=float(row["noise_hu"]),
        blur_mm=float(row["blur_mm"]),
        texture_hu=float(row["texture_hu"]),
        cle=float(row["latent_cle"]),
        cle_zone=float(row["latent_cle_zone"]),
        cle_core=float(row["latent_cle_core"]),
        pse=float(row["latent_pse"]),
        ple=float(row["latent_ple"]),
        airway_wall=float(row["latent_airway"]),
        ggo=float(row["latent_ggo"]),
        consolidation=float(row["latent_consolidation"]),
        seed=int(row["seed"]),
    )


def _box_slices(centre_mm: np.ndarray, geom: Any, shape_zyx: tuple[int, ...]) -> tuple[slice, ...] | None:
    """[z,y,x] slices of a BOX_MM cube centred at a world point; None if it leaves the image."""
    half = np.array([BOX_MM / 2.0] * 3)
    lo = np.ceil(geom.world_to_index((centre_mm - half)[None])[0]).astype(int)
    hi = np.floor(geom.world_to_index((centre_mm + half)[None])[0]).astype(int) + 1
    lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
    nx, ny, nz = shape_zyx[2], shape_zyx[1], shape_zyx[0]
    if (lo < 0).any() or hi[0] > nx or hi[1] > ny or hi[2] > nz:
        return None
    return (slice(lo[2], hi[2]), slice(lo[1], hi[1]), slice(lo[0], hi[0]))


def _boxes(ph: Any, geom: Any, lesion_codes: np.ndarray, cfg: SynthConfig, seed: int) -> tuple[list, list]:
    """Lesion boxes around rendered CLE/PSE centres, and healthy-box candidates in the lungs."""
    rng = np.random.default_rng(seed)
    lungs = ph.lungs > 0
    lesion_boxes: list[dict[str, Any]] = []
    for subtype in ("cle", "pse"):
        centres = [np.asarray(c, float) for s, c in ph.lesion_centres if s == subtype]
        order = rng.permutation(len(centres))
        for k in order:
            if len(lesion_boxes) and sum(b["label"] == subtype for b in lesion_boxes) >= cfg.max_boxes_per_subtype:
                break
            if cfg.max_boxes_per_subtype == 0:
                break
            sl = _box_slices(centres[k], geom, ph.ct.shape)
            if sl is None:
                continue
            frac = float((lesion_codes[sl] == LESION_CODES[subtype]).mean())
            if frac <= 0:
                continue
            lesion_boxes.append(_box_row(subtype, centres[k], frac, float(lungs[sl].mean())))
    healthy: list[dict[str, Any]] = []
    idx = np.argwhere(lungs)
    tries = 0
    while len(healthy) < cfg.healthy_boxes_per_subject and tries < 60 and len(idx):
        tries += 1
        zyx = idx[rng.integers(len(idx))]
        centre = geom.index_to_world(zyx[::-1][None].astype(float))[0]
        sl = _box_slices(centre, geom, ph.ct.shape)
        if sl is None:
            continue
        lung_frac = float(lungs[sl].mean())
        if lung_frac < 0.6 or (lesion_codes[sl] > 0).any():
            continue
        healthy.append(_box_row("healthy", centre, 0.0, lung_frac))
    return lesion_boxes, healthy


def _box_row(label: str, centre: np.ndarray, lesion_fraction: float, lung_fraction: float) -> dict[str, Any]:
    return {
        "label": label,
        "centre_x": float(centre[0]),
        "centre_y": float(centre[1]),
        "centre_z": float(centre[2]),
        "size_mm": BOX_MM,
        "lesion_fraction": lesion_fraction,
        "lung_fraction": lung_fraction,
    }


def generate_subject(task: tuple[dict[str, Any], dict[str, Any], str]) -> dict[str, Any]:
    """Render one subject, write its files atomically, and write its part record last.

    Args:
        task: (config dict, latent row dict, cohort folder).

    Returns:
        The part record (also written to ``.parts/<id>.json``).
    """
    from drasclr.imaging.geometry import Geometry
    from drasclr.imaging.io import write_image
    from drasclr.synth.dicom import write_dicom_series
    from drasclr.synth.phantom import render_phantom

    cfg_dict, row, out_s = task
    cfg = SynthConfig.from_dict(cfg_dict)
    out = Path(out_s)
    sid = row["subject_id"]
    t0 = time.perf_counter()
    ph = render_phantom(phantom_spec(cfg, row))
    shape_xyz = (ph.ct.shape[2], ph.ct.shape[1], ph.ct.shape[0])
    geom = Geometry(spacing=tuple(ph.spacing), origin=tuple(ph.origin), direction=tuple(ph.direction), shape=shape_xyz)
    codes = np.zeros(ph.ct.shape, np.uint8)
    for name, code in LESION_CODES.items():
        codes[ph.lesions[name]] = code

    image_rel = f"images/{sid}.nii.gz"
    lungs_rel, lesions_rel = f"truth/{sid}_lungs.nii.gz", f"truth/{sid}_lesions.nii.gz"
    write_image(out / image_rel, ph.ct.astype(np.int16), geom)
    write_image(out / lungs_rel, ph.lungs.astype(np.uint8), geom)
    write_image(out / lesions_rel, codes, geom)
    dicom_rel = None
    index = int(sid[len(cfg.id_prefix):])
    if cfg.dicom_every and index % cfg.dicom_every == 0:
        dicom_rel = f"dicom/{sid}"
        write_dicom_series(out / dicom_rel, ph.ct.astype(np.int16), geom, subject_id=sid)

    lung_mask = ph.lungs > 0
    n_lung = int(lung_mask.sum())
    laa = float((ph.ct[lung_mask] < -950).mean()) if n_lung else 0.0
    stats = {f"{zone}_{kind}": int(v) for zone, d in ph.zone_stats.items() for kind, v in d.items()}
    lesion_boxes, healthy = _boxes(ph, geom, codes, cfg, int(row["box_seed"]))
    record = {
        "subject_id": sid,
        "manifest": {
            "subject_id": sid,
            "image": image_rel,
            "dicom": dicom_rel,
            "lungs": lungs_rel,
            "lesions": lesions_rel,
            "shape": list(shape_xyz),
            "spacing": [float(s) for s in ph.spacing],
            "origin": [float(o) for o in ph.origin],
            "canonical_to_world": [float(v) for v in np.asarray(ph.canonical_to_world).ravel()],
            "seed": int(row["seed"]),
            "laa950": laa,
            "lung_volume_ml": n_lung * float(np.prod(ph.spacing)) / 1000.0,
            "noise_hu": float(row["noise_hu"]),
            "seconds": time.perf_counter() - t0,
        },
        "stats": stats,
        "lesion_boxes": lesion_boxes,
        "healthy_candidates": healthy,
    }
    atomic_write_text(out / ".parts" / f"{sid}.json", json.dumps(record))
    return record


# ----------------------------------------------------------------------------------------- cohort
def assemble_tables(cfg: SynthConfig, out: Path, latents: pd.DataFrame, records: list[dict[str, Any]]) -> None:
    """Labels, boxes and manifest from the latents and the part records (driver side)."""
    by_id = {r["subject_id"]: r for r in records}
    ordered = [by_id[s] for s in latents["subject_id"]]
    stats = pd.DataFrame([{"subject_id": r["subject_id"], **r["stats"]} for r in ordered])
    labels = compute_labels(latents, stats)
    manifest = pd.DataFrame([r["manifest"] for r in ordered])

    healthy_ok = labels["true_emphysema_fraction"].to_numpy() < 0.0005
    if cfg.mode == "copd":
        healthy_ok &= labels["gold"].to_numpy(dtype=float) == 0
    else:
        healthy_ok &= labels["true_covid_fraction"].to_numpy() < 0.0005
    rows = []
    for ok, r in zip(healthy_ok, ordered):
        boxes = list(r["lesion_boxes"]) + (list(r["healthy_candidates"]) if ok else [])
        for k, b in enumerate(boxes):
            rows.append({"box_id": f"{r['subject_id']}_{b['label']}_{k:02d}", "subject_id": r["subject_id"], **b})
    cols = ["box_id", "subject_id", "label", "centre_x", "centre_y", "centre_z", "size_mm", "lesion_fraction", "lung_fraction"]
    boxes_df = pd.DataFrame(rows, columns=cols)
    write_table(labels, out / "labels.parquet", "labels")
    write_table(labels, out / "truth.parquet", "truth")
    write_table(boxes_df, out / "boxes.parquet", "boxes")
    write_table(manifest, out / "manifest.parquet", "synth_manifest")


def generate_cohort(
    cfg: SynthConfig,
    out: str | Path,
    *,
    overwrite: bool = False,
    num_cpus: int | None = None,
    progress: bool = True,
) -> CohortResult:
    """Generate (or finish generating) a cohort into ``out``.

    Args:
        cfg: the cohort definition.
        out: cohort folder; must be new, empty, or hold this same cohort (resume).
        overwrite: replace a different cohort already in ``out``.
        num_cpus: CPUs for an embedded Ray instance (ignored when Ray is already running).
        progress: show a progress bar.
    """
    from drasclr.raytools import map_tasks, ray_session

    out = Path(out)
    t0 = time.perf_counter()
    resume = check_folder(cfg, out, overwrite)
    if overwrite and not resume and out.exists():
        _wipe_cohort(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg.save(out / CONFIG_NAME)
    latents = sample_latents(cfg)
    parts_dir = out / ".parts"
    done: list[dict[str, Any]] = []
    todo = []
    for row in latents.to_dict("records"):
        part = parts_dir / f"{row['subject_id']}.json"
        if part.exists():
            done.append(json.loads(part.read_text()))
        else:
            todo.append((cfg.to_dict(), row, str(out)))
    if todo:
        voxels = max(int(r["nxy"]) ** 2 * int(r["nz"]) for _, r, _ in todo)
        with ray_session(num_cpus):
            new = map_tasks(
                generate_subject, todo, num_cpus=1, memory_mb=voxels * 40 / 2**20,
                desc=f"synth {cfg.preset}", progress=progress,
            )
        done.extend(new)
    assemble_tables(cfg, out, latents, done)
    return CohortResult(out, cfg.n_subjects, len(todo), cfg.n_subjects - len(todo), time.perf_counter() - t0)
