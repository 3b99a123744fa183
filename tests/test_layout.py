"""The package layout: imports flow one way and image math stays free of Ray.

Layers, lowest first (a module may import its own layer and the layers below it):

0. ``config``, ``fsutil``, ``tables``, ``uri``, ``raytools``, ``probing``, ``labels``, ``faults``
1. ``imaging`` (pure image math; never imports Ray)
2. ``report.plotting``, ``report.qc``, ``report.figures``, ``report.cohort`` (the one plotting
   layer every stage may draw with) and ``synth`` (the cohort generator)
3. ``store``
4. ``preprocess``
5. ``nn``, ``moco``
6. ``train``
7. ``features``
8. ``evaluate``
9. ``report`` (the Markdown report)
10. ``pipeline``, ``tune``, ``bench``, ``commands``, ``cli``
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import drasclr

PACKAGE = Path(drasclr.__file__).parent

_LAYERS: dict[str, int] = {
    "drasclr": 0, "drasclr.config": 0, "drasclr.fsutil": 0, "drasclr.tables": 0,
    "drasclr.uri": 0, "drasclr.raytools": 0, "drasclr.probing": 0, "drasclr.labels": 0,
    "drasclr.faults": 0,
    "drasclr.imaging": 1,
    "drasclr.report.plotting": 2, "drasclr.report.qc": 2, "drasclr.report.figures": 2,
    "drasclr.report.cohort": 2,
    "drasclr.synth": 2,
    "drasclr.store": 3,
    "drasclr.preprocess": 4,
    "drasclr.nn": 5, "drasclr.moco": 5,
    "drasclr.train": 6,
    "drasclr.features": 7,
    "drasclr.evaluate": 8,
    "drasclr.report": 9,
    "drasclr.pipeline": 10, "drasclr.tune": 10, "drasclr.bench": 10, "drasclr.commands": 10,
    "drasclr.cli": 10,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _layer(module: str) -> int:
    """Layer of ``module``: the longest matching prefix in :data:`_LAYERS`."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        key = ".".join(parts[:n])
        if key in _LAYERS:
            return _LAYERS[key]
    raise KeyError(f"{module} is in no layer; add it to tests/test_layout.py")


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every imported module name of a file (top level and inside functions), with its line."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
            if node.module == "drasclr":  # `from drasclr import x`: x may be a module
                out += [(node.lineno, f"drasclr.{a.name}") for a in node.names
                        if (PACKAGE / a.name).exists() or (PACKAGE / f"{a.name}.py").exists()]
    return out


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: _module_name(p))
def test_imports_flow_one_way(path: Path) -> None:
    me = _module_name(path)
    mine = _layer(me)
    upward = [f"line {line}: {mod} (layer {_layer(mod)})" for line, mod in _imports(path)
              if mod.startswith("drasclr") and _layer(mod) > mine]
    assert not upward, f"{me} (layer {mine}) imports from higher layers: {upward}"


def test_imaging_never_imports_ray() -> None:
    offenders = [f"{_module_name(p)} line {line}"
                 for p in sorted((PACKAGE / "imaging").rglob("*.py"))
                 for line, mod in _imports(p) if mod == "ray" or mod.startswith("ray.")]
    assert not offenders, offenders


def test_every_module_has_a_layer() -> None:
    for path in MODULES:
        _layer(_module_name(path))
