"""Linear probes with subject-grouped cross-validation (pure functions on arrays).

Used by the evaluation's patch probe (:mod:`drasclr.evaluate.patch_probe`) and by the cheap probe
that pretraining runs every N steps (:mod:`drasclr.train.probe`): a standardised ridge regression
from frozen features to a target (e.g. a patch's true lesion fraction), with folds that never split
a subject, repeated over fold seeds. Scaling and the ridge penalty are fitted inside each training
fold only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sklearn.linear_model import RidgeCV
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

#: Ridge penalties searched (efficient leave-one-out inside the training fold).
ALPHAS: tuple[float, ...] = tuple(float(a) for a in np.logspace(-3, 5, 17))
#: A patch counts as lesioned for the AUC when its true lesion fraction exceeds this.
LESION_AUC_THRESHOLD: float = 0.01


def grouped_folds(
    groups: npt.ArrayLike, n_folds: int, seed: int
) -> list[npt.NDArray[np.int64]]:
    """Row indices of each test fold; every group (subject) lies in exactly one fold.

    Groups are shuffled with ``seed`` and dealt round-robin, so fold sizes differ by at most one
    group.
    """
    g = np.asarray(groups)
    uniq = np.unique(g)
    if len(uniq) < n_folds:
        raise ValueError(f"{len(uniq)} groups cannot make {n_folds} folds")
    order = np.random.default_rng(seed).permutation(len(uniq))
    fold_of_group = np.empty(len(uniq), dtype=np.int64)
    fold_of_group[order] = np.arange(len(uniq)) % n_folds
    fold = fold_of_group[np.searchsorted(uniq, g)]
    return [np.flatnonzero(fold == f) for f in range(n_folds)]


def r2_score(y: npt.ArrayLike, p: npt.ArrayLike) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot`` (NaN when y is constant)."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    ss_tot = float(((y - y.mean()) ** 2).sum())
    if ss_tot <= 0:
        return float("nan")
    return 1.0 - float(((y - p) ** 2).sum()) / ss_tot


@dataclass(frozen=True)
class ProbeResult:
    """Scores of one probe over repeated grouped CV.

    Attributes:
        r2_pooled: (repeats,) R² of the pooled out-of-fold predictions, one per repeat.
        r2_folds: (repeats * folds,) R² of each test fold.
        auc: (repeats,) AUC of the out-of-fold prediction for ``target > threshold``
            (NaN when one class is absent).
        oof: (repeats, n) out-of-fold predictions.
    """

    r2_pooled: npt.NDArray[np.float64]
    r2_folds: npt.NDArray[np.float64]
    auc: npt.NDArray[np.float64]
    oof: npt.NDArray[np.float64]

    def summary(self) -> dict[str, float]:
        """Means and standard deviations (over repeats for pooled R² / AUC, folds for fold R²)."""
        def ms(v: npt.NDArray[np.float64]) -> tuple[float, float]:
            v = v[np.isfinite(v)]
            if v.size == 0:
                return float("nan"), float("nan")
            return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0

        r2, r2_sd = ms(self.r2_pooled)
        fr2, fr2_sd = ms(self.r2_folds)
        auc, auc_sd = ms(self.auc)
        return {"r2": r2, "r2_sd": r2_sd, "r2_fold": fr2, "r2_fold_sd": fr2_sd,
                "auc": auc, "auc_sd": auc_sd}


def ridge_probe(
    features: npt.ArrayLike,
    target: npt.ArrayLike,
    groups: npt.ArrayLike,
    n_folds: int = 5,
    repeats: int = 1,
    seed: int = 0,
    threshold: float = LESION_AUC_THRESHOLD,
) -> ProbeResult:
    """Standardised ridge from ``features`` (n, d) to ``target`` (n,), subject-grouped CV.

    Args:
        features: (n, d) frozen features (finite rows only).
        target: (n,) continuous target.
        groups: (n,) subject of each row (folds never split one).
        n_folds: folds per repeat.
        repeats: repetitions with different fold assignments (seeds ``seed + r``).
        seed: first fold seed.
        threshold: ``target > threshold`` is the positive class of the AUC.
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    y = np.asarray(target, dtype=np.float64)
    g = np.asarray(groups)
    if not (len(x) == len(y) == len(g)):
        raise ValueError(f"features {len(x)}, target {len(y)} and groups {len(g)} rows differ")
    if not np.isfinite(x).all() or not np.isfinite(y).all():
        raise ValueError("features and target must be finite (drop invalid rows first)")
    oof = np.full((repeats, len(y)), np.nan)
    folds_r2, pooled, aucs = [], [], []
    positive = y > threshold
    for r in range(repeats):
        for test in grouped_folds(g, n_folds, seed + r):
            train = np.ones(len(y), dtype=bool)
            train[test] = False
            model = make_pipeline(StandardScaler(), RidgeCV(alphas=ALPHAS))
            model.fit(x[train], y[train])
            oof[r, test] = model.predict(x[test])
            folds_r2.append(r2_score(y[test], oof[r, test]))
        pooled.append(r2_score(y, oof[r]))
        aucs.append(float(roc_auc_score(positive, oof[r]))
                    if 0 < positive.sum() < len(y) else float("nan"))
    return ProbeResult(np.asarray(pooled), np.asarray(folds_r2), np.asarray(aucs), oof)


def ridge_fit(
    x: npt.ArrayLike, y: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], float]:
    """The probes' standardised ridge fitted on all rows, folded back to the raw features.

    Args:
        x: (n, d) features (finite).
        y: (n,) targets.

    Returns:
        ``(w, b)`` with ``x @ w + b`` equal to the fitted pipeline's prediction.
    """
    model = make_pipeline(StandardScaler(), RidgeCV(alphas=ALPHAS))
    model.fit(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    sc, rg = model.named_steps["standardscaler"], model.named_steps["ridgecv"]
    w = np.asarray(rg.coef_, dtype=np.float64) / sc.scale_
    return w, float(rg.intercept_ - w @ sc.mean_)
