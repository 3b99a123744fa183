"""Frozen stage configs: validation, YAML round trip, fingerprints."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import pytest

from drasclr.config import ConfigError, StageConfig, check


@dataclass(frozen=True)
class Demo(StageConfig):
    stage: ClassVar[str] = "demo"
    n: int = 3
    rate: float = 0.5
    window: tuple[float, float] = (-1024.0, 240.0)
    kind: Literal["a", "b"] = "a"
    name: str | None = None

    def validate(self) -> None:
        check(self.n > 0, self.stage, "n", "must be positive")


def test_round_trip(tmp_path: Path) -> None:
    cfg = Demo(n=5, rate=1, window=[-1000, 100], kind="b")
    assert cfg.window == (-1000.0, 100.0) and isinstance(cfg.rate, float)
    path = cfg.save(tmp_path / "c.yaml")
    again = Demo.load(path)
    assert again == cfg
    assert again.fingerprint() == cfg.fingerprint()
    assert cfg.replace(n=6).fingerprint() != cfg.fingerprint()


def test_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Demo().n = 4  # type: ignore[misc]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n": 0}, "demo.n: must be positive"),
        ({"n": "3"}, "expected an integer"),
        ({"kind": "c"}, "not one of"),
        ({"window": [1.0]}, "expected 2 values"),
        ({"rate": True}, "expected a number"),
    ],
)
def test_validation_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Demo(**kwargs)


def test_load_errors(tmp_path: Path) -> None:
    p = tmp_path / "x.yaml"
    p.write_text("stage: other\nn: 2\n")
    with pytest.raises(ConfigError, match="holds a 'other' config"):
        Demo.load(p)
    p.write_text("stage: demo\nbogus: 2\n")
    with pytest.raises(ConfigError, match="unknown key"):
        Demo.load(p)
    p.write_text(": : :\n")
    with pytest.raises(ConfigError, match="cannot read config"):
        Demo.load(p)


def test_claim_resumes_the_same_config_and_refuses_another(tmp_path: Path) -> None:
    """A run folder's config: the same settings resume, other settings are refused untouched."""
    path = tmp_path / "run" / "demo.yaml"
    path.parent.mkdir()
    Demo(n=4).claim(path)
    assert Demo(n=4).claim(path) == path
    with pytest.raises(ConfigError, match="holds a run with other settings"):
        Demo(n=5).claim(path)
    assert Demo.load(path) == Demo(n=4)
