"""Configuration and presets of the synthetic cohort generator."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from drasclr.config import ConfigError, StageConfig, check, check_range


@dataclass(frozen=True)
class SynthConfig(StageConfig):
    """Everything that defines a synthetic cohort (saved as ``synth_config.yaml`` in its folder).

    Geometry: presets below ``paper`` render a *miniature* thorax (``anatomy_scale`` < 1) with the
    spacings scaled alike, so a subject costs seconds while anisotropy, pose and inspiration vary as
    in real scans. ``paper`` renders real-scan size: a 512 x 512 matrix at 0.6-0.9 mm in-plane and
    0.6-1.25 mm slices.
    """

    stage: ClassVar[str] = "synth"

    preset: str = "custom"
    mode: Literal["copd", "covid"] = "copd"
    n_subjects: int = 8
    seed: int = 0
    anatomy_scale: float = 1.0
    inplane_spacing_mm: tuple[float, float] = (0.6, 0.9)
    slice_spacing_mm: tuple[float, float] = (0.6, 1.25)
    matrix_xy: int | None = 512
    fov_mm: tuple[float, float, float] = (360.0, 360.0, 300.0)
    rotation_deg_max: float = 4.0
    translation_mm_max: float = 12.0
    noise_hu: tuple[float, float] = (12.0, 45.0)
    blur_mm: tuple[float, float] = (0.4, 1.0)
    dicom_every: int = 0
    healthy_boxes_per_subject: int = 4
    max_boxes_per_subtype: int = 8
    id_prefix: str = "SYN"

    def validate(self) -> None:
        """Check ranges; errors name the field."""
        s = self.stage
        check(self.n_subjects >= 1, s, "n_subjects", f"must be >= 1, got {self.n_subjects}")
        check(self.n_subjects <= 100_000, s, "n_subjects", "more than 100000 subjects")
        check(0.2 <= self.anatomy_scale <= 1.5, s, "anatomy_scale", f"must be in [0.2, 1.5], got {self.anatomy_scale}")
        check_range(self.inplane_spacing_mm, s, "inplane_spacing_mm", 0.2, 5.0)
        check_range(self.slice_spacing_mm, s, "slice_spacing_mm", 0.2, 10.0)
        check(self.matrix_xy is None or 32 <= self.matrix_xy <= 1024, s, "matrix_xy", "must be in [32, 1024]")
        check(all(20.0 <= f <= 600.0 for f in self.fov_mm), s, "fov_mm", f"each side in [20, 600] mm, got {self.fov_mm}")
        check(0.0 <= self.rotation_deg_max <= 20.0, s, "rotation_deg_max", "must be in [0, 20] degrees")
        check(0.0 <= self.translation_mm_max <= 50.0, s, "translation_mm_max", "must be in [0, 50] mm")
        check_range(self.noise_hu, s, "noise_hu", 0.0, 200.0)
        check_range(self.blur_mm, s, "blur_mm", 0.0, 5.0)
        check(self.dicom_every >= 0, s, "dicom_every", "must be >= 0 (0 = no DICOM)")
        check(self.healthy_boxes_per_subject >= 0, s, "healthy_boxes_per_subject", "must be >= 0")
        check(self.max_boxes_per_subtype >= 0, s, "max_boxes_per_subtype", "must be >= 0")
        check(self.id_prefix.isalnum(), s, "id_prefix", f"must be alphanumeric, got {self.id_prefix!r}")
        shape = self.max_shape()
        check(shape[0] * shape[1] * shape[2] <= 200_000_000, s, "fov_mm", f"volume too large: {shape}")

    def max_shape(self) -> tuple[int, int, int]:
        """Largest (nx, ny, nz) any subject can get."""
        nxy = self.matrix_xy or int(round(max(self.fov_mm[:2]) / self.inplane_spacing_mm[0]))
        nz = int(round(self.fov_mm[2] / self.slice_spacing_mm[0]))
        return (nxy, nxy, nz)

    def content_key(self) -> str:
        """Fingerprint of what defines the cohort's content."""
        return self.fingerprint()


_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        n_subjects=8, anatomy_scale=0.35, inplane_spacing_mm=(1.6, 2.0), slice_spacing_mm=(1.8, 2.4),
        matrix_xy=None, fov_mm=(130.0, 130.0, 115.0), rotation_deg_max=3.0, translation_mm_max=4.0,
        dicom_every=4, healthy_boxes_per_subject=2, max_boxes_per_subtype=4,
    ),
    "demo": dict(
        n_subjects=48, anatomy_scale=0.55, inplane_spacing_mm=(1.0, 1.3), slice_spacing_mm=(1.0, 1.6),
        matrix_xy=None, fov_mm=(200.0, 200.0, 180.0), rotation_deg_max=4.0, translation_mm_max=7.0,
        dicom_every=12,
    ),
    "bench": dict(
        n_subjects=200, anatomy_scale=0.55, inplane_spacing_mm=(1.0, 1.3), slice_spacing_mm=(1.0, 1.6),
        matrix_xy=None, fov_mm=(200.0, 200.0, 180.0), rotation_deg_max=4.0, translation_mm_max=7.0,
        dicom_every=0,
    ),
    "paper": dict(
        n_subjects=2, anatomy_scale=1.0, inplane_spacing_mm=(0.6, 0.9), slice_spacing_mm=(0.6, 1.25),
        matrix_xy=512, fov_mm=(360.0, 360.0, 300.0), rotation_deg_max=4.0, translation_mm_max=12.0,
        dicom_every=0,
    ),
}

PRESETS = tuple(_PRESETS)


def preset_config(name: str, **overrides: Any) -> SynthConfig:
    """The named preset, with field overrides (``None`` values are ignored)."""
    if name not in _PRESETS:
        raise ConfigError(f"synth.preset: unknown preset {name!r}; choose one of {list(_PRESETS)}")
    fields = {f.name for f in dataclasses.fields(SynthConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ConfigError(f"synth: unknown option(s) {unknown}")
    values = {**_PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}}
    if values.get("mode") == "covid" and "id_prefix" not in overrides:
        values["id_prefix"] = "COV"
    return SynthConfig(preset=name, **values)
