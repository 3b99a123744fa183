"""Frozen, validated stage configurations with YAML load/save.

Every stage (synth, preprocess, pretrain, ...) declares one frozen dataclass that inherits
:class:`StageConfig`. A config validates itself on construction, round-trips through YAML, and is
saved next to the stage's outputs so that the next stage (or a re-run) reads it from there.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml

from drasclr.fsutil import atomic_write_text

C = TypeVar("C", bound="StageConfig")


class ConfigError(ValueError):
    """A configuration value is missing, of the wrong type or out of range."""


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Coerce a YAML/JSON value to a dataclass field annotation (tuples, nested configs)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        last_err: Exception | None = None
        for a in non_none:
            try:
                return _coerce(value, a, where)
            except ConfigError as err:
                last_err = err
        raise last_err or ConfigError(f"{where}: cannot interpret {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return {k: _coerce(v, args[1], f"{where}.{k}") for k, v in value.items()}
    if isinstance(annotation, type) and issubclass(annotation, StageConfig):
        if isinstance(value, annotation):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return annotation.from_dict(value)
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


@dataclasses.dataclass(frozen=True)
class StageConfig:
    """Base of all stage configs: frozen, validated, YAML round-trip, stable hash.

    Subclasses add fields and override :meth:`validate` (raise :class:`ConfigError`).
    """

    stage: ClassVar[str] = "stage"

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            coerced = _coerce(value, hints[f.name], f"{self.stage}.{f.name}")
            if coerced is not value:
                object.__setattr__(self, f.name, coerced)
        self.validate()

    def validate(self) -> None:
        """Check ranges and cross-field rules; raise ConfigError with the field name."""

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict (tuples become lists) suitable for YAML/JSON."""

        def plain(v: Any) -> Any:
            if isinstance(v, StageConfig):
                return v.to_dict()
            if isinstance(v, (list, tuple)):
                return [plain(x) for x in v]
            if isinstance(v, dict):
                return {k: plain(x) for k, x in v.items()}
            return v

        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        """Build from a mapping; unknown keys are an error naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"{cls.stage}: unknown key(s) {unknown}; known: {sorted(names)}")
        try:
            return cls(**data)
        except TypeError as err:  # missing required fields
            raise ConfigError(f"{cls.stage}: {err}") from err

    def replace(self: C, **changes: Any) -> C:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_yaml(self) -> str:
        """YAML text with a header naming the stage."""
        return yaml.safe_dump({"stage": self.stage, **self.to_dict()}, sort_keys=False)

    def save(self, path: str | Path) -> Path:
        """Write the config as YAML atomically; returns the path."""
        path = Path(path)
        atomic_write_text(path, self.to_yaml())
        return path

    @classmethod
    def load(cls: type[C], path: str | Path) -> C:
        """Read a YAML (or JSON) config written by :meth:`save` or by hand."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"{path}: cannot read config: {err}") from err
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a config must be a mapping")
        stage = data.pop("stage", cls.stage)
        if stage != cls.stage:
            raise ConfigError(f"{path}: holds a '{stage}' config, expected '{cls.stage}'")
        try:
            return cls.from_dict(data)
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from err

    def claim(self, path: str | Path) -> Path:
        """Save as the config of a resumable run folder, refusing a folder made with another one.

        Args:
            path: the run folder's config file (e.g. ``<run>/pipeline.yaml``).

        Raises:
            ConfigError: ``path`` holds a different config of this stage.
        """
        path = Path(path)
        if path.exists() and type(self).load(path) != self:
            raise ConfigError(f"{path.parent}: holds a run with other settings ({path}); use "
                              "another folder or the same settings to resume")
        return self.save(path)

    def fingerprint(self) -> str:
        """Stable short hash of the config's content (for skip-if-done checks)."""
        blob = json.dumps(self.to_dict(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def check(condition: bool, stage: str, field: str, message: str) -> None:
    """Raise ConfigError('<stage>.<field>: <message>') unless condition holds."""
    if not condition:
        raise ConfigError(f"{stage}.{field}: {message}")


def check_range(
    value: tuple[float, float], stage: str, field: str, lo: float, hi: float
) -> None:
    """Validate a (min, max) pair lies in [lo, hi] and is ordered."""
    check(len(value) == 2, stage, field, f"expected (min, max), got {value}")
    check(value[0] <= value[1], stage, field, f"min {value[0]} > max {value[1]}")
    check(lo <= value[0] and value[1] <= hi, stage, field, f"{value} outside [{lo}, {hi}]")
