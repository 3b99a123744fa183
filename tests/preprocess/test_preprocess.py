"""Preprocessing on Ray Data end to end: a tiny synthetic cohort -> patch store, bad input, faults."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from drasclr.faults import FAULT_ENV
from drasclr.imaging.atlas import save_atlas
from drasclr.imaging.io import InputError, read_ct
from drasclr.preprocess.config import PreprocessConfig
from drasclr.preprocess.inputs import discover_inputs
from drasclr.preprocess.run import run_preprocess
from drasclr.preprocess.subject import atlas_from_ct
from drasclr.store.digest import store_digest
from drasclr.store.layout import StoreError, read_store_info
from drasclr.store.reader import PatchStore
from drasclr.synth.cohort import generate_cohort
from drasclr.synth.config import preset_config
from drasclr.tables import SchemaError

pytestmark = pytest.mark.usefixtures("ray_local")

CFG = PreprocessConfig(block_size=2)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pp") / "tiny"
    generate_cohort(preset_config("tiny", n_subjects=4, seed=3), out, progress=False)
    return out


@pytest.fixture(scope="module")
def atlas_dir(cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    atlas = atlas_from_ct(cohort / "images" / "SYN00000.nii.gz", CFG)
    return save_atlas(atlas, tmp_path_factory.mktemp("atlas") / "atlas")


@pytest.fixture(scope="module")
def reference_store(cohort: Path, atlas_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted run: the reference for re-runs and fault tests."""
    store = tmp_path_factory.mktemp("ref") / "store"
    summary = run_preprocess(cohort, atlas_dir, store, CFG, progress=False)
    assert (summary.n_ok, summary.n_failed, summary.n_skipped) == (4, 0, 0), summary.failures
    return store


def test_store_contents_and_qc(reference_store: Path, cohort: Path, atlas_dir: Path) -> None:
    ps = PatchStore(reference_store)
    m = ps.manifest
    assert list(m["subject_id"]) == [f"SYN{i:05d}" for i in range(4)]
    assert (m["status"] == "ok").all() and sorted(m["store_index"]) == [0, 1, 2, 3]
    # the atlas subject registers onto itself; others reach a plausible inter-subject overlap
    assert m.loc[m.subject_id == "SYN00000", "dice"].item() > 0.99
    assert (m["dice"] > 0.8).all() and (m["fov_fraction"] > 0.75).all()
    assert (m["registration_start"] == "centre_of_mass").all()  # no subject needed a retry
    for col in ("t_read", "t_resample", "t_segment", "t_register", "t_cut", "t_write"):
        assert (m[col] > 0).all(), col
    # transform and inverse are inverse matrices; centres are T_i(l_j)
    row = m.iloc[1]
    T = np.asarray(row["transform"]).reshape(4, 4)
    np.testing.assert_allclose(T @ np.asarray(row["inverse_transform"]).reshape(4, 4), np.eye(4),
                               atol=1e-9)
    centres = ps.centre_mm[:, int(row["store_index"])]
    expected = ps.landmarks @ T[:3, :3].T + T[:3, 3]
    np.testing.assert_allclose(centres, expected, atol=1e-3)
    # a stored patch equals cutting the resampled CT at that centre
    vol = read_ct(cohort / "images" / f"{row['subject_id']}.nii.gz")
    from drasclr.imaging.patches import cut_patches
    from drasclr.imaging.resample import resample_isotropic

    iso = resample_isotropic(vol, 1.0, order=1, fill=-1024)
    want, _ = cut_patches(np.clip(iso.array, -1024, 240).astype(np.int16), iso.geometry,
                          centres[:3].astype(np.float64))
    got = ps.read_subject(int(row["store_index"]))[:3]
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1  # float32 centres
    assert ps.lung_fraction[:, 0].mean() > 0.2
    # QC figures and the cohort sheet, config and labels stored beside the arrays
    assert sorted(p.name for p in (reference_store / "qc").iterdir()) == [
        f"SYN{i:05d}.png" for i in range(4)]
    assert (reference_store / "reports" / "qc_sheet.png").stat().st_size > 10_000
    assert PreprocessConfig.load(reference_store / "preprocess_config.yaml") == CFG
    assert (reference_store / "labels.parquet").is_file()


