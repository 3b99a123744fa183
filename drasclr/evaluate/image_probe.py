"""Image-level readouts with power at small cohorts (repeated CV, pooled out-of-fold scores).

The paper's image feature is the mean over landmarks of the patch features. At n ~ 50-200
subjects that mean is dominated by whichever feature component varies most between subjects
(for an untrained or collapsed encoder: mean patch density), and fold-mean R² on 10-40-subject
test folds is biased low. This module therefore scores every readout by

- **repeated K-fold CV** (default 5 x 5): each repeat's out-of-fold predictions are pooled and
  scored once (R² or accuracy); the table reports the mean and s.d. over repeats;
- an optional **per-landmark standardisation before pooling** (:class:`LandmarkStandardizedMean`):
  every (landmark, feature) column is standardised with the *training* subjects' mean and s.d.,
  then averaged over landmarks, so no landmark or component dominates by scale;
- a sparse linear model for regression (cross-validated lasso inside the training fold; for
  classes, the ``SELECT_K`` best features by ANOVA F then L2 logistic regression), so that a
  strong single feature is not drowned by many irrelevant ones (checked by the sanity rows
  "LAA-950 alone" and "LAA-950 + 128 random features", which must score alike).

Everything that learns (standardisation, penalty) is fitted inside each training fold.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_selection import SelectKBest, f_classif
from sklearn.linear_model import LassoCV, LogisticRegression
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from drasclr.probing import r2_score

Kind = Literal["regression", "classification"]
#: Classification readouts keep the SELECT_K features with the largest ANOVA F on the training
#: fold, then fit an L2 logistic regression (C = 1): fast, and one strong feature is not drowned.
SELECT_K: int = 8


class LandmarkStandardizedMean(BaseEstimator, TransformerMixin):  # type: ignore[misc]
    """(n, L*D) patch features -> (n, D): standardise each column on the fit rows, then average
    over landmarks (NaN patches are skipped; a subject without any valid patch gets 0).

    Args:
        n_landmarks: L.
    """

    def __init__(self, n_landmarks: int = 1) -> None:
        self.n_landmarks = n_landmarks

    def fit(self, X: npt.ArrayLike, y: Any = None) -> LandmarkStandardizedMean:
        x = np.asarray(X, dtype=np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            self.mean_ = np.nanmean(x, axis=0)
            sd = np.nanstd(x, axis=0)
        self.mean_ = np.where(np.isfinite(self.mean_), self.mean_, 0.0)
        self.scale_ = np.where(np.isfinite(sd) & (sd > 0), sd, 1.0)
        return self

    def transform(self, X: npt.ArrayLike) -> npt.NDArray[np.float64]:
        x = (np.asarray(X, dtype=np.float64) - self.mean_) / self.scale_
        n = x.shape[0]
        x = x.reshape(n, self.n_landmarks, -1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out = np.nanmean(x, axis=1)
        return np.where(np.isfinite(out), out, 0.0)


def make_readout(
    kind: Kind, n_landmarks: int | None = None, seed: int = 0, n_features: int | None = None
) -> Pipeline:
    """(landmark-standardised pooling) -> scaling -> lasso (regression) or L1-logistic.

    Args:
        kind: regression or classification.
        n_landmarks: pool (n, L*D) patch features with :class:`LandmarkStandardizedMean`;
            None: the input is already one row of image features per subject.
        seed: seed of the inner CV splits.
        n_features: columns after pooling (classification keeps all when <= ``SELECT_K``).
    """
    steps: list[tuple[str, Any]] = []
    if n_landmarks is not None:
        steps.append(("pool", LandmarkStandardizedMean(n_landmarks)))
    steps.append(("scale", StandardScaler()))
    if kind == "regression":
        steps.append(("model", LassoCV(cv=KFold(5, shuffle=True, random_state=seed),
                                       alphas=12, tol=1e-3, precompute=True, max_iter=2000,
                                       random_state=seed)))
    else:
        steps.append(("select", SelectKBest(f_classif, k="all" if n_features is not None
                                            and n_features <= SELECT_K else SELECT_K)))
        steps.append(("model", LogisticRegression(C=1.0, max_iter=2000)))
    return Pipeline(steps)


def accuracy(y: npt.ArrayLike, p: npt.ArrayLike) -> float:
    """Share of exact matches."""
    return float(np.mean(np.asarray(y) == np.asarray(p)))


def repeated_cv(
    X: npt.ArrayLike,
    y: npt.ArrayLike,
    kind: Kind,
    n_folds: int = 5,
    repeats: int = 5,
    seed: int = 0,
    n_landmarks: int | None = None,
) -> dict[str, Any]:
    """Pooled out-of-fold score per repeat (R² for regression, accuracy for classification).

    Returns:
        ``score`` (mean over repeats), ``sd`` (s.d. over repeats), ``scores`` (per repeat),
        ``fold_sd`` (s.d. of the per-fold scores), ``n``.
    """
    x = np.asarray(X, dtype=np.float64)
    x = x[:, None] if x.ndim == 1 else x
    t = np.asarray(y)
    metric = r2_score if kind == "regression" else accuracy
    scores, fold_scores = [], []
    for r in range(repeats):
        if kind == "classification":
            _, counts = np.unique(t, return_counts=True)
            k = max(2, min(n_folds, int(counts.max())))
            splitter: Any = (StratifiedKFold(k, shuffle=True, random_state=seed + r)
                             if counts.min() >= k else KFold(k, shuffle=True, random_state=seed + r))
        else:
            splitter = KFold(n_folds, shuffle=True, random_state=seed + r)
        oof = np.empty(len(t), dtype=np.float64 if kind == "regression" else t.dtype)
        for tr, te in splitter.split(x, t):
            model = make_readout(kind, n_landmarks, seed + r,
                                 x.shape[1] if n_landmarks is None else x.shape[1] // n_landmarks)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                warnings.simplefilter("ignore", UserWarning)
                warnings.simplefilter("ignore", FutureWarning)
                if kind == "classification" and len(np.unique(t[tr])) < 2:
                    oof[te] = t[tr][0]
                else:
                    model.fit(x[tr], t[tr])
                    oof[te] = model.predict(x[te])
            fold_scores.append(metric(t[te], oof[te]))
        scores.append(metric(t, oof))
    s = np.asarray(scores, dtype=np.float64)
    f = np.asarray(fold_scores, dtype=np.float64)
    return {"score": float(np.nanmean(s)), "sd": float(np.nanstd(s, ddof=1)) if len(s) > 1 else 0.0,
            "scores": s.tolist(), "fold_sd": float(np.nanstd(f, ddof=1)) if len(f) > 1 else 0.0,
            "n": len(t)}


def sanity_rows(
    laa: npt.ArrayLike, y: npt.ArrayLike, kind: Kind = "regression", n_random: int = 128,
    seeds: Sequence[int] = (0,), repeats: int = 5,
) -> dict[str, dict[str, Any]]:
    """Scores of "LAA-950 alone" and "LAA-950 + ``n_random`` random features" (per seed)."""
    a = np.asarray(laa, dtype=np.float64).reshape(-1, 1)
    out = {"LAA-950 alone": repeated_cv(a, y, kind, repeats=repeats)}
    for s in seeds:
        noise = np.random.default_rng(10_000 + s).standard_normal((len(a), n_random))
        out[f"LAA-950 + {n_random} random (seed {s})"] = repeated_cv(
            np.hstack([a, noise]), y, kind, repeats=repeats)
    return out
