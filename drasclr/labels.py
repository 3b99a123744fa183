"""The labels contract for real data: a lab's table of clinical variables, checked and normalised.

A lab brings one row per subject with ``subject_id`` and whichever clinical columns it has
(``schemas/labels.json``: FEV1pp, FEV1/FVC, GOLD, CLE and paraseptal scores, exacerbation
history, BODE, survival time/event, age, sex, race, smoking status, pack-years, BMI, COVID-like
grade), as CSV or Parquet. Headers are matched to the contract's column names ignoring case,
spaces and punctuation (``FEV1/FVC`` → ``fev1_fvc``, ``Pack-years`` → ``pack_years``); other
headers are mapped with ``columns`` (``{"FEV1 % predicted": "fev1pp"}``). Headers that match
nothing are ignored and listed. Values are checked for type, unit and range, and every error names
the file, the header, the contract column, the row (1-based, as a spreadsheet counts data rows)
and the subject. Generator-only columns (latents, true disease fractions) are not part of the
contract: synthetic cohorts keep them in a separate ``truth.parquet`` (schema ``truth``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from drasclr.tables import Column, SchemaError, conform, load_schema, read_frame

ID = "subject_id"

#: Text codes accepted for coded columns (lower case) besides their numeric codes.
TEXT_CODES: dict[str, dict[str, int]] = {
    "sex": {"f": 0, "female": 0, "w": 0, "woman": 0, "m": 1, "male": 1, "man": 1},
    "smoking_status": {"former": 0, "ex": 0, "ex-smoker": 0, "current": 1, "smoker": 1},
    "prism": {"false": 0, "no": 0, "true": 1, "yes": 1},
    "exacerbation_history": {"no": 0, "yes": 1},
    "survival_event": {"censored": 0, "alive": 0, "dead": 1, "death": 1, "died": 1},
}

#: Unit checks: column -> (is the whole column in the wrong unit?, which values show it, what is
#: wrong and how to fix it).
_UNITS: dict[str, tuple[Any, Any, str]] = {
    "fev1_fvc": (lambda v: v.max() > 1.0 and v.max() <= 100.0, lambda v: v > 1.0,
                 ("looks like a percentage; FEV1/FVC must be a ratio between 0 and 1 "
                  "(e.g. 0.62, not 62): divide the column by 100")),
    "fev1pp": (lambda v: len(v) >= 3 and v.max() <= 2.0, lambda v: v <= 2.0,
               ("looks like a fraction; FEV1pp must be in percent predicted (e.g. 78, not 0.78): "
                "multiply the column by 100")),
}


class LabelsError(SchemaError):
    """A labels table breaks the contract (the message names file, column, row and subject)."""


def _key(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", str(name).lower())


def contract_columns() -> tuple[Column, ...]:
    """The columns of the labels contract (``schemas/labels.json``)."""
    return load_schema("labels").columns


@dataclass(frozen=True)
class LabelsCheck:
    """What :func:`read_lab_labels` found besides the table itself.

    Attributes:
        source: the file read.
        renamed: lab header → contract column, for every header used.
        ignored: headers that match no contract column (left out).
        absent: contract columns the table does not have.
    """

    source: str
    renamed: dict[str, str]
    ignored: list[str]
    absent: list[str]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record."""
        return {"source": self.source, "renamed": self.renamed, "ignored": self.ignored,
                "absent": self.absent}


def parse_column_map(items: Sequence[str]) -> dict[str, str]:
    """``["Lab header=contract_column", ...]`` (the ``--label-column`` option) → a mapping.

    Raises:
        LabelsError: an item without ``=`` or naming no contract column.
    """
    names = {c.name for c in contract_columns()}
    out: dict[str, str] = {}
    for item in items:
        header, sep, column = str(item).rpartition("=")
        if not sep or not header.strip():
            raise LabelsError(f"label column mapping {item!r}: write it as 'Your header=column'")
        if column.strip() not in names:
            raise LabelsError(f"label column mapping {item!r}: {column.strip()!r} is not a labels "
                              f"column; choose from {sorted(names)}")
        out[header.strip()] = column.strip()
    return out


