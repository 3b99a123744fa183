"""CI and packaging contracts: a broken environment fails CI; floors cover the APIs used."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def _floors() -> dict[str, tuple[int, ...]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    out = {}
    for req in project["dependencies"]:
        m = re.match(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?\s*(?:>=|==)\s*([0-9][0-9.]*)", req)
        assert m, f"dependency without a floor: {req!r}"
        out[m.group(1).lower()] = tuple(int(p) for p in m.group(2).split(".") if p)
    return out


def test_ci_fails_on_a_broken_environment() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    assert "set -euo pipefail" in script
    checks = [ln for ln in script.splitlines() if "pip check" in ln and not ln.startswith("#")]
    assert checks, ".ci/run must run pip check"
    for line in checks:
        assert "||" not in line, f"pip check's failure is swallowed: {line!r}"


def test_every_dependency_has_a_floor_that_covers_the_apis_used() -> None:
    floors = _floors()  # asserts that every dependency names a lowest version
    assert floors["scikit-learn"] >= (1, 6)  # GroupKFold(shuffle=..., random_state=...)
    assert floors["zarr"] >= (3, 0) and floors["numpy"] >= (1, 25)  # zarr 3 needs numpy 1.25
    assert floors["ray"] >= (2, 51)  # Ray Train V2 is the default from 2.51
    assert "pydicom" in floors  # drasclr.imaging.io checks DICOM with it; drasclr.synth.dicom writes it
