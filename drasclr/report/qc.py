"""Preprocessing QC: a figure per subject, the cohort QC sheet, and the list of QC outliers.

:func:`subject_qc_png` draws one subject's resampled CT (window -1000..200 HU) in mid axial,
coronal and sagittal slices with the lung-mask outline and the landmark centres (subject LPS mm,
placed with :func:`~drasclr.imaging.geometry.mm_to_voxel`; patches out of view in red), titled
with the registration Dice and field-of-view fraction. :func:`cohort_qc_png` draws the cohort
sheet from the manifest (Dice and field-of-view histograms, seconds per stage, outliers, failed
subjects); :func:`qc_outliers` lists the ``ok`` subjects below the thresholds or far below the
cohort's median Dice. Figures are rendered to PNG bytes with :mod:`drasclr.report.plotting` (no
file paths here); the preprocessing run writes them atomically into the store
(``qc/<subject_id>.png``, ``reports/qc_sheet.png``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from drasclr.imaging.geometry import mm_to_voxel
from drasclr.report.plotting import new_figure, png_bytes

_WINDOW = (-1000.0, 200.0)
_DPI = 90


def subject_qc_png(
    hu_zyx: npt.NDArray[Any],
    labels_zyx: npt.NDArray[Any],
    geometry: Any,
    centres_mm: npt.ArrayLike,
    in_view: npt.NDArray[np.bool_],
    subject_id: str,
    dice: float | None = None,
    fov: float | None = None,
    patch: int = 32,
) -> bytes:
    """QC figure of one subject: mid axial, coronal and sagittal slices through the lungs with
    the lung-mask outline and the landmark centres lying within half a patch of each slice.

    Args:
        hu_zyx: CT in HU ``[z, y, x]`` on the resampled grid.
        labels_zyx: lung labels on the same grid.
        geometry: grid geometry.
        centres_mm: (L, 3) landmark centres in subject LPS mm.
        in_view: (L,) patch inside the field of view (green) or not (red).
        subject_id: title.
        dice: registration Dice, shown in the title.
        fov: field-of-view fraction, shown in the title.
        patch: patch edge in voxels (slab half-width for showing landmarks).

    Returns:
        PNG bytes.
    """
    lung = np.asarray(labels_zyx) != 0
    idx = np.argwhere(lung)
    mid = idx.mean(axis=0).round().astype(int) if idx.size else np.array(lung.shape) // 2
    vox = mm_to_voxel(np.asarray(centres_mm, dtype=float), geometry)  # (L, 3) x, y, z
    fig = new_figure(12, 4.4, dpi=100, constrained=False)
    axes = fig.subplots(1, 3)
    views = (
        ("axial", hu_zyx[mid[0]], lung[mid[0]], 2, mid[0]),
        ("coronal", hu_zyx[:, mid[1]], lung[:, mid[1]], 1, mid[1]),
        ("sagittal", hu_zyx[:, :, mid[2]], lung[:, :, mid[2]], 0, mid[2]),
    )
    for ax, (name, img, msk, axis_xyz, pos) in zip(axes, views):
        ax.imshow(img, cmap="gray", vmin=_WINDOW[0], vmax=_WINDOW[1], interpolation="nearest")
        if msk.any():
            ax.contour(msk.astype(float), levels=[0.5], colors="deepskyblue", linewidths=0.8)
        near = np.abs(vox[:, axis_xyz] - pos) <= patch / 2
        # column / row of the displayed slice in voxel x/y/z terms
        col_axis = {"axial": 0, "coronal": 0, "sagittal": 1}[name]
        row_axis = {"axial": 1, "coronal": 2, "sagittal": 2}[name]
        for ok, colour in ((True, "lime"), (False, "red")):
            sel = near & (in_view == ok)
            ax.scatter(vox[sel, col_axis], vox[sel, row_axis], s=9, c=colour, marker="+",
                       linewidths=0.8)
        ax.set_title(f"{name} (slice {pos})", fontsize=9)
        ax.set_axis_off()
        if name != "axial":
            ax.invert_yaxis()  # superior up
    title = f"{subject_id}: {int(np.count_nonzero(in_view))}/{len(in_view)} patches in view"
    if dice is not None:
        title += f", Dice {dice:.3f}"
    if fov is not None:
        title += f", FOV {fov:.0%}"
    fig.suptitle(title + "  (blue: lung mask, +: landmark centres; red = out of view)",
                 fontsize=9)
    fig.tight_layout()
    return png_bytes(fig, dpi=_DPI)


def qc_outliers(manifest: pd.DataFrame, dice_min: float, fov_min: float) -> pd.DataFrame:
    """``ok`` subjects that stand out: below a QC threshold, or a robust outlier of the cohort.

    A subject is an outlier when its Dice is below ``dice_min`` or its FOV fraction below
    ``fov_min``, or (with at least 5 subjects) when its Dice lies more than 3 robust standard
    deviations (1.4826 x MAD) below the cohort median. Worst Dice first.
    """
    ok = manifest[manifest["status"] == "ok"]
    dice = ok["dice"].astype(float)
    bad = (dice < dice_min) | (ok["fov_fraction"].astype(float) < fov_min)
    if len(ok) >= 5:
        med = float(dice.median())
        mad = float((dice - med).abs().median()) * 1.4826
        bad |= dice < med - 3.0 * max(mad, 1e-3)
    return ok[bad].sort_values("dice")[["subject_id", "dice", "fov_fraction", "lung_volume_ml"]]


def cohort_qc_png(
    manifest: pd.DataFrame,
    dice_min: float,
    fov_min: float,
    stages: Sequence[str] = ("read", "resample", "segment", "register", "cut", "write"),
) -> bytes:
    """Cohort QC sheet: Dice histogram, FOV fraction histogram, seconds per stage, outliers.

    Args:
        manifest: the store manifest.
        dice_min: Dice outlier threshold (dashed line).
        fov_min: FOV-fraction outlier threshold (dashed line).
        stages: stage names with ``t_<stage>`` columns.

    Returns:
        PNG bytes.
    """
    ok = manifest[manifest["status"] == "ok"]
    failed = manifest[manifest["status"] == "failed"]
    fig = new_figure(13, 8, dpi=100, constrained=False)
    (a1, a2), (a3, a4) = fig.subplots(2, 2)
    d = ok["dice"].dropna().to_numpy(float)
    a1.hist(d, bins=30, color="steelblue")
    a1.axvline(dice_min, color="red", ls="--", label=f"outlier < {dice_min}")
    a1.set_xlabel("registration Dice (warped subject mask vs atlas mask)")
    a1.set_ylabel("subjects")
    a1.legend(fontsize=8)
    f = ok["fov_fraction"].dropna().to_numpy(float)
    a2.hist(f, bins=30, color="seagreen")
    a2.axvline(fov_min, color="red", ls="--", label=f"outlier < {fov_min}")
    a2.set_xlabel("fraction of landmark patches inside the field of view")
    a2.legend(fontsize=8)
    cols = [f"t_{s}" for s in stages if f"t_{s}" in ok and ok[f"t_{s}"].notna().any()]
    if cols:
        a3.boxplot([ok[c].dropna().to_numpy(float) for c in cols],
                   tick_labels=[c[2:] for c in cols])
    a3.set_ylabel("seconds per subject")
    a3.set_title("stage timings (ok subjects)", fontsize=9)
    a4.set_axis_off()
    out = qc_outliers(manifest, dice_min, fov_min).head(12)
    lines = [f"ok {len(ok)}   failed {len(failed)}   total {len(manifest)}", "",
             "QC outliers (worst Dice first):"]
    lines += [f"  {r.subject_id}: Dice {r.dice:.3f}, FOV {r.fov_fraction:.0%}"
              for r in out.itertuples()] or ["  none"]
    lines += ["", "failed subjects:"]
    lines += [f"  {r.subject_id}: {str(r.error)[:70]}" for r in failed.head(8).itertuples()] or [
        "  none"]
    a4.text(0.0, 1.0, "\n".join(lines), va="top", family="monospace", fontsize=8)
    fig.suptitle("preprocessing QC", fontsize=11)
    fig.tight_layout()
    return png_bytes(fig, dpi=_DPI)
