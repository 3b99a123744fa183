"""End-to-end synthetic cohorts on the embedded Ray: files, geometry, truth alignment, re-runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from drasclr.cli import main
from drasclr.imaging.io import read_ct, read_mask
from drasclr.labels import read_labels
from drasclr.synth.cohort import CohortFolderError, generate_cohort
from drasclr.synth.config import preset_config
from drasclr.synth.outcomes import CLE_SCORE_EDGES, gold_stage, visual_score
from drasclr.synth.report import write_report
from drasclr.tables import read_frame

pytestmark = pytest.mark.usefixtures("ray_local")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cohort") / "tiny"
    generate_cohort(preset_config("tiny", n_subjects=4), out, progress=False)
    return out


def test_files_and_tables(tiny: Path) -> None:
    manifest = read_frame(tiny / "manifest.parquet", "synth_manifest")
    labels = read_frame(tiny / "labels.parquet", "labels")
    boxes = read_frame(tiny / "boxes.parquet", "boxes")
    assert list(manifest["subject_id"]) == list(labels["subject_id"]) == [f"SYN{i:05d}" for i in range(4)]
    for row in manifest.itertuples():
        for rel in (row.image, row.lungs, row.lesions):
            assert (tiny / rel).exists()
    assert manifest["dicom"].notna().sum() == 1  # tiny writes every 4th subject as DICOM too
    assert set(boxes["subject_id"]) <= set(labels["subject_id"])
    assert (tiny / "synth_config.yaml").exists()


def test_geometry_metadata(tiny: Path) -> None:
    manifest = read_frame(tiny / "manifest.parquet", "synth_manifest")
    cfg = preset_config("tiny")
    for row in manifest.itertuples():
        img = sitk.ReadImage(str(tiny / row.image))
        assert img.GetPixelID() == sitk.sitkInt16
        np.testing.assert_allclose(img.GetSpacing(), row.spacing, rtol=1e-5)
        np.testing.assert_allclose(img.GetOrigin(), row.origin, atol=1e-3)
        assert list(img.GetSize()) == list(row.shape)
        sx, sy, sz = img.GetSpacing()
        assert sx == pytest.approx(sy)
        assert cfg.inplane_spacing_mm[0] - 1e-6 <= sx <= cfg.inplane_spacing_mm[1] + 1e-6
        assert cfg.slice_spacing_mm[0] - 1e-6 <= sz <= cfg.slice_spacing_mm[1] + 1e-6


def test_dicom_matches_nifti(tiny: Path) -> None:
    manifest = read_frame(tiny / "manifest.parquet", "synth_manifest")
    row = manifest[manifest["dicom"].notna()].iloc[0]
    nii, dcm = read_ct(tiny / row["image"]), read_ct(tiny / row["dicom"])
    np.testing.assert_array_equal(nii.array, dcm.array)
    np.testing.assert_allclose(nii.geometry.spacing, dcm.geometry.spacing, rtol=1e-4)
    np.testing.assert_allclose(nii.geometry.origin, dcm.geometry.origin, atol=1e-2)


def test_truth_aligned_with_image(tiny: Path) -> None:
    manifest = read_frame(tiny / "manifest.parquet", "synth_manifest")
    for row in manifest.itertuples():
        ct = read_ct(tiny / row.image)
        lungs = read_mask(tiny / row.lungs)
        lesions = read_mask(tiny / row.lesions)
        assert ct.array.shape == lungs.array.shape == lesions.array.shape
        np.testing.assert_allclose(lungs.geometry.origin, ct.geometry.origin)
        lung = lungs.array > 0
        assert set(np.unique(lungs.array)) == {0, 1, 2}
        assert -900 <= np.median(ct.array[lung]) <= -700
        assert np.median(ct.array[~lung & (ct.array > -500)]) > -200  # body tissue
        assert not (lesions.array[~lung] > 0).any()
        emph = np.isin(lesions.array, (1, 2, 3))
        if emph.sum() > 50:
            assert np.median(ct.array[emph]) < -900


def test_labels_follow_rendered_truth(tiny: Path) -> None:
    labels = read_labels(tiny / "labels.parquet", tiny / "truth.parquet")
    assert "true_cle_fraction" not in read_frame(tiny / "labels.parquet", "labels")
    manifest = read_frame(tiny / "manifest.parquet", "synth_manifest")
    for row, lab in zip(manifest.itertuples(), labels.itertuples()):
        lungs = read_mask(tiny / row.lungs).array > 0
        lesions = read_mask(tiny / row.lesions).array
        assert lab.true_cle_fraction == pytest.approx((lesions == 1).sum() / lungs.sum(), rel=1e-6)
        assert lab.cle_score == visual_score(np.array([lab.true_cle_fraction]), CLE_SCORE_EDGES)[0]
    g = gold_stage(labels["fev1pp"].astype(float).to_numpy(), labels["fev1_fvc"].astype(float).to_numpy())
    np.testing.assert_array_equal(labels["gold"].astype(int), g)


def test_deterministic_and_resumable(tiny: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    generate_cohort(preset_config("tiny", n_subjects=4), again, progress=False)
    for sid in ("SYN00000", "SYN00003"):
        a = sitk.GetArrayFromImage(sitk.ReadImage(str(tiny / f"images/{sid}.nii.gz")))
        b = sitk.GetArrayFromImage(sitk.ReadImage(str(again / f"images/{sid}.nii.gz")))
        np.testing.assert_array_equal(a, b)
    assert read_frame(tiny / "labels.parquet", "labels").equals(read_frame(again / "labels.parquet", "labels"))
    # a re-run skips everything; a lost subject is regenerated
    res = generate_cohort(preset_config("tiny", n_subjects=4), again, progress=False)
    assert res.n_generated == 0 and res.n_skipped == 4
    (again / ".parts" / "SYN00002.json").unlink()
    res = generate_cohort(preset_config("tiny", n_subjects=4), again, progress=False)
    assert res.n_generated == 1


def test_other_seed_differs(tiny: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    generate_cohort(preset_config("tiny", n_subjects=1, seed=7), other, progress=False)
    a = sitk.GetArrayFromImage(sitk.ReadImage(str(tiny / "images/SYN00000.nii.gz")))
    b = sitk.GetArrayFromImage(sitk.ReadImage(str(other / "images/SYN00000.nii.gz")))
    assert a.shape != b.shape or not np.array_equal(a, b)


def test_folder_with_other_cohort_is_refused(tiny: Path) -> None:
    before = sorted(p.name for p in tiny.iterdir())
    stamp = (tiny / "labels.parquet").stat().st_mtime_ns
    with pytest.raises(CohortFolderError, match="holds a different cohort"):
        generate_cohort(preset_config("tiny", n_subjects=5), tiny, progress=False)
    assert sorted(p.name for p in tiny.iterdir()) == before
    assert (tiny / "labels.parquet").stat().st_mtime_ns == stamp


def test_foreign_folder_refused_even_with_overwrite(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(CohortFolderError, match="not empty"):
        generate_cohort(preset_config("tiny", n_subjects=1), tmp_path, overwrite=True, progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_overwrite_replaces(tmp_path: Path) -> None:
    out = tmp_path / "c"
    generate_cohort(preset_config("tiny", n_subjects=2), out, progress=False)
    generate_cohort(preset_config("tiny", n_subjects=1, seed=3), out, overwrite=True, progress=False)
    assert len(read_frame(out / "labels.parquet", "labels")) == 1
    assert sorted(p.name for p in (out / "images").iterdir()) == ["SYN00000.nii.gz"]


def test_report(tiny: Path) -> None:
    summary, path = write_report(tiny)
    assert path.exists() and (path.parent / "preview.png").stat().st_size > 10_000
    assert summary["n_subjects"] == 4 and "r2_logfev1pp_on_laa950" in summary
    assert sum(summary["gold"].values()) == 4


def test_cli_errors_write_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x"
    assert main(["synth", "--preset", "nope", "--out", str(out)]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err
    assert main(["synth", "--preset", "tiny", "--n", "0", "--out", str(out)]) == 2
    assert "n_subjects" in capsys.readouterr().err
    assert not out.exists()


def test_cli_covid_cohort(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cov"
    assert main(["synth", "--preset", "tiny", "--mode", "covid", "--n", "2", "--out", str(out), "--quiet"]) == 0
    labels = read_frame(out / "labels.parquet", "labels")
    assert list(labels["subject_id"]) == ["COV00000", "COV00001"]
    assert labels["covid_grade"].notna().all() and labels["fev1pp"].isna().all()
    assert main(["synth", "report", str(out)]) == 0
    assert "preview" in capsys.readouterr().out
    json.loads((out / ".parts" / "COV00000.json").read_text())
