"""Survival readout (paper §4.2.2, Table 3): penalised Cox PH and time-dependent concordance.

Every model is a lifelines ``CoxPHFitter`` with an L2 ``penalizer`` fitted on one training fold and
scored on the held-out fold, so each subject gets an **out-of-fold** risk score. A model uses the
five confounders (age, sex, race, smoking status, pack-years) plus, per row of the table, image
features (standardised and reduced to ``cfg.survival_pca`` principal components inside the training
fold), spirometry (FEV1pp, FEV1/FVC), the BODE-like index, or image features with one of those.
All covariates are standardised with training-fold statistics; covariates constant in a training
fold are dropped for that fold. Folds are stratified on the event indicator.

Concordance is the cumulative/dynamic time-dependent C-index (AUC(t), Uno et al. 2007; Hung &
Chiang 2010) at the 25th/50th/75th percentiles of observed follow-up: cases are subjects with an
event at or before t, controls those still at risk after t, and each case is weighted by the inverse
probability of remaining uncensored just before its event time, ``1 / G(T_i-)``, with G the
Kaplan–Meier estimate of the censoring distribution. Ties in risk count one half. Standard errors
come from a non-parametric bootstrap of subjects over the fixed out-of-fold risks (G re-estimated in
each resample, time points held fixed).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.decomposition import PCA
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.preprocessing import StandardScaler

from drasclr.evaluate.config import EvaluateConfig
from drasclr.evaluate.readouts import (
    ID_COLUMN,
    FeatureInput,
    as_feature_frame,
    complete_rows,
    feature_columns,
)

CONFOUNDERS: tuple[str, ...] = ("age", "sex", "race", "smoking_status", "pack_years")
SPIROMETRY: tuple[str, ...] = ("fev1pp", "fev1_fvc")
BODE: tuple[str, ...] = ("bode",)


@dataclass(frozen=True)
class SurvivalModel:
    """One row group of the survival table.

    Attributes:
        name: row name (``imaging``, ``spirometry``, ...).
        group: ``imaging``, ``clinical`` or ``imaging+clinical`` (the paper's row blocks).
        use_image: include the image-feature principal components.
        clinical: clinical covariates added to the confounders.
    """

    name: str
    group: str
    use_image: bool
    clinical: tuple[str, ...] = ()


SURVIVAL_MODELS: tuple[SurvivalModel, ...] = (
    SurvivalModel("imaging", "imaging", True),
    SurvivalModel("spirometry", "clinical", False, SPIROMETRY),
    SurvivalModel("bode", "clinical", False, BODE),
    SurvivalModel("imaging+spirometry", "imaging+clinical", True, SPIROMETRY),
    SurvivalModel("imaging+bode", "imaging+clinical", True, BODE),
)
"""Rows of the paper's Table 3; every model also holds the five confounders."""


# ------------------------------------------------------------------------------------ concordance
def censoring_survival_before(
    time: NDArray[Any], event: NDArray[Any], at: NDArray[Any]
) -> NDArray[np.float64]:
    """Kaplan–Meier probability of remaining uncensored just before ``at``, G(at-).

    Censoring is the "event" of this estimator; a death at the same time as a censoring is
    taken to happen first (the usual convention), so it does not reduce G.

    Args:
        time: (n,) follow-up times.
        event: (n,) 1 death observed, 0 censored.
        at: query times.

    Returns:
        G(at-) for each query time.
    """
    time = np.asarray(time, np.float64)
    censored = np.asarray(event) == 0
    grid = np.unique(time)
    at_risk = len(time) - np.searchsorted(np.sort(time), grid, side="left")
    n_cens = np.bincount(np.searchsorted(grid, time[censored]), minlength=len(grid))
    factors = 1.0 - n_cens / np.maximum(at_risk, 1)
    cum = np.cumprod(factors)
    idx = np.searchsorted(grid, np.asarray(at, np.float64), side="left") - 1  # last grid time < at
    return np.where(idx >= 0, cum[np.maximum(idx, 0)], 1.0)


def cumulative_dynamic_cindex(
    time: NDArray[Any], event: NDArray[Any], risk: NDArray[Any], t: float, ipcw: bool = True
) -> float:
    """Time-dependent concordance AUC(t): P(risk_case > risk_control), cases T <= t with an event,
    controls T > t, cases weighted by 1/G(T_i-) when ``ipcw``.

    Args:
        time: (n,) follow-up times.
        event: (n,) event indicators.
        risk: (n,) risk scores (higher = earlier death expected).
        t: evaluation time.
        ipcw: inverse-probability-of-censoring weights (False: plain pair counting).

    Returns:
        The C-index in [0, 1]; NaN when there is no case or no control at t.
    """
    time = np.asarray(time, np.float64)
    event = np.asarray(event).astype(bool)
    risk = np.asarray(risk, np.float64)
    case = (time <= t) & event
    control = time > t
    if not case.any() or not control.any():
        return float("nan")
    w = (
        1.0 / censoring_survival_before(time, event, time[case])
        if ipcw
        else np.ones(int(case.sum()))
    )
    ctrl = np.sort(risk[control])
    less = np.searchsorted(ctrl, risk[case], side="left")
    less_equal = np.searchsorted(ctrl, risk[case], side="right")
    concordant = less + 0.5 * (less_equal - less)
    return float(np.sum(w * concordant) / (np.sum(w) * len(ctrl)))


def bootstrap_cindex(
    time: NDArray[Any],
    event: NDArray[Any],
    risk: NDArray[Any],
    times: Sequence[float],
    n_boot: int,
    seed: int,
) -> NDArray[np.float64]:
    """(n_boot, len(times)) C-indices on subject resamples (fixed risks and time points)."""
    rng = np.random.default_rng(seed)
    n = len(time)
    out = np.full((n_boot, len(times)), np.nan)
    for b in range(n_boot):
        idx = rng.integers(0, n, n)
        for k, t in enumerate(times):
            out[b, k] = cumulative_dynamic_cindex(time[idx], event[idx], risk[idx], t)
    return out


# ------------------------------------------------------------------------------------ Cox model
@dataclass
class CoxReadout:
    """Standardise (+ PCA for image features) → penalised Cox PH, fitted on one training fold."""

    n_components: int
    penalizer: float
    seed: int = 0

    def fit(
        self,
        image: NDArray[Any] | None,
        covariates: NDArray[Any],
        time: NDArray[Any],
        event: NDArray[Any],
    ) -> CoxReadout:
        """Fit on training rows; ``image`` (n, D) or None, ``covariates`` (n, C)."""
        from lifelines import CoxPHFitter

        self.image_steps_: list[Any] = []
        if image is not None:
            k = min(self.n_components, image.shape[0] - 1, image.shape[1])
            self.image_steps_ = [
                StandardScaler(),
                PCA(n_components=max(k, 1), random_state=self.seed),
            ]
        design = self._design(image, covariates, fit=True)
        self.keep_ = design.std(axis=0) > 1e-12
        self.scale_ = StandardScaler().fit(design[:, self.keep_])
        df = pd.DataFrame(self.scale_.transform(design[:, self.keep_]), columns=self._names())
        df["_time"], df["_event"] = np.asarray(time, float), np.asarray(event, int)
        self.cox_ = CoxPHFitter(penalizer=self.penalizer)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.cox_.fit(df, duration_col="_time", event_col="_event")
        return self

    def predict_risk(
        self, image: NDArray[Any] | None, covariates: NDArray[Any]
    ) -> NDArray[np.float64]:
        """Log partial hazard of new rows (higher = higher risk)."""
        design = self._design(image, covariates, fit=False)
        df = pd.DataFrame(self.scale_.transform(design[:, self.keep_]), columns=self._names())
        return np.asarray(self.cox_.predict_log_partial_hazard(df), np.float64)

    def _design(
        self, image: NDArray[Any] | None, covariates: NDArray[Any], fit: bool
    ) -> NDArray[np.float64]:
        parts = [np.asarray(covariates, np.float64)]
        if image is not None:
            z = np.asarray(image, np.float64)
            for step in self.image_steps_:
                z = step.fit_transform(z) if fit else step.transform(z)
            parts.insert(0, z)
        return np.concatenate(parts, axis=1)

    def _names(self) -> list[str]:
        return [f"x{j}" for j in range(int(self.keep_.sum()))]


def oof_cox_risk(
    image: NDArray[Any] | None,
    covariates: NDArray[Any],
    time: NDArray[Any],
    event: NDArray[Any],
    cfg: EvaluateConfig | None = None,
) -> tuple[NDArray[np.float64], int]:
    """Out-of-fold Cox risk scores (folds stratified on the event when both groups have k members).

    Returns:
        ``(risk (n,), number of folds)``.
    """
    cfg = cfg or EvaluateConfig()
    event = np.asarray(event).astype(int)
    n = len(time)
    k = min(cfg.n_folds, n // 2)
    if n < 6 or k < 2:
        raise ValueError(f"too few subjects (n={n}) for a cross-validated Cox model")
    counts = np.bincount(event, minlength=2)
    if counts.min() >= k:
        splitter: Any = StratifiedKFold(k, shuffle=True, random_state=cfg.seed)
    else:
        splitter = KFold(k, shuffle=True, random_state=cfg.seed)
    risk = np.full(n, np.nan)
    for tr, te in splitter.split(np.zeros((n, 1)), event):
        model = CoxReadout(cfg.survival_pca, cfg.cox_penalizer, cfg.seed)
        model.fit(None if image is None else image[tr], covariates[tr], time[tr], event[tr])
        risk[te] = model.predict_risk(None if image is None else image[te], covariates[te])
    return risk, k


# ------------------------------------------------------------------------------------ table
SURVIVAL_COLUMNS = [
    "model",
    "group",
    "quantile",
    "time",
    "c_index",
    "se",
    "n",
    "n_events",
    "n_folds",
]


def _survival_data(
    features: FeatureInput, labels: pd.DataFrame, models: Sequence[SurvivalModel]
) -> tuple[pd.DataFrame, list[str]]:
    """The subjects a survival table uses (features and every needed label present), sorted by
    id so the same subjects get the same folds for every method; and the feature columns."""
    frame, _ = complete_rows(as_feature_frame(features))
    feat_cols = feature_columns(frame)
    needed = [
        "survival_time",
        "survival_event",
        *CONFOUNDERS,
        *{c for m in models for c in m.clinical},
    ]
    missing = [c for c in needed if c not in labels.columns]
    if missing:
        raise ValueError(f"labels table lacks survival column(s) {missing}")
    lab = labels[[ID_COLUMN, *dict.fromkeys(needed)]].astype({ID_COLUMN: str})
    data = (
        frame.assign(**{ID_COLUMN: frame[ID_COLUMN].astype(str)})
        .merge(lab, on=ID_COLUMN)
        .dropna(subset=needed)
    )
    return data.sort_values(ID_COLUMN, kind="stable"), feat_cols


def survival_table(
    features: FeatureInput,
    labels: pd.DataFrame,
    cfg: EvaluateConfig | None = None,
    models: Sequence[SurvivalModel] = SURVIVAL_MODELS,
) -> pd.DataFrame:
    """The survival table for one features frame (all rows on the same subjects).

    Subjects need image features and every label used by ``models`` (survival, confounders,
    spirometry, BODE); others (e.g. ``n_valid = 0``) are left out. Evaluation times are the
    ``cfg.survival_quantiles`` percentiles of the observed follow-up times of those subjects.

    Returns:
        Tidy DataFrame: model, group, quantile, time, c_index, se, n, n_events, n_folds.
    """
    cfg = cfg or EvaluateConfig()
    data, feat_cols = _survival_data(features, labels, models)
    return _survival_rows(data, feat_cols, models, cfg)


def _survival_rows(
    data: pd.DataFrame, feat_cols: list[str], models: Sequence[SurvivalModel], cfg: EvaluateConfig
) -> pd.DataFrame:
    """The survival table of ``models`` on the rows of ``data`` (from :func:`_survival_data`)."""
    time = data["survival_time"].to_numpy(np.float64)
    event = data["survival_event"].to_numpy().astype(int)
    image = data[feat_cols].to_numpy(np.float64)
    times = np.percentile(time, cfg.survival_quantiles)
    rows = []
    for m in models:
        cov = data[[*CONFOUNDERS, *m.clinical]].to_numpy(np.float64)
        risk, k = oof_cox_risk(image if m.use_image else None, cov, time, event, cfg)
        boot = bootstrap_cindex(time, event, risk, times, cfg.n_bootstrap, cfg.seed)
        for j, (q, t) in enumerate(zip(cfg.survival_quantiles, times)):
            col = boot[:, j][np.isfinite(boot[:, j])]
            rows.append(
                {
                    "model": m.name,
                    "group": m.group,
                    "quantile": q,
                    "time": float(t),
                    "c_index": cumulative_dynamic_cindex(time, event, risk, t),
                    "se": _se(col),
                    "n": len(time),
                    "n_events": int(event.sum()),
                    "n_folds": k,
                }
            )
    return pd.DataFrame(rows, columns=SURVIVAL_COLUMNS)


def _se(values: NDArray[np.float64]) -> float:
    """Bootstrap standard error (sample s.d.; float noise of identical values reads 0)."""
    if len(values) < 2:
        return float("nan")
    sd = float(values.std(ddof=1))
    return 0.0 if sd < 1e-12 else sd


def survival_methods_table(
    methods: Mapping[str, FeatureInput],
    labels: pd.DataFrame,
    cfg: EvaluateConfig | None = None,
    models: Sequence[SurvivalModel] = SURVIVAL_MODELS,
) -> pd.DataFrame:
    """:func:`survival_table` for several feature sets, with a ``subjects`` column.

    Clinical-only rows depend only on the subjects, so they are computed once per distinct
    subject set (a method whose features are missing for some subjects uses fewer), on exactly
    the subjects of the imaging rows they are compared with. Their method is ``clinical`` when
    every method uses the same subjects, else ``clinical (subjects of A, B)``; ``subjects``
    names, for every row, the methods whose subject set the row was computed on.
    """
    cfg = cfg or EvaluateConfig()
    data = {name: _survival_data(feats, labels, models) for name, feats in methods.items()}
    sets: dict[tuple[str, ...], list[str]] = {}
    for name, (rows, _) in data.items():
        sets.setdefault(tuple(rows[ID_COLUMN]), []).append(name)
    shared = len(sets) == 1
    parts = []
    for names in sets.values():
        who = "subjects of " + ", ".join(names)
        for k, name in enumerate(names):
            todo = [m for m in models if m.use_image or k == 0]
            table = _survival_rows(*data[name], todo, cfg)
            clin = "clinical" if shared else f"clinical ({who})"
            table.insert(0, "method", np.where(table["group"] == "clinical", clin, name))
            parts.append(table.assign(subjects=who))
    return pd.concat(parts, ignore_index=True)