def test_manifest_keeps_laa950_of_the_pipelines_own_lung_mask(reference_store: Path,
                                                             cohort: Path) -> None:
    """LAA-950 and lung volume from preprocessing's own segmentation, not a truth mask."""
    from drasclr.imaging.density import laa950
    from drasclr.imaging.resample import clipped_ct
    from drasclr.imaging.segment import segment_lungs

    m = PatchStore(reference_store).manifest.set_index("subject_id")
    assert m["laa950"].between(0, 1).all() and m["laa950"].nunique() == len(m)
    sid = "SYN00001"
    iso = clipped_ct(read_ct(cohort / "images" / f"{sid}.nii.gz"), CFG.spacing_mm)
    lungs = segment_lungs(iso, CFG.segment)
    assert m.loc[sid, "laa950"] == pytest.approx(laa950(iso.array, lungs), abs=1e-12)
    assert m.loc[sid, "lung_volume_ml"] == pytest.approx(
        np.count_nonzero(lungs) * iso.geometry.voxel_volume_ml())


def test_mhd_inputs_are_hashed_with_their_raw_data(tmp_path: Path) -> None:
    """A changed ``.raw`` changes the input hash (a re-run re-processes it); a missing one is an
    error naming the file."""
    from drasclr.preprocess.inputs import mhd_data_files
    from drasclr.preprocess.run import _inputs_with_hashes

    folder = tmp_path / "scans"
    folder.mkdir()
    sitk.WriteImage(sitk.GetImageFromArray(np.full((4, 5, 6), -1000, np.int16)),
                    str(folder / "a.mhd"), False)
    raw = folder / "a.raw"
    assert mhd_data_files(folder / "a.mhd") == [raw]
    header = (folder / "a.mhd").read_bytes()
    first = _inputs_with_hashes(folder, False).iloc[0]
    data = bytearray(raw.read_bytes())
    data[0] ^= 1
    raw.write_bytes(bytes(data))
    second = _inputs_with_hashes(folder, False).iloc[0]
    assert (folder / "a.mhd").read_bytes() == header
    assert first["input_hash"] != second["input_hash"]
    raw.unlink()
    third = _inputs_with_hashes(folder, False).iloc[0]
    assert third["input_hash"] == "missing" and "a.raw" in third["hash_error"]
    # LIST and numbered-pattern headers name several slice files
    (folder / "b.mhd").write_text("NDims = 3\nElementDataFile = LIST\ns0.raw\ns1.raw\n")
    (folder / "c.mhd").write_text("NDims = 3\nElementDataFile = s%d.raw 0 1 1\n")
    for name in ("s0.raw", "s1.raw"):
        (folder / name).write_bytes(b"\0" * 8)
    want = [folder / "s0.raw", folder / "s1.raw"]
    assert mhd_data_files(folder / "b.mhd") == want == mhd_data_files(folder / "c.mhd")


def test_rerun_skips_and_is_identical(reference_store: Path, cohort: Path, atlas_dir: Path,
                                      tmp_path: Path) -> None:
    before = store_digest(reference_store)
    summary = run_preprocess(cohort, atlas_dir, reference_store, CFG, progress=False)
    assert (summary.n_ok, summary.n_skipped) == (0, 4)
    assert store_digest(reference_store) == before
    # another config changing the patches re-processes; one changing only workers does not
    assert CFG.replace(workers=1).store_fingerprint() == CFG.store_fingerprint()
    assert CFG.replace(min_dice=0.5).store_fingerprint() != CFG.store_fingerprint()


