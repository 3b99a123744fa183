"""``drasclr run``: a plain folder of scans and a lab's labels table through the whole chain."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from drasclr.cli import main
from drasclr.labels import read_labels
from drasclr.store.reader import PatchStore


@pytest.fixture(scope="module")
def plain_folder(tiny_store: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
                 ) -> tuple[Path, Path]:
    """The tiny cohort exported as a lab would have it: images only (no truth, no boxes, no
    manifest; 5 of the 8 scans) and a labels CSV with the lab's own headers, some columns, an
    extra header and ids that match no scan."""
    root = tmp_path_factory.mktemp("plain")
    scans = root / "scans"
    scans.mkdir()
    for img in sorted((tiny_store["cohort"] / "images").glob("*.nii.gz"))[:5]:  # 5 of 8 scans
        shutil.copyfile(img, scans / img.name)
    lab = read_labels(tiny_store["labels"])
    table = pd.DataFrame({
        "Patient ID": lab["subject_id"],
        "FEV1 % predicted": lab["fev1pp"].round(1),
        "FEV1/FVC": lab["fev1_fvc"].round(3),
        "GOLD": lab["gold"],
        "Sex": lab["sex"].map({0: "F", 1: "M"}),
        "Site": "Boston",
    })
    extra = pd.DataFrame({"Patient ID": ["NOSCAN01"], "FEV1 % predicted": [70.0],
                          "FEV1/FVC": [0.6], "GOLD": [1], "Sex": ["F"], "Site": ["Denver"]})
    csv = root / "clinical.csv"
    pd.concat([table, extra]).to_csv(csv, index=False)
    return scans, csv


@pytest.mark.timeout(1800)  # the whole chain; minutes on a busy 2-core machine
def test_plain_folder_and_lab_csv_run_to_a_report(plain_folder: tuple[Path, Path],
                                                  tiny_store: dict[str, Path], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    scans, csv = plain_folder
    out = tmp_path / "run"
    argv = ["run", "--inputs", str(scans), "--labels", str(csv), "--out", str(out),
            "--label-column", "Patient ID=subject_id",
            "--label-column", "FEV1 % predicted=fev1pp",
            "--atlas", str(tiny_store["atlas"]),
            "--method", "DrasCLR", "--method", "random encoder",
            "--steps", "2", "--batch-size", "4", "--queue-size", "8", "--quiet"]
    assert main(argv) == 0
    console = capsys.readouterr().out
    assert "NOSCAN01" in console and "ignored header(s) ['Site']" in console
    assert f"from {tiny_store['atlas']} (given)" in console

    check = json.loads((out / "labels" / "labels_check.json").read_text())
    assert check["labels_without_scan"] == ["NOSCAN01", "SYN00005", "SYN00006", "SYN00007"]
    assert check["matched"] == 5 and check["scans_without_labels"] == []
    res = json.loads((out / "evaluation" / "results.json").read_text())
    t2 = pd.read_csv(out / "evaluation" / "table2_image_readouts.csv")
    # exactly the experiments the labels allow
    assert set(t2["task"]) == {"log_fev1pp", "log_fev1_fvc", "gold"}
    assert set(t2["method"]) == {"DrasCLR", "random encoder", "LAA-950 (image)",
                                 "LAA-950 (patch)"}
    skipped = {s["experiment"]: s["reason"] for s in res["not_run"]}
    assert skipped["Table 2: cle_score"] == "no cle_score"
    assert skipped["Table 2: exacerbation_history"] == "no exacerbation_history"
    assert skipped["Table 3: imaging"].startswith("no survival_time, survival_event, age")
    assert skipped["Table 5: box detection"] == "no boxes.parquet"
    assert not (out / "evaluation" / "table3_survival.csv").exists()
    assert not (out / "evaluation" / "table5_box_detection.csv").exists()
    report = (out / "report" / "report.md").read_text()
    assert "- Table 2: cle_score: not run: no cle_score" in report
    assert "- Table 5: box detection: not run: no boxes.parquet" in report
    assert "## Table 2" in report and "## Table 3" not in report and "## Table 5" not in report

    # a re-run resumes: every stage skips, the results are the same file
    before = (out / "evaluation" / "results.json").read_text()
    assert main(argv) == 0
    assert (out / "evaluation" / "results.json").read_text() == before


def test_bad_labels_stop_the_run_with_a_clear_error(plain_folder: tuple[Path, Path],
                                                    tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    scans, csv = plain_folder
    bad = tmp_path / "bad.csv"
    frame = pd.read_csv(csv)
    frame["FEV1/FVC"] = frame["FEV1/FVC"].astype(object)
    frame.loc[3, "FEV1/FVC"] = "0,61"  # a decimal comma
    frame.to_csv(bad, index=False)
    argv = ["run", "--inputs", str(scans), "--labels", str(bad), "--out", str(tmp_path / "r"),
            "--label-column", "Patient ID=subject_id", "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{bad}: column 'FEV1/FVC' (fev1_fvc), row 4 (subject 'SYN00003'): '0,61' is not a " \
           "number" in err
    assert not (tmp_path / "r" / "store").exists()


@pytest.mark.timeout(900)
def test_real_nrrd_scans_through_the_run_preprocessing(reference_dir: Path, ray_local: None,
                                                       tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    scans = reference_dir / "real_ct"
    csv = tmp_path / "labels.csv"
    csv.write_text("subject_id,FEV1pp,FEV1/FVC\ncopdgene_10002K_ct64,45.2,0.48\n"
                   "cip_testinput,,\n")
    out = tmp_path / "run"
    assert main(["run", "--inputs", str(scans), "--labels", str(csv), "--out", str(out),
                 "--stop-after", "preprocess", "--quiet"]) == 0
    assert "lowest LAA-950" in capsys.readouterr().out
    choice = json.loads((out / "atlas" / "atlas_choice.json").read_text())
    assert choice["subject_id"] == PatchStore(out / "store").info.atlas_id
    assert {c["subject_id"] for c in choice["candidates"]} == {"copdgene_10002K_ct64",
                                                               "cip_testinput"}
    m = PatchStore(out / "store").manifest.set_index("subject_id")
    assert set(m.index) == {"copdgene_10002K_ct64", "cip_testinput"}
    assert m.loc[choice["subject_id"], "status"] == "ok"
    assert not (out / "report").exists()