def _read_raw(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise LabelsError(f"{path}: labels table not found")
    try:
        if path.suffix.lower() == ".csv":
            return pd.read_csv(path, dtype=str, skipinitialspace=True)
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
    except (ValueError, OSError) as err:
        raise LabelsError(f"{path}: not a readable table: {err}") from err
    raise LabelsError(f"{path}: a labels table must be .csv or .parquet")


def _rename(raw: pd.DataFrame, columns: Mapping[str, str], path: Path
            ) -> tuple[dict[str, str], list[str]]:
    """Lab header → contract column, and the ignored headers."""
    missing = [h for h in columns if h not in raw.columns]
    if missing:
        raise LabelsError(f"{path}: mapped header(s) {missing} not in the table; its headers are "
                          f"{list(raw.columns)}")
    by_key = {_key(c.name): c.name for c in contract_columns()}
    renamed = {h: c for h, c in columns.items()}
    for h in raw.columns:
        if h not in renamed and _key(h) in by_key and by_key[_key(h)] not in renamed.values():
            renamed[h] = by_key[_key(h)]
    seen: dict[str, str] = {}
    for h, c in renamed.items():
        if c in seen:
            raise LabelsError(f"{path}: headers {seen[c]!r} and {h!r} both map to {c!r}")
        seen[c] = h
    return renamed, [h for h in raw.columns if h not in renamed]


def _where(path: Path, header: str, column: str, row: int, sid: Any) -> str:
    named = f"'{header}'" + ("" if header == column else f" ({column})")
    return f"{path}: column {named}, row {row + 1} (subject {sid!r})"


def _as_numbers(values: pd.Series, col: Column, header: str, ids: pd.Series, path: Path
                ) -> pd.Series:
    """Numeric values of one column; text codes translated; errors name the first bad row."""
    codes = TEXT_CODES.get(col.name, {})
    text = values.astype("string").str.strip()
    coded = text.str.lower().map(lambda s: codes.get(s, s) if isinstance(s, str) else s)
    num = pd.to_numeric(coded, errors="coerce").astype(np.float64)
    bad = np.flatnonzero(num.isna().to_numpy() & text.notna().to_numpy()
                         & (text.fillna("") != "").to_numpy())
    if len(bad):
        r = int(bad[0])
        hint = f" (or one of {sorted(codes)})" if codes else ""
        raise LabelsError(f"{_where(path, header, col.name, r, ids.iloc[r])}: {values.iloc[r]!r} "
                          f"is not a number{hint}")
    return num


def _check_values(num: pd.Series, col: Column, header: str, ids: pd.Series, path: Path) -> None:
    """Units, integer codes, ranges and allowed values of one numeric column."""
    ok = num.dropna()
    if col.name in _UNITS and len(ok) and _UNITS[col.name][0](ok):
        wrong, what = _UNITS[col.name][1], _UNITS[col.name][2]
        r = int(ok.index[np.flatnonzero(wrong(ok).to_numpy())[0]])
        raise LabelsError(f"{_where(path, header, col.name, r, ids.iloc[r])}: {num.iloc[r]:g} "
                          f"(values {ok.min():g} to {ok.max():g}) {what}")
    tests: list[tuple[np.ndarray, str]] = []
    if col.type.startswith("int") or col.type == "bool":
        tests.append((ok.to_numpy() != np.round(ok.to_numpy()), "must be a whole number"))
    if col.min is not None:
        low = ok.to_numpy() <= col.min if col.exclusive_min else ok.to_numpy() < col.min
        tests.append((low, f"must be {'>' if col.exclusive_min else '>='} {col.min:g}"))
    if col.max is not None:
        tests.append((ok.to_numpy() > col.max, f"must be <= {col.max:g}"))
    allowed = col.allowed if col.type != "bool" else (0, 1)
    if allowed is not None:
        tests.append((~np.isin(ok.to_numpy(), np.asarray(allowed, float)),
                      f"must be one of {list(allowed)}"))
    for bad, what in tests:
        if bad.any():
            r = int(ok.index[np.flatnonzero(bad)[0]])
            raise LabelsError(f"{_where(path, header, col.name, r, ids.iloc[r])}: {what}; it is "
                              f"{num.iloc[r]:g}")


def _subject_ids(raw: pd.DataFrame, header: str | None, path: Path) -> pd.Series:
    if header is None:
        raise LabelsError(f"{path}: no subject id column (headers {list(raw.columns)}); name it "
                          "subject_id or map yours, e.g. --label-column 'Patient ID=subject_id'")
    ids = raw[header].astype("string").str.strip()
    empty = np.flatnonzero(ids.isna().to_numpy() | (ids.fillna("") == "").to_numpy())
    if len(empty):
        raise LabelsError(f"{path}: column '{header}' (subject_id), row {empty[0] + 1}: no subject "
                          "id")
    dup = ids[ids.duplicated(keep=False)]
    if len(dup):
        rows = {s: [int(i) + 1 for i in np.flatnonzero(ids.to_numpy() == s)] for s in dup.unique()}
        listed = "; ".join(f"{s!r} in rows {r}" for s, r in list(rows.items())[:5])
        raise LabelsError(f"{path}: column '{header}' (subject_id): duplicate subject id(s): "
                          f"{listed}")
    return ids.astype(str)


def read_lab_labels(path: str | Path, columns: Mapping[str, str] | None = None
                    ) -> tuple[pd.DataFrame, LabelsCheck]:
    """Read a lab's labels table (CSV or Parquet) into the contract's columns and check it.

    Args:
        path: the table.
        columns: lab header → contract column for headers not matched by name.

    Returns:
        ``(labels frame in the contract's columns and types, what was renamed/ignored/absent)``.

    Raises:
        LabelsError: unreadable table, no or duplicate subject ids, a non-numeric value, a value
            in the wrong unit or outside its range; the message names file, column, row, subject.
    """
    path = Path(path)
    raw = _read_raw(path).reset_index(drop=True)
    renamed, ignored = _rename(raw, dict(columns or {}), path)
    header_of = {c: h for h, c in renamed.items()}
    ids = _subject_ids(raw, header_of.get(ID), path)
    out: dict[str, Any] = {ID: ids}
    for col in contract_columns():
        if col.name == ID or col.name not in header_of:
            continue
        h = header_of[col.name]
        num = _as_numbers(raw[h], col, h, ids, path)
        _check_values(num, col, h, ids, path)
        out[col.name] = num
    frame = pd.DataFrame(out)
    typed = conform(_with_arrow_types(frame), load_schema("labels"), str(path)).to_pandas()
    absent = [c.name for c in contract_columns() if c.name not in frame]
    return typed, LabelsCheck(str(path), renamed, ignored, absent)


def _with_arrow_types(frame: pd.DataFrame) -> pd.DataFrame:
    """Nullable pandas dtypes so integer and bool columns with gaps cast cleanly to Arrow."""
    types = {c.name: c.type for c in contract_columns()}
    out = {}
    for name, values in frame.items():
        t = types[str(name)]
        if t == "bool":
            out[name] = values.astype("boolean")
        elif t.startswith("int"):
            out[name] = values.astype("Int64")
        else:
            out[name] = values
    return pd.DataFrame(out)


@dataclass(frozen=True)
class SubjectMatch:
    """Labels vs scans: who has both, and who has only one of them (listed, not fatal)."""

    matched: list[str]
    labels_without_scan: list[str]
    scans_without_labels: list[str]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record."""
        return {"matched": len(self.matched), "labels_without_scan": self.labels_without_scan,
                "scans_without_labels": self.scans_without_labels}

    def text(self) -> str:
        """One line per finding, for the console."""
        lines = [f"labels: {len(self.matched)} subject(s) have a scan and labels"]
        for what, ids in (("label row(s) match no scan", self.labels_without_scan),
                          ("scan(s) have no labels", self.scans_without_labels)):
            if ids:
                more = f" (+{len(ids) - 10} more)" if len(ids) > 10 else ""
                lines.append(f"labels: {len(ids)} {what}: {', '.join(ids[:10])}{more}")
        return "\n".join(lines)


def match_subjects(labels: pd.DataFrame, scan_ids: Sequence[str], source: str) -> SubjectMatch:
    """Compare label ids with scan ids.

    Raises:
        LabelsError: no label row matches any scan (names a few of each so the mismatch shows).
    """
    lab = [str(s) for s in labels[ID]]
    scans = [str(s) for s in scan_ids]
    matched = sorted(set(lab) & set(scans))
    if not matched:
        raise LabelsError(f"{source}: no subject id matches a scan; labels have {lab[:3]}..., "
                          f"scans are named {scans[:3]}... (scan ids are file names without "
                          "suffix, or DICOM folder names)")
    return SubjectMatch(matched, sorted(set(lab) - set(scans)), sorted(set(scans) - set(lab)))


def read_labels(labels: str | Path, truth: str | Path | None = None) -> pd.DataFrame:
    """A labels table (schema ``labels``), joined with a generator truth table when given.

    Args:
        labels: ``labels.parquet`` (or CSV) in the contract's column names.
        truth: ``truth.parquet`` of a synthetic cohort; ignored when None or absent.
    """
    frame = read_frame(labels, "labels").astype({ID: str})
    if truth is not None and Path(truth).is_file():
        t = read_frame(truth, "truth").astype({ID: str})
        frame = frame.merge(t[[ID, *[c for c in t if c not in frame]]], on=ID, how="left")
    return frame


def missing_columns(labels: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    """The ``columns`` that ``labels`` lacks or holds no value in."""
    return [c for c in columns if c not in labels or labels[c].notna().sum() == 0]
