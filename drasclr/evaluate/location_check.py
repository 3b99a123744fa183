"""Does an encoder use its anatomical location? The paper's location-perturbation test.

DrasCLR's Loc-CondConv computes each kernel from the patch's landmark location. The paper tests
that the trained encoder relies on it (its Table 7): features extracted at random locations in
the lung carry less disease information. A drop there has two possible causes: the right
location's kernel matters (anatomy-specific features), or the patches of one landmark, each
encoded with a different kernel, no longer share one feature space (inconsistency). Every
evaluation landmark's patches are encoded three times, with per-landmark BatchNorm statistics
(as the benchmark extracts them):

- :data:`OWN`: at their own landmark's location;
- :data:`SWAPPED`: all at one other evaluation landmark's location (a seeded derangement, so no
  landmark keeps its own): the wrong kernel, used consistently;
- :data:`RANDOM`: each patch at a random evaluation landmark's location (in the lung, as the
  paper's perturbation): wrong and inconsistent.

The patch probe (:func:`drasclr.evaluate.patch_probe.patch_probe_table`) scores each. Own minus
swapped is what the right location buys; swapped minus random is what consistency buys. Also
reported: how much the features move (relative Frobenius norm of the change) and how far the
Loc-CondConv kernels move with location over the store's landmarks (mean over layers of
``mean_l ||W(l) - W_bar|| / ||W_bar||``). An encoder without location conditioning scores the
same all three ways, with zero change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
import torch
from torch import nn

from drasclr.evaluate.patch_probe import patch_probe_table, probed
from drasclr.features.encoding import encode_patches_landmark_bn
from drasclr.nn.condconv import LocCondConv3d
from drasclr.store.reader import PatchStore

#: Names of the two feature sets in :attr:`LocationCheck.table`.
OWN, SWAPPED, RANDOM = "own location", "swapped location", "random location"


@dataclass(frozen=True)
class LocationCheck:
    """One encoder's location check.

    Attributes:
        table: :func:`patch_probe_table` rows for :data:`OWN`, :data:`SWAPPED` and
            :data:`RANDOM` (every target).
        feature_change: ``||F_swapped - F_own|| / ||F_own||`` over the probed patches.
        kernel_move: mean over Loc-CondConv layers of the kernels' relative spread over
            locations (NaN when the encoder has none).
        landmarks: the evaluation landmarks.
    """

    table: pd.DataFrame
    feature_change: float
    kernel_move: float
    landmarks: tuple[int, ...]

    def r2(self, which: str, target: str = "emphysema") -> float:
        """Pooled out-of-fold R² of ``which`` (:data:`OWN` / :data:`SWAPPED` / :data:`RANDOM`)
        for ``target``."""
        row = self.table[(self.table["method"] == which) & (self.table["target"] == target)]
        return float(row["r2"].iloc[0])

    def drop(self, target: str = "emphysema", to: str = SWAPPED) -> float:
        """R² lost from :data:`OWN` to ``to`` (default: the consistent wrong location)."""
        return self.r2(OWN, target) - self.r2(to, target)


def derangement(n: int, seed: int) -> npt.NDArray[np.int64]:
    """A seeded random permutation of ``range(n)`` with no fixed point.

    Raises:
        ValueError: ``n < 2`` (no derangement exists).
    """
    if n < 2:
        raise ValueError(f"a derangement needs at least 2 items, got {n}")
    rng = np.random.default_rng(seed)
    while True:  # about e tries on average
        perm = rng.permutation(n)
        if not (perm == np.arange(n)).any():
            return perm.astype(np.int64)


def kernel_move(encoder: nn.Module, locations: npt.ArrayLike) -> float:
    """Mean over Loc-CondConv layers of ``mean_l ||W(l) - W_bar|| / ||W_bar||``.

    Args:
        encoder: any encoder; only its :class:`LocCondConv3d` layers count.
        locations: (L, 3) normalised landmark locations.

    Returns:
        The mean relative spread, or NaN when the encoder has no Loc-CondConv layer.
    """
    loc = torch.as_tensor(np.asarray(locations, dtype=np.float32))
    moves = []
    with torch.no_grad():
        for m in encoder.modules():
            if isinstance(m, LocCondConv3d):
                w = m.kernels(loc).flatten(1)
                mean = w.mean(0, keepdim=True)
                moves.append(float(((w - mean).norm(dim=1) / mean.norm()).mean()))
    return float(np.mean(moves)) if moves else float("nan")


def evaluation_rows(truth: pd.DataFrame, n_landmarks: int, seed: int) -> pd.DataFrame:
    """The probed rows of ``n_landmarks`` seeded landmarks that have at least 2 probed patches,
    sorted by (landmark, store index)."""
    rows = truth[probed(truth)]
    counts = rows["landmark"].value_counts()
    eligible = np.sort(counts.index[counts >= 2].to_numpy(np.int64))
    rng = np.random.default_rng(seed)
    pick = rng.choice(eligible, size=min(n_landmarks, len(eligible)), replace=False)
    rows = rows[rows["landmark"].isin(pick)]
    return rows.sort_values(["landmark", "store_index"]).reset_index(drop=True)


def location_check(
    encoder: nn.Module,
    store: PatchStore,
    truth: pd.DataFrame,
    n_landmarks: int = 40,
    seed: int = 0,
    repeats: int = 2,
    device: torch.device | str = "cpu",
) -> LocationCheck:
    """Probe ``encoder``'s patch features at own, swapped and random landmark locations.

    Args:
        encoder: the frozen encoder (not changed).
        store: the patch store the truth rows index.
        truth: patch truth rows (:func:`drasclr.evaluate.patch_probe.read_patch_truth`).
        n_landmarks: evaluation landmarks (seeded choice among those with >= 2 probed patches).
        seed: landmark choice, derangement, random locations and fold seed.
        repeats: CV repeats of the probe.
        device: where to encode.

    Returns:
        The :class:`LocationCheck`.

    Raises:
        ValueError: fewer than 2 landmarks with 2 probed patches each.
    """
    rows = evaluation_rows(truth, n_landmarks, seed)
    lms = np.unique(rows["landmark"].to_numpy(np.int64))
    if len(lms) < 2:
        raise ValueError(f"the location check needs >= 2 landmarks with >= 2 probed patches, "
                         f"found {len(lms)}")
    locs = np.asarray(store.landmarks_norm, dtype=np.float32)
    other = dict(zip(lms.tolist(), lms[derangement(len(lms), seed)].tolist()))
    lm_col = rows["landmark"].to_numpy(np.int64)
    # one random evaluation landmark per row, drawn once for the rows in their sorted order
    random_lm = lms[np.random.default_rng(seed + 1).integers(0, len(lms), len(rows))]
    dev = torch.device(device)
    feats: dict[str, list[npt.NDArray[np.floating]]] = {OWN: [], SWAPPED: [], RANDOM: []}
    for j in lms.tolist():
        at = lm_col == j
        hu = store.read_landmark_batch(j, rows["store_index"].to_numpy()[at])
        feats[OWN].append(encode_patches_landmark_bn(encoder, hu, locs[j], dev))
        feats[SWAPPED].append(encode_patches_landmark_bn(encoder, hu, locs[other[j]], dev))
        feats[RANDOM].append(encode_patches_landmark_bn(encoder, hu, locs[random_lm[at]], dev))
    x = {k: np.concatenate(v).astype(np.float64) for k, v in feats.items()}
    x_own, x_sw = x[OWN], x[SWAPPED]
    table = patch_probe_table(x, rows, 5, repeats, seed)
    change = float(np.linalg.norm(x_sw - x_own) / max(np.linalg.norm(x_own), 1e-12))
    return LocationCheck(table, change, kernel_move(encoder, locs), tuple(lms.tolist()))


def check_table(checks: Sequence[tuple[str, LocationCheck]]) -> pd.DataFrame:
    """One row per named check: emphysema / CLE / PSE R² at own, swapped and random locations,
    the emphysema drops to swapped and to random, the feature change and the kernel move."""
    out = []
    for name, c in checks:
        row: dict[str, object] = {"model": name}
        for target in ("emphysema", "cle", "pse"):
            for which, key in ((OWN, "own"), (SWAPPED, "swapped"), (RANDOM, "random")):
                row[f"{target}_r2_{key}"] = c.r2(which, target)
        row["emphysema_drop_swapped"] = c.drop("emphysema", SWAPPED)
        row["emphysema_drop_random"] = c.drop("emphysema", RANDOM)
        row["feature_change"] = c.feature_change
        row["kernel_move"] = c.kernel_move
        out.append(row)
    return pd.DataFrame(out)