def test_append_new_subjects(reference_store: Path, cohort: Path, atlas_dir: Path,
                             tmp_path: Path) -> None:
    store = tmp_path / "store"
    two = tmp_path / "two.csv"
    allrows = discover_inputs(cohort)
    allrows.head(2).to_csv(two, index=False)
    assert run_preprocess(two, atlas_dir, store, CFG, progress=False).n_ok == 2
    four = tmp_path / "four.csv"
    allrows.to_csv(four, index=False)
    s = run_preprocess(four, atlas_dir, store, CFG, progress=False)
    assert (s.n_ok, s.n_skipped) == (2, 2)
    ref, new = PatchStore(reference_store), PatchStore(store)
    for sid in ref.subject_ids:
        np.testing.assert_array_equal(ref.read_subject(ref.index_of(sid)),
                                      new.read_subject(new.index_of(sid)))


def _write(path: Path, arr: np.ndarray, spacing: tuple[float, ...] = (1.6, 1.6, 2.0)) -> Path:
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing[: arr.ndim])
    sitk.WriteImage(img, str(path))
    return path


def test_bad_inputs_fail_per_subject_and_the_run_goes_on(cohort: Path, atlas_dir: Path,
                                                         tmp_path: Path) -> None:
    src = tmp_path / "scans"
    src.mkdir()
    shutil.copy(cohort / "images" / "SYN00001.nii.gz", src / "good.nii.gz")
    good = sitk.ReadImage(str(src / "good.nii.gz"))
    arr = sitk.GetArrayFromImage(good)
    (src / "empty.nii.gz").write_bytes(b"")
    (src / "corrupt.nii.gz").write_bytes(b"\x1f\x8b" + os.urandom(300))
    whole = (src / "good.nii.gz").read_bytes()
    (src / "truncated.nii.gz").write_bytes(whole[: len(whole) * 97 // 100])
    _write(src / "flat2d.nrrd", arr[arr.shape[0] // 2])
    _write(src / "stored_values.mha", (arr.astype(np.int32) + 1024).astype(np.uint16) * 2)
    nan = arr.astype(np.float32)
    nan[3, 3, 3] = np.nan
    _write(src / "nans.mha", nan)
    water = np.full_like(arr, 40)
    water[:, :, :4] = -1000  # air beside a water phantom: a CT without lungs
    _write(src / "no_lungs.nii.gz", water)
    cut = sitk.GetArrayFromImage(good)[: arr.shape[0] // 4]  # only the lung apices in view
    img = sitk.GetImageFromArray(cut)
    img.CopyInformation(good[:, :, : arr.shape[0] // 4])
    sitk.WriteImage(img, str(src / "cut_off.nii.gz"))

    store = tmp_path / "store"
    summary = run_preprocess(src, atlas_dir, store, CFG, progress=False)
    m = PatchStore(store).manifest.set_index("subject_id")
    assert m.loc["good", "status"] == "ok"
    expect = {
        "empty": "empty", "corrupt": "corrupt", "flat2d": "2D", "stored_values": "HU",
        "nans": "NaN", "no_lungs": "lung", "cut_off": "", "truncated": "read: InputError",
    }
    for sid, words in expect.items():
        assert m.loc[sid, "status"] == "failed", sid
        err = m.loc[sid, "error"]
        assert words.lower() in err.lower(), (sid, err)
        assert m.loc[sid, "store_index"] == -1
    assert "field of view" in m.loc["cut_off", "error"] or "lung" in m.loc["cut_off", "error"]
    assert summary.n_ok == 1 and summary.n_failed == 8
    assert str(src / "empty.nii.gz") in m.loc["empty", "error"]
    assert "truncated" in m.loc["truncated", "error"]
    # failed subjects are not retried by default; --retry-failed retries them
    again = run_preprocess(src, atlas_dir, store, CFG, progress=False)
    assert (again.n_ok, again.n_failed, again.n_skipped) == (0, 0, 9)


def test_run_level_errors_write_nothing(cohort: Path, atlas_dir: Path, tmp_path: Path,
                                        reference_store: Path) -> None:
    table = discover_inputs(cohort)
    dup = pd.concat([table, table.head(1)])
    dup.to_csv(tmp_path / "dup.csv", index=False)
    with pytest.raises(InputError, match="duplicate subject id"):
        run_preprocess(tmp_path / "dup.csv", atlas_dir, tmp_path / "s1", CFG, progress=False)
    assert not (tmp_path / "s1").exists()

    bad_labels = pd.read_parquet(cohort / "labels.parquet").drop(columns=["subject_id"])
    bad_labels.to_parquet(tmp_path / "labels.parquet")
    with pytest.raises(SchemaError, match="subject_id"):
        run_preprocess(cohort, atlas_dir, tmp_path / "s2", CFG, labels=tmp_path / "labels.parquet",
                       progress=False)
    assert not (tmp_path / "s2").exists()

    other = tmp_path / "other"
    shutil.copytree(reference_store, other)
    meta = (other / "zarr.json").read_text().replace('"schema_version": 1', '"schema_version": 99')
    (other / "zarr.json").write_text(meta)
    with pytest.raises(StoreError, match="schema_version"):
        run_preprocess(cohort, atlas_dir, other, CFG, progress=False)
    with pytest.raises(InputError, match="no scans"):
        (tmp_path / "nothing").mkdir()
        run_preprocess(tmp_path / "nothing", atlas_dir, tmp_path / "s3", CFG, progress=False)


def test_killed_worker_is_replaced_and_store_is_identical(
    cohort: Path, atlas_dir: Path, reference_store: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    marker = tmp_path / "killed"
    monkeypatch.setenv(FAULT_ENV, f"preprocess.worker:SYN00002:exit_once:{marker}")
    store = tmp_path / "store"
    summary = run_preprocess(cohort, atlas_dir, store, CFG, progress=False)
    assert marker.exists()  # a worker process really died on SYN00002
    assert summary.n_ok == 4 and summary.n_failed == 0
    assert store_digest(store) == store_digest(reference_store)


def test_subject_that_always_kills_its_worker_fails_after_bounded_deaths(
    cohort: Path, atlas_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    deaths = tmp_path / "deaths.log"
    monkeypatch.setenv(FAULT_ENV, f"preprocess.worker:SYN00001:exit_always:{deaths}")
    store = tmp_path / "store"
    cfg = CFG.replace(max_worker_deaths=2)
    result: dict[str, object] = {}
    # run in a thread so that a run that retries forever fails this test (before pytest-timeout's
    # 600 s) instead of hanging it; the run takes about a minute on 2 idle cores
    runner = threading.Thread(target=lambda: result.update(
        summary=run_preprocess(cohort, atlas_dir, store, cfg, progress=False)), daemon=True)
    runner.start()
    runner.join(timeout=560)
    assert not runner.is_alive(), "the run did not finish: the subject is retried forever"
    summary = result["summary"]
    assert len(deaths.read_text().splitlines()) == 2  # exactly max_worker_deaths deaths
    assert (summary.n_ok, summary.n_failed) == (3, 1)
    m = PatchStore(store).manifest.set_index("subject_id")
    assert m.loc["SYN00001", "status"] == "failed"
    error = m.loc["SYN00001", "error"]
    assert error.startswith("worker died while processing: ") and "SYN00001" in error, error
    assert PatchStore(store).subject_ids == ["SYN00000", "SYN00002", "SYN00003"]


def test_killed_driver_then_rerun_gives_identical_store(
    cohort: Path, atlas_dir: Path, reference_store: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    cfg_file = CFG.save(tmp_path / "pp.yaml")
    cmd = [sys.executable, "-m", "drasclr.cli", "preprocess", "--inputs", str(cohort), "--atlas",
           str(atlas_dir), "--store", str(store), "--config", str(cfg_file), "--quiet",
           "--num-cpus", "2"]
    env = {**os.environ, FAULT_ENV: "preprocess.driver_commit:1:exit", "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 18, proc.stderr[-2000:]
    m = PatchStore(store).manifest
    assert len(m) == 2 and (m["status"] == "ok").all()  # one block of two committed
    assert read_store_info(store).capacity == 4
    summary = run_preprocess(cohort, atlas_dir, store, CFG, progress=False)
    assert (summary.n_ok, summary.n_skipped) == (2, 2)
    assert store_digest(store) == store_digest(reference_store)
