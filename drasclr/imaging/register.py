"""Affine registration of a subject lung mask (moving) to the atlas lung mask (fixed) with ANTs.

Runs ``antsRegistration`` in-process through antspyx's low-level entry point (``ants.internal``,
antspyx >= 0.5): the high-level ``ants.registration`` fixes ``Affine[0.25]`` and keeps the seed in
global state, so neither the published ``Affine[0.01]`` nor a per-call seed could be expressed.
Both masks are first block-averaged to about ``resolution_mm`` (partial-volume fractions, so a 1 mm
mask becomes a smooth 4 mm image), then an affine transform is optimised with Mattes mutual
information over a small pyramid, starting from a centre-of-mass alignment.
:func:`register_with_retries` scores that result with a QC metric and, when it falls short, runs the
registration again from other starts (principal axes, a coarse rotation search; see
:mod:`drasclr.imaging.align_init`) and keeps the best; :attr:`Registration.start` records the
winner. :func:`map_landmarks` carries atlas landmarks into the subject and
:func:`registration_qc` gives the per-subject QC of DESIGN.md 3.3 (Dice of the warped subject mask
with the atlas mask, share of landmark patches inside the field of view).

Direction convention (ITK/ANTs, LPS mm): :attr:`Registration.matrix` maps a point of the FIXED
(atlas) space to the corresponding point of the MOVING (subject) space, ``p_subject = M @ [p, 1]``;
this is the transform ANTs writes (it resamples the moving image onto the fixed grid) and the one
that carries landmarks into a subject (DESIGN.md 3.3). :attr:`Registration.inverse` maps subject
points back into the atlas.

Determinism: every call passes ``--random-seed`` (the same as setting ``ANTS_RANDOM_SEED``) and sets
``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS`` to ``config.threads``. Measured with antspyx 0.6.3:

* with 1 thread, repeated runs give bit-identical transforms; with 2 or more threads the result
  changes from run to run in the 4th-5th digit (sub-0.1 mm), whatever the ITK threader;
* ITK reads the variable once per process, at the first ANTs call, so the thread count of the first
  registration in a process holds for all later ones (a different request only warns). Set the
  variable in the worker's environment (e.g. a Ray ``runtime_env``) to be explicit.
"""

from __future__ import annotations

import glob
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar, Literal

import numpy as np
import SimpleITK as sitk
from numpy.typing import ArrayLike, NDArray

from drasclr.config import StageConfig, check
from drasclr.imaging.geometry import GeometryArrays, geometry_arrays, transform_points
from drasclr.imaging.overlap import dice as overlap_dice
from drasclr.imaging.patches import patch_corners, patch_in_view
from drasclr.imaging.resample import block_mean

__all__ = [
    "STARTS",
    "RegistrationError",
    "RegisterConfig",
    "Registration",
    "register_affine",
    "register_with_retries",
    "map_landmarks",
    "warp_mask_to_fixed",
    "dice",
    "registration_qc",
]


THREADS_ENV = "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"


_first_threads: int | None = None  # ANTs thread count fixed in this process (see module doc)


Start = Literal["centre_of_mass", "geometric_centre", "identity", "principal_axes",
                "rotation_search"]


STARTS: tuple[str, ...] = ("centre_of_mass", "geometric_centre", "identity", "principal_axes",
                           "rotation_search")
"""Initial alignments: ANTs' own translations (centre of mass of the mask image, geometric centre,
none) or an affine computed by :mod:`drasclr.imaging.align_init` (principal axes, rotation search)."""


class RegistrationError(RuntimeError):
    """antsRegistration failed or produced no transform."""


