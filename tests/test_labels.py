"""The labels contract for real data: lab headers, optional columns, errors naming column and row."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from drasclr.labels import (
    LabelsError,
    match_subjects,
    missing_columns,
    parse_column_map,
    read_lab_labels,
    read_labels,
)
from drasclr.tables import SchemaError, read_frame, write_table

LAB = """Patient ID,FEV1 % predicted,FEV1/FVC,GOLD,Sex,Pack-years,Site
P001,81.5,0.74,0,F,10,Boston
P002,55,0.58,2,male,42.5,Boston
P003,,0.61,1,M,,Denver
P004,33.1,0.41,3,female,60,Denver
"""
MAP = {"Patient ID": "subject_id", "FEV1 % predicted": "fev1pp"}


def _csv(tmp_path: Path, text: str, name: str = "labels.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_lab_headers_map_and_only_some_columns(tmp_path: Path) -> None:
    frame, check = read_lab_labels(_csv(tmp_path, LAB), MAP)
    assert list(frame.columns) == ["subject_id", "sex", "pack_years", "fev1pp", "fev1_fvc", "gold"]
    assert frame["subject_id"].tolist() == ["P001", "P002", "P003", "P004"]
    assert frame["sex"].tolist() == [0, 1, 1, 0]  # text codes
    assert pd.isna(frame.loc[2, "fev1pp"]) and frame.loc[1, "pack_years"] == 42.5
    assert check.renamed["FEV1/FVC"] == "fev1_fvc" and check.renamed["Pack-years"] == "pack_years"
    assert check.ignored == ["Site"]
    assert {"cle_score", "survival_time", "bode"} <= set(check.absent)
    # written and read back through the schema with its optional columns absent
    write_table(frame, tmp_path / "labels.parquet", "labels")
    back = read_frame(tmp_path / "labels.parquet", "labels")
    assert list(back.columns) == list(frame.columns)
    assert missing_columns(back, ["fev1pp", "cle_score"]) == ["cle_score"]


def test_parquet_labels_and_column_map_option(tmp_path: Path) -> None:
    pd.DataFrame({"ID": ["a", "b"], "fev1pp": [80.0, 60.0]}).to_parquet(tmp_path / "l.parquet")
    frame, _ = read_lab_labels(tmp_path / "l.parquet", parse_column_map(["ID=subject_id"]))
    assert frame["fev1pp"].tolist() == [80.0, 60.0]
    with pytest.raises(LabelsError, match="'FEV1' is not a labels column"):
        parse_column_map(["Lung=FEV1"])
    with pytest.raises(LabelsError, match="'Your header=column'"):
        parse_column_map(["fev1pp"])


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        # wrong unit: FEV1/FVC in percent
        (("0.58", "58"), r"'FEV1/FVC' \(fev1_fvc\), row 2 \(subject 'P002'\): .*percentage.*ratio"),
        # non-numeric value
        (("55,", "n.a.,"), (r"'FEV1 % predicted' \(fev1pp\), row 2 \(subject 'P002'\): 'n.a.' "
                            r"is not a number")),
        # duplicate id
        (("P003", "P001"), r"duplicate subject id\(s\): 'P001' in rows \[1, 3\]"),
        # out of range / not an allowed code
        ((",2,male", ",7,male"), r"'GOLD' \(gold\), row 2 \(subject 'P002'\): must be one of"),
        ((",42.5,", ",420,"), r"'Pack-years' \(pack_years\), row 2 .* must be <= 300"),
        # unknown text code
        (("female", "unknown"), (r"'Sex' \(sex\), row 4 \(subject 'P004'\): 'unknown' is not "
                                 r"a number \(or one of")),
    ],
)
def test_bad_labels_name_file_column_row_and_subject(tmp_path: Path, edit: tuple[str, str],
                                                     message: str) -> None:
    path = _csv(tmp_path, LAB.replace(*edit, 1))
    with pytest.raises(LabelsError, match=message) as err:
        read_lab_labels(path, MAP)
    assert str(path) in str(err.value)


def test_fev1pp_as_fraction_and_missing_ids_are_refused(tmp_path: Path) -> None:
    fractions = "subject_id,fev1pp\na,0.8\nb,0.55\nc,0.9\n"
    with pytest.raises(LabelsError, match=r"'fev1pp'.*fraction.*percent"):
        read_lab_labels(_csv(tmp_path, fractions))
    with pytest.raises(LabelsError, match="no subject id column"):
        read_lab_labels(_csv(tmp_path, LAB), {"FEV1 % predicted": "fev1pp"})
    with pytest.raises(LabelsError, match=r"row 2: no subject id"):
        read_lab_labels(_csv(tmp_path, "subject_id,age\na,50\n,60\n"))
    with pytest.raises(LabelsError, match="not found"):
        read_lab_labels(tmp_path / "nope.csv")


def test_unknown_ids_are_listed_not_fatal(tmp_path: Path) -> None:
    frame, _ = read_lab_labels(_csv(tmp_path, LAB), MAP)
    match = match_subjects(frame, ["P001", "P002", "P004", "P009"], "labels.csv")
    assert match.matched == ["P001", "P002", "P004"]
    assert match.labels_without_scan == ["P003"] and match.scans_without_labels == ["P009"]
    assert "P003" in match.text() and "P009" in match.text()
    with pytest.raises(LabelsError, match="no subject id matches a scan"):
        match_subjects(frame, ["SYN00000"], "labels.csv")


def test_generator_columns_live_in_the_truth_table(tmp_path: Path) -> None:
    labels = pd.DataFrame({"subject_id": ["a", "b"], "gold": [0, 2],
                           "true_emphysema_fraction": [0.0, 0.1]})
    write_table(labels, tmp_path / "labels.parquet", "labels")
    assert "true_emphysema_fraction" not in read_frame(tmp_path / "labels.parquet", "labels")
    with pytest.raises(SchemaError, match="missing column"):
        write_table(labels, tmp_path / "truth.parquet", "truth")
    assert "true_emphysema_fraction" not in read_labels(tmp_path / "labels.parquet",
                                                        tmp_path / "truth.parquet")
    with pytest.raises(SchemaError, match="subject_id"):
        write_table(labels.drop(columns="subject_id"), tmp_path / "x.parquet", "labels")
