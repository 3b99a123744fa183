"""process_subject without Ray: registration retries are wired into the QC and the manifest record."""

from __future__ import annotations

from pathlib import Path

import pytest

from drasclr.preprocess.config import PreprocessConfig
from drasclr.preprocess.subject import atlas_from_ct, process_subject
from drasclr.store.writer import PlanItem
from drasclr.synth.cohort import generate_subject
from drasclr.synth.config import preset_config
from drasclr.synth.latents import sample_latents

CFG = PreprocessConfig(qc_figures=False)


@pytest.fixture(scope="module")
def two_subjects(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two ``tiny`` subjects rendered in this process (no Ray)."""
    out = tmp_path_factory.mktemp("two")
    cfg = preset_config("tiny", n_subjects=2, seed=3)
    for row in sample_latents(cfg).to_dict("records"):
        generate_subject((cfg.to_dict(), row, str(out)))
    return out / "images"


def test_failing_qc_retries_every_start_and_records_them(two_subjects: Path) -> None:
    atlas = atlas_from_ct(two_subjects / "SYN00000.nii.gz", CFG)
    item = PlanItem("SYN00001", str(two_subjects / "SYN00001.nii.gz"), "-", 0, "new")
    ok = process_subject(item, atlas, CFG)
    assert ok.error is None and ok.record["registration_start"] == "centre_of_mass"
    first_dice = ok.record["dice"]
    assert first_dice >= CFG.min_dice
    # a QC threshold nobody passes: all three starts run, the best is kept and named
    strict = process_subject(item, atlas, CFG.replace(min_dice=0.999))
    assert strict.error is not None and "registration failed QC" in strict.error
    for start in ("centre_of_mass", "principal_axes", "rotation_search"):
        assert f"{start} 0." in strict.error, strict.error
    assert strict.record["dice"] >= first_dice
    assert strict.record["registration_start"] in ("centre_of_mass", "principal_axes",
                                                   "rotation_search")