@dataclass(frozen=True)
class RegisterConfig(StageConfig):
    """Settings of the affine mask-to-atlas registration (defaults: the measured fast preset).

    Attributes:
        resolution_mm: masks are block-averaged to about this voxel size before registering
            (``None``: native resolution).
        intensity: ``binary`` (any label = 1) or ``labels`` (distinct non-zero labels ranked to
            50/100, like the published pipeline; the atlas uses 50 = right, 100 = left lung).
        metric: ANTs metric: ``Mattes`` (Mattes MI), ``MI`` (ANTs joint-histogram MI, published),
            ``MeanSquares``.
        bins: histogram bins of the MI metrics.
        sampling: metric sampling strategy (``Regular`` perturbs points within grid cells with the
            seed; ``None`` uses every voxel).
        sampling_rate: fraction of voxels sampled.
        gradient_step: ``Affine[gradient_step]`` learning rate.
        iterations: maximum iterations per pyramid level, coarse to fine.
        shrink_factors: pyramid shrink factor per level (relative to ``resolution_mm``).
        smoothing_sigmas: Gaussian sigma per level, in voxels.
        convergence_threshold: stop a level when the normalised metric slope falls below this.
        convergence_window: iterations over which the slope is measured.
        initialisation: start of the first attempt, one of :data:`STARTS`: ``centre_of_mass``
            / ``geometric_centre`` translation, ``identity``, ``principal_axes`` (centroids, axes
            and spreads of the two masks) or ``rotation_search`` (best of a coarse rotation grid).
        retry_starts: starts tried, in order, when the first attempt fails QC
            (:func:`register_with_retries`); the best by the QC metric is kept.
        random_seed: ANTs random seed (sampling perturbation).
        threads: ITK threads; 1 is bit-reproducible (see the module docstring).
    """

    stage: ClassVar[str] = "register"

    resolution_mm: float | None = 4.0
    intensity: Literal["binary", "labels"] = "binary"
    metric: Literal["Mattes", "MI", "MeanSquares"] = "Mattes"
    bins: int = 32
    sampling: Literal["Regular", "Random", "None"] = "Regular"
    sampling_rate: float = 0.1
    gradient_step: float = 0.1
    iterations: tuple[int, ...] = (100, 50)
    shrink_factors: tuple[int, ...] = (2, 1)
    smoothing_sigmas: tuple[float, ...] = (1.0, 0.0)
    convergence_threshold: float = 1e-5
    convergence_window: int = 10
    initialisation: Start = "centre_of_mass"
    retry_starts: tuple[Start, ...] = ("principal_axes", "rotation_search")
    random_seed: int = 1
    threads: int = 1

    def validate(self) -> None:
        """Check ranges and that the pyramid lists have one entry per level."""
        s = self.stage
        check(self.resolution_mm is None or self.resolution_mm > 0, s, "resolution_mm",
              f"must be positive or null, got {self.resolution_mm}")
        check(self.bins >= 4, s, "bins", f"must be >= 4, got {self.bins}")
        check(0.0 < self.sampling_rate <= 1.0, s, "sampling_rate",
              f"must lie in (0, 1], got {self.sampling_rate}")
        check(self.gradient_step > 0, s, "gradient_step",
              f"must be positive, got {self.gradient_step}")
        n = len(self.iterations)
        check(n >= 1, s, "iterations", "needs at least one level")
        check(all(i >= 0 for i in self.iterations), s, "iterations", "must be >= 0")
        check(len(self.shrink_factors) == n, s, "shrink_factors",
              f"needs {n} values (one per level), got {len(self.shrink_factors)}")
        check(all(f >= 1 for f in self.shrink_factors), s, "shrink_factors", "must be >= 1")
        check(len(self.smoothing_sigmas) == n, s, "smoothing_sigmas",
              f"needs {n} values (one per level), got {len(self.smoothing_sigmas)}")
        check(all(v >= 0 for v in self.smoothing_sigmas), s, "smoothing_sigmas", "must be >= 0")
        check(self.convergence_threshold > 0, s, "convergence_threshold", "must be positive")
        check(self.convergence_window >= 1, s, "convergence_window", "must be >= 1")
        check(self.random_seed >= 0, s, "random_seed", "must be >= 0")
        check(self.threads >= 1, s, "threads", f"must be >= 1, got {self.threads}")
        for start in (self.initialisation, *self.retry_starts):
            check(start in STARTS, s, "initialisation" if start == self.initialisation
                  else "retry_starts", f"unknown start {start!r}; one of {list(STARTS)}")

    @classmethod
    def published(cls) -> RegisterConfig:
        """The published DrasCLR ``antsRegistration`` call (DESIGN.md 6), at native 1 mm.

        ``Affine[0.01]``, ``MI[.., 1, 32, Regular, 0.5]``, ``500x250x100`` iterations,
        shrink ``4x2x1``, smoothing ``2x1x0`` voxels, masks relabelled 50/100. Threads stay at 1
        so it is comparable with the default preset.
        """
        return cls(
            resolution_mm=None,
            intensity="labels",
            metric="MI",
            bins=32,
            sampling="Regular",
            sampling_rate=0.5,
            gradient_step=0.01,
            iterations=(500, 250, 100),
            shrink_factors=(4, 2, 1),
            smoothing_sigmas=(2.0, 1.0, 0.0),
            convergence_threshold=1e-6,
            convergence_window=10,
        )


# ----------------------------------------------------------------------------- result
def _affine_from_itk(parameters: ArrayLike, fixed_parameters: ArrayLike) -> NDArray[np.float64]:
    """4x4 matrix of an ITK AffineTransform: ``y = A (x - c) + c + t``."""
    p = np.asarray(parameters, dtype=np.float64)
    c = np.asarray(fixed_parameters, dtype=np.float64)
    a = p[:9].reshape(3, 3)
    m = np.eye(4)
    m[:3, :3] = a
    m[:3, 3] = p[9:12] + c - a @ c
    return m


@dataclass(frozen=True, eq=False)
class Registration:
    """An affine registration result, in LPS mm.

    Attributes:
        matrix: (4, 4) maps FIXED (atlas) points to MOVING (subject) points.
        inverse: (4, 4) maps MOVING (subject) points to FIXED (atlas) points.
        ants_parameters: the 12 ITK ``AffineTransform`` parameters (row-major matrix, translation).
        ants_fixed_parameters: the transform's centre (3,), LPS mm.
        ants_transform_type: ITK type name as written by ANTs.
        random_seed: ANTs seed used.
        threads: ITK thread count requested.
        elapsed_s: wall time of the registration (preparation included), seconds.
        start: the initial alignment it was optimised from (one of :data:`STARTS`).
    """

    matrix: NDArray[np.float64]
    inverse: NDArray[np.float64]
    ants_parameters: tuple[float, ...]
    ants_fixed_parameters: tuple[float, ...]
    ants_transform_type: str = "AffineTransform_float_3_3"
    random_seed: int = 0
    threads: int = 1
    elapsed_s: float = 0.0
    start: str = "centre_of_mass"

    @classmethod
    def from_ants(
        cls, parameters: ArrayLike, fixed_parameters: ArrayLike, **meta: Any
    ) -> Registration:
        """Build from ITK AffineTransform parameters (fixed -> moving, as ANTs writes them)."""
        m = _affine_from_itk(parameters, fixed_parameters)
        return cls(
            matrix=m,
            inverse=np.linalg.inv(m),
            ants_parameters=tuple(float(v) for v in np.asarray(parameters).ravel()),
            ants_fixed_parameters=tuple(float(v) for v in np.asarray(fixed_parameters).ravel()),
            **meta,
        )

    @classmethod
    def from_matrix(cls, matrix: ArrayLike, **meta: Any) -> Registration:
        """Build from a 4x4 fixed -> moving matrix (e.g. a known synthetic transform)."""
        m = np.asarray(matrix, dtype=np.float64).reshape(4, 4)
        if not np.allclose(m[3], [0, 0, 0, 1]):
            raise ValueError(f"not an affine matrix: last row {m[3].tolist()}")
        params = np.concatenate([m[:3, :3].ravel(), m[:3, 3]])
        meta.setdefault("ants_transform_type", "AffineTransform_double_3_3")
        return cls.from_ants(params, np.zeros(3), **meta)

    def to_ants_transform(self) -> Any:
        """The transform as an ``ants.ANTsTransform`` (fixed -> moving, usable with ANTs tools)."""
        import ants

        precision = "double" if "double" in self.ants_transform_type else "float"
        return ants.create_ants_transform(
            transform_type="AffineTransform", precision=precision, dimension=3,
            parameters=list(self.ants_parameters),
            fixed_parameters=list(self.ants_fixed_parameters),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain lists/numbers for a JSON or Parquet manifest (matrices flattened row-major)."""
        return {
            "direction": "fixed_to_moving",
            "matrix": self.matrix.ravel().tolist(),
            "inverse": self.inverse.ravel().tolist(),
            "ants_transform_type": self.ants_transform_type,
            "ants_parameters": list(self.ants_parameters),
            "ants_fixed_parameters": list(self.ants_fixed_parameters),
            "random_seed": int(self.random_seed),
            "threads": int(self.threads),
            "elapsed_s": float(self.elapsed_s),
            "start": self.start,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Registration:
        """Inverse of :meth:`to_dict`; the matrix is rebuilt from the ANTs parameters, checked."""
        if data.get("direction", "fixed_to_moving") != "fixed_to_moving":
            raise ValueError(f"unsupported transform direction {data.get('direction')!r}")
        reg = cls.from_ants(
            data["ants_parameters"],
            data["ants_fixed_parameters"],
            ants_transform_type=str(data.get("ants_transform_type", "AffineTransform_float_3_3")),
            random_seed=int(data.get("random_seed", 0)),
            threads=int(data.get("threads", 1)),
            elapsed_s=float(data.get("elapsed_s", 0.0)),
            start=str(data.get("start", "centre_of_mass")),
        )
        if "matrix" in data:
            stored = np.asarray(data["matrix"], dtype=np.float64).reshape(4, 4)
            if not np.allclose(stored, reg.matrix, atol=1e-6, rtol=1e-9):
                raise ValueError("stored matrix disagrees with the ANTs parameters")
        return reg


# ----------------------------------------------------------------------------- preparation
def _mask_values(mask: NDArray[Any], intensity: str) -> NDArray[np.uint8]:
    """Map a label mask to registration intensities: 0/1 (binary) or 0/50/100 (labels, by rank)."""
    if intensity == "binary":
        return (mask != 0).view(np.uint8)
    labels = np.unique(mask)
    labels = labels[labels != 0]
    if labels.size > 2:
        raise ValueError(f"intensity='labels' needs at most two lung labels, got {labels.tolist()}")
    if labels.size == 1:
        return np.where(mask != 0, 100, 0).astype(np.uint8)
    out = np.zeros(mask.shape, dtype=np.uint8)
    out[mask == labels[0]] = 50
    out[mask == labels[1]] = 100
    return out


def _coarsen(
    values_zyx: NDArray[np.uint8], geom: Any, resolution_mm: float | None
) -> tuple[NDArray[np.float32], GeometryArrays]:
    """Average non-overlapping blocks of about ``resolution_mm`` (trailing partial blocks dropped).

    Returns the float32 ``[z, y, x]`` image and its geometry; voxel (0,0,0) of the result sits at
    the centre of the first block.
    """
    spacing, origin, direction = geometry_arrays(geom)
    if resolution_mm is None:
        return values_zyx.astype(np.float32), (spacing, origin, direction)
    f_xyz = np.maximum(1, np.round(resolution_mm / spacing)).astype(np.int64)
    f_xyz = np.minimum(f_xyz, np.asarray(values_zyx.shape[::-1]))
    fx, fy, fz = (int(v) for v in f_xyz)
    if fx == fy == fz == 1:
        return values_zyx.astype(np.float32), (spacing, origin, direction)
    out = block_mean(values_zyx, (fz, fy, fx), partial="drop")
    new_spacing = spacing * f_xyz
    new_origin = origin + direction @ (spacing * (f_xyz - 1) / 2.0)
    return out, (new_spacing, new_origin, direction)


def _ants_image(mask_zyx: ArrayLike, geom: Any, config: RegisterConfig) -> Any:
    """Registration input image (ANTs) from a label mask: intensities mapped, block-averaged."""
    import ants

    mask = np.asarray(mask_zyx)
    if mask.ndim != 3:
        raise ValueError(f"mask must be 3D [z,y,x], got shape {mask.shape}")
    if not np.any(mask):
        raise ValueError("mask has no lung voxels")
    values = _mask_values(mask, config.intensity)
    img, (spacing, origin, direction) = _coarsen(values, geom, config.resolution_mm)
    return ants.from_numpy(
        np.ascontiguousarray(img.transpose(2, 1, 0)),  # ANTs arrays are indexed [x, y, z]
        origin=origin.tolist(), spacing=spacing.tolist(), direction=direction,
    )


def _set_threads(threads: int) -> None:
    """Set ITK's thread count for ANTs; warn if this process already runs with another count."""
    global _first_threads
    os.environ[THREADS_ENV] = str(threads)
    if _first_threads is None:
        _first_threads = threads
    elif threads != _first_threads:
        warnings.warn(
            f"ITK reads {THREADS_ENV} once per process; this process registers with "
            f"{_first_threads} thread(s), not the requested {threads}",
            RuntimeWarning,
            stacklevel=3,
        )


def _ants_arguments(
    fixed: Any, moving: Any, config: RegisterConfig, prefix: str, initial: str | None = None
) -> list[str]:
    """antsRegistration command line for one affine stage (images passed by pointer).

    ``initial`` is a transform file to start from (fixed -> moving); otherwise the start is ANTs'
    own ``centre_of_mass`` / ``geometric_centre`` translation, or none (``identity``).
    """
    from ants.internal import get_pointer_string

    f, m = get_pointer_string(fixed), get_pointer_string(moving)
    metric = f"{config.metric}[{f},{m},1,"
    metric += "0" if config.metric == "MeanSquares" else str(config.bins)
    metric += f",{config.sampling},{config.sampling_rate:g}]"
    args = ["--dimensionality", "3", "--float", "1", "--output", prefix,
            "--interpolation", "Linear", "--use-histogram-matching", "0",
            "--winsorize-image-intensities", "[0,1]", "--collapse-output-transforms", "1",
            "--write-composite-transform", "0", "--random-seed", str(config.random_seed)]
    if initial is not None:
        args += ["--initial-moving-transform", initial]
    elif config.initialisation in ("centre_of_mass", "geometric_centre"):
        mode = 1 if config.initialisation == "centre_of_mass" else 0
        args += ["--initial-moving-transform", f"[{f},{m},{mode}]"]
    args += [
        "--transform", f"Affine[{config.gradient_step:g}]",
        "--metric", metric,
        "--convergence", "[{},{:g},{}]".format(
            "x".join(str(i) for i in config.iterations), config.convergence_threshold,
            config.convergence_window),
        "--shrink-factors", "x".join(str(i) for i in config.shrink_factors),
        "--smoothing-sigmas", "x".join(f"{s:g}" for s in config.smoothing_sigmas) + "vox",
    ]
    return args


# ----------------------------------------------------------------------------- API
def register_affine(
    moving_mask_zyx: ArrayLike,
    moving_geom: Any,
    fixed_mask_zyx: ArrayLike,
    fixed_geom: Any,
    config: RegisterConfig | None = None,
) -> Registration:
    """Affinely register a subject lung mask (moving) to the atlas lung mask (fixed).

    Args:
        moving_mask_zyx: subject lung mask ``[z, y, x]``, any non-zero label is lung.
        moving_geom: its geometry (spacing, origin, direction; LPS mm).
        fixed_mask_zyx: atlas lung mask ``[z, y, x]``.
        fixed_geom: atlas geometry.
        config: settings; defaults to ``RegisterConfig()``.

    Returns:
        The registration; ``matrix`` maps atlas (fixed) mm to subject (moving) mm.

    Raises:
        ValueError: a mask is empty or malformed.
        RegistrationError: antsRegistration failed.
    """
    import ants
    from ants.internal import get_lib_fn, process_arguments

    config = config or RegisterConfig()
    start = time.perf_counter()
    _set_threads(config.threads)
    fixed = _ants_image(fixed_mask_zyx, fixed_geom, config)
    moving = _ants_image(moving_mask_zyx, moving_geom, config)
    with tempfile.TemporaryDirectory(prefix="drasclr_reg_") as tmp:
        prefix = os.path.join(tmp, "reg_")
        initial = _initial_transform_file(
            moving_mask_zyx, moving_geom, fixed_mask_zyx, fixed_geom, config.initialisation,
            os.path.join(tmp, "initial.mat"))
        args = _ants_arguments(fixed, moving, config, prefix, initial)
        code = get_lib_fn("antsRegistration")(process_arguments(args))
        if code != 0:
            raise RegistrationError(f"antsRegistration exited with code {code}")
        found = sorted(glob.glob(prefix + "*GenericAffine.mat"))
        if len(found) != 1:
            raise RegistrationError(f"expected one affine transform, found {found}")
        tx = ants.read_transform(found[0])
        params = np.asarray(tx.parameters, dtype=np.float64)
        centre = np.asarray(tx.fixed_parameters, dtype=np.float64)
        precision = str(getattr(tx, "precision", "float"))
    if params.size != 12 or not np.all(np.isfinite(params)):
        raise RegistrationError(f"unexpected transform parameters {params.tolist()}")
    return Registration.from_ants(
        params, centre, ants_transform_type=f"AffineTransform_{precision}_3_3",
        random_seed=config.random_seed, threads=config.threads,
        elapsed_s=time.perf_counter() - start, start=config.initialisation,
    )


def _initial_transform_file(
    moving_mask_zyx: ArrayLike, moving_geom: Any, fixed_mask_zyx: ArrayLike, fixed_geom: Any,
    start: str, path: str,
) -> str | None:
    """Write the ``principal_axes`` / ``rotation_search`` start as an ITK transform file.

    Returns its path, or None for the starts ANTs computes itself.
    """
    import ants

    from drasclr.imaging.align_init import principal_axes_start, rotation_search_start

    starts = {"principal_axes": principal_axes_start, "rotation_search": rotation_search_start}
    if start not in starts:
        return None
    m = starts[start](fixed_mask_zyx, fixed_geom, moving_mask_zyx, moving_geom)
    tx = ants.create_ants_transform(
        transform_type="AffineTransform", precision="float", dimension=3,
        parameters=[*m[:3, :3].ravel().tolist(), *m[:3, 3].tolist()],
        fixed_parameters=[0.0, 0.0, 0.0],
    )
    ants.write_transform(tx, path)
    return path


def register_with_retries(
    moving_mask_zyx: ArrayLike,
    moving_geom: Any,
    fixed_mask_zyx: ArrayLike,
    fixed_geom: Any,
    score: Callable[[Registration], float],
    min_score: float,
    config: RegisterConfig | None = None,
) -> tuple[Registration, list[tuple[str, float]]]:
    """Register from ``config.initialisation``; below ``min_score``, retry from other starts.

    Each start of ``config.retry_starts`` (other than the first) is tried only when the first
    attempt scores below ``min_score``; the registration with the highest score is returned (the
    first one on ties), its :attr:`Registration.start` naming the start that won.

    Args:
        moving_mask_zyx: subject lung mask ``[z, y, x]``.
        moving_geom: its geometry.
        fixed_mask_zyx: atlas lung mask ``[z, y, x]``.
        fixed_geom: atlas geometry.
        score: the QC metric of a registration, higher is better (e.g. Dice with the atlas mask).
        min_score: the QC threshold that triggers the retries.
        config: settings; defaults to ``RegisterConfig()``.

    Returns:
        The best registration, and ``(start, score)`` of every attempt in the order run.
    """
    config = config or RegisterConfig()
    best = register_affine(moving_mask_zyx, moving_geom, fixed_mask_zyx, fixed_geom, config)
    best_score = score(best)
    tried = [(best.start, best_score)]
    if best_score >= min_score:
        return best, tried
    for start in config.retry_starts:
        if start == config.initialisation:
            continue
        reg = register_affine(moving_mask_zyx, moving_geom, fixed_mask_zyx, fixed_geom,
                              config.replace(initialisation=start))
        value = score(reg)
        tried.append((start, value))
        if value > best_score:
            best, best_score = reg, value
    return best, tried


def map_landmarks(reg: Registration, landmarks_mm: ArrayLike) -> NDArray[np.float64]:
    """Carry atlas landmarks into the subject: ``T(l)`` (fixed -> moving), LPS mm.

    Args:
        reg: the registration.
        landmarks_mm: (L, 3) atlas landmarks, LPS mm.

    Returns:
        (L, 3) subject-space positions, LPS mm.
    """
    return transform_points(reg.matrix, landmarks_mm)


def _sitk_image(array_zyx: NDArray[Any], geom: Any) -> sitk.Image:
    spacing, origin, direction = geometry_arrays(geom)
    img = sitk.GetImageFromArray(array_zyx)
    img.SetSpacing(spacing.tolist())
    img.SetOrigin(origin.tolist())
    img.SetDirection(direction.ravel().tolist())
    return img


def warp_mask_to_fixed(
    reg: Registration,
    moving_mask_zyx: ArrayLike,
    moving_geom: Any,
    fixed_shape_zyx: tuple[int, ...],
    fixed_geom: Any,
) -> NDArray[np.uint8]:
    """Resample the subject mask onto the atlas grid through ``reg`` (nearest neighbour).

    Args:
        reg: the registration (fixed -> moving).
        moving_mask_zyx: subject mask ``[z, y, x]``.
        moving_geom: its geometry.
        fixed_shape_zyx: atlas grid shape ``(Z, Y, X)``.
        fixed_geom: atlas geometry.

    Returns:
        ``[z, y, x]`` uint8 mask (labels kept) on the atlas grid, 0 outside the subject's view.
    """
    moving = _sitk_image(np.asarray(moving_mask_zyx).astype(np.uint8), moving_geom)
    spacing, origin, direction = geometry_arrays(fixed_geom)
    tx = sitk.AffineTransform(3)
    tx.SetMatrix(reg.matrix[:3, :3].ravel().tolist())
    tx.SetTranslation(reg.matrix[:3, 3].tolist())
    size = [int(n) for n in fixed_shape_zyx[::-1]]
    out = sitk.Resample(moving, size, tx, sitk.sitkNearestNeighbor, origin.tolist(),
                        spacing.tolist(), direction.ravel().tolist(), 0, sitk.sitkUInt8)
    return sitk.GetArrayFromImage(out)


#: Dice of the non-zero voxels of two same-shape masks for registration QC: the project's one
#: Dice (:func:`drasclr.imaging.overlap.dice`, MONAI) with the QC rule that two empty masks agree
#: (1.0). ``dice(a, b)``; 0.0 when exactly one mask is empty.
dice = partial(overlap_dice, empty=1.0)


def registration_qc(
    reg: Registration,
    moving_mask_zyx: ArrayLike,
    moving_geom: Any,
    fixed_mask_zyx: ArrayLike,
    fixed_geom: Any,
    landmarks_mm: ArrayLike,
    patch: int = 32,
) -> dict[str, float | int]:
    """QC figures of one registration (DESIGN.md 3.3).

    Args:
        reg: the registration.
        moving_mask_zyx: subject lung mask ``[z, y, x]``; its grid is the subject's field of view.
        moving_geom: subject geometry.
        fixed_mask_zyx: atlas lung mask ``[z, y, x]``.
        fixed_geom: atlas geometry.
        landmarks_mm: (L, 3) atlas landmarks, LPS mm.
        patch: patch edge in voxels of the subject grid.

    Returns:
        ``dice``: Dice of the warped subject mask with the atlas mask (on the atlas grid);
        ``fov_fraction``: fraction of landmarks whose whole patch lies inside the subject volume;
        ``n_landmarks``, ``n_in_view``.
    """
    moving = np.asarray(moving_mask_zyx)
    fixed = np.asarray(fixed_mask_zyx)
    warped = warp_mask_to_fixed(reg, moving, moving_geom, fixed.shape, fixed_geom)
    centres = map_landmarks(reg, landmarks_mm)
    in_view = patch_in_view(patch_corners(centres, moving_geom, patch), moving.shape, patch)
    n = int(in_view.size)
    return {
        "dice": dice(warped, fixed),
        "fov_fraction": float(in_view.mean()) if n else 0.0,
        "n_landmarks": n,
        "n_in_view": int(in_view.sum()),
    }
