"""Image-level linear readouts by cross-validation (paper §4.2.1 Table 2, §4.2.3 Table 4).

Frozen image features (one row per subject) predict each clinical label with a linear model:
ridge regression for log FEV1pp and log FEV1/FVC (R²), L2 multinomial logistic regression for GOLD,
CLE score, paraseptal score (accuracy and 1-off accuracy), exacerbation history and the COVID-like
grade (accuracy). Every readout is a scikit-learn ``Pipeline`` (standardise → optional PCA → model)
that is built and fitted afresh inside each training fold, so test subjects never inform the
scaling, the components or the penalty. Scores are per test fold; tables give mean ± s.d. over folds
(sample s.d., ddof = 1).

Fold rule for small cohorts (``choose_folds``): k = min(n_folds, n // 2) so every test fold holds at
least two subjects; classification folds are stratified whenever the most populated class has at
least k members (scikit-learn then spreads rarer classes as evenly as it can, and the note names
classes with fewer than k members), otherwise shuffled plain K-fold. A task with fewer than 4
labelled subjects, or a single class, yields a row of NaN with the reason in ``note``. When a
training fold holds only one class, the fold predicts that class (a constant model).

GOLD keeps PRISm (-1) as its own class; 1-off accuracy uses the numeric distance of the codes, so
PRISm counts as a neighbour of GOLD 0 only.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.base import BaseEstimator
from sklearn.decomposition import PCA
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.metrics import accuracy_score, f1_score, precision_score, r2_score, recall_score
from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from drasclr.evaluate.config import EvaluateConfig

Kind: TypeAlias = Literal["regression", "classification"]
FeatureInput: TypeAlias = pd.DataFrame | tuple[Sequence[str], NDArray[Any]]
ID_COLUMN = "subject_id"


@dataclass(frozen=True)
class Task:
    """One readout: which label column, how it is transformed and scored.

    Attributes:
        name: row name in tables (e.g. ``log_fev1pp``).
        column: column of the labels table.
        kind: regression or classification.
        metrics: metric names (see :data:`METRICS`).
        log: predict ``log(column)`` instead of the column.
    """

    name: str
    column: str
    kind: Kind
    metrics: tuple[str, ...]
    log: bool = False


IMAGE_TASKS: tuple[Task, ...] = (
    Task("log_fev1pp", "fev1pp", "regression", ("r2",), log=True),
    Task("log_fev1_fvc", "fev1_fvc", "regression", ("r2",), log=True),
    Task("gold", "gold", "classification", ("accuracy", "one_off_accuracy")),
    Task("cle_score", "cle_score", "classification", ("accuracy", "one_off_accuracy")),
    Task(
        "paraseptal_score", "paraseptal_score", "classification", ("accuracy", "one_off_accuracy")
    ),
    Task("exacerbation_history", "exacerbation_history", "classification", ("accuracy",)),
    Task("covid_grade", "covid_grade", "classification", ("accuracy",)),
)
"""The paper's image-level tasks (Table 2 on COPD cohorts, Table 4 on COVID cohorts)."""


def one_off_accuracy(y_true: NDArray[Any], y_pred: NDArray[Any]) -> float:
    """Share of predictions within one ordinal grade of the truth (|pred - true| <= 1)."""
    return float(np.mean(np.abs(np.asarray(y_pred, float) - np.asarray(y_true, float)) <= 1))


def _r2(y: NDArray[Any], p: NDArray[Any]) -> float:
    return float(r2_score(y, p)) if len(y) >= 2 else float("nan")


METRICS: dict[str, Callable[[NDArray[Any], NDArray[Any]], float]] = {
    "r2": _r2,
    "accuracy": lambda y, p: float(accuracy_score(y, p)),
    "one_off_accuracy": one_off_accuracy,
    "f1": lambda y, p: float(f1_score(y, p, zero_division=0)),
    "precision": lambda y, p: float(precision_score(y, p, zero_division=0)),
    "recall": lambda y, p: float(recall_score(y, p, zero_division=0)),
}
"""Per-fold metrics; f1/precision/recall are binary with positive label 1."""


# ------------------------------------------------------------------------------------ features
def feature_frame(
    features: NDArray[Any], subject_ids: Sequence[str], prefix: str = "f"
) -> pd.DataFrame:
    """A features frame (``subject_id`` + ``f000``.. columns) from an (S, D) array and its ids."""
    arr = np.asarray(features)
    if arr.ndim != 2 or arr.shape[0] != len(subject_ids):
        raise ValueError(
            f"features must be (S, D) with S = {len(subject_ids)} ids, got shape {arr.shape}"
        )
    width = max(3, len(str(arr.shape[1] - 1)))
    cols = {f"{prefix}{j:0{width}d}": arr[:, j] for j in range(arr.shape[1])}
    return pd.DataFrame({ID_COLUMN: [str(s) for s in subject_ids], **cols})


def as_feature_frame(features: FeatureInput) -> pd.DataFrame:
    """Accept a features frame or ``(subject_ids, (S, D) array)`` and return a frame."""
    if isinstance(features, pd.DataFrame):
        if ID_COLUMN not in features.columns:
            raise ValueError(
                f"features frame needs a '{ID_COLUMN}' column; has {list(features.columns)[:8]}"
            )
        return features
    ids, arr = features
    return feature_frame(arr, list(ids))


META_COLUMNS: frozenset[str] = frozenset(
    {ID_COLUMN, "box_id", "label", "n_valid", "landmark", "valid", "loc_x", "loc_y", "loc_z"}
)
"""Identifier and bookkeeping columns of feature tables (schemas features / patch_features)."""
_LEARNED = re.compile(r"^f\d+$")


def feature_columns(frame: pd.DataFrame, exclude: Sequence[str] = ()) -> list[str]:
    """The feature columns of a features frame.

    Learned features follow the ``f000``… naming of the features schema; when a frame has such
    columns, exactly those are used. Otherwise (hand-made features such as ``laa950``) every
    numeric, non-bool column except :data:`META_COLUMNS` and ``exclude`` is a feature.
    """
    learned = [c for c in frame.columns if _LEARNED.match(str(c)) and c not in exclude]
    if learned:
        return learned
    skip = META_COLUMNS | set(exclude)
    cols = [
        c
        for c in frame.columns
        if c not in skip
        and pd.api.types.is_numeric_dtype(frame[c])
        and not pd.api.types.is_bool_dtype(frame[c])
    ]
    if not cols:
        raise ValueError("features frame has no numeric feature columns")
    return cols


def complete_rows(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Drop subjects whose features are missing (e.g. ``n_valid = 0``); return (frame, n_dropped).

    Raises:
        ValueError: infinite feature values.
    """
    values = frame[feature_columns(frame)].to_numpy(np.float64)
    if np.isinf(values).any():
        raise ValueError("features hold infinite values")
    ok = ~np.isnan(values).any(axis=1)
    return frame[ok], int((~ok).sum())


def align(
    features: FeatureInput, labels: pd.DataFrame, column: str, log: bool = False
) -> tuple[NDArray[np.float64], NDArray[Any], NDArray[Any]]:
    """Join features with one label column on ``subject_id``; drop subjects without that label
    or without features (see :func:`complete_rows`).

    Returns:
        ``(X (n, D), y (n,), subject_ids (n,))`` sorted by subject id, so that two feature sets
        over the same subjects get the same folds.

    Raises:
        ValueError: duplicated subject ids, a missing label column, or no subject in common.
    """
    frame = as_feature_frame(features)
    if frame[ID_COLUMN].duplicated().any():
        dup = frame.loc[frame[ID_COLUMN].duplicated(), ID_COLUMN].unique()[:5].tolist()
        raise ValueError(f"features frame lists subject(s) more than once: {dup}")
    if column not in labels.columns:
        raise ValueError(f"labels table has no column '{column}'")
    cols = feature_columns(frame)
    frame, _ = complete_rows(frame)
    lab = labels[[ID_COLUMN, column]].astype({ID_COLUMN: str})
    merged = frame.assign(**{ID_COLUMN: frame[ID_COLUMN].astype(str)}).merge(
        lab, on=ID_COLUMN, how="inner"
    )
    if merged.empty:
        raise ValueError("features and labels have no subject_id in common")
    merged = merged[merged[column].notna()].sort_values(ID_COLUMN, kind="stable")
    X = merged[cols].to_numpy(np.float64)
    y = merged[column].to_numpy()
    if log:
        y = np.log(y.astype(np.float64))
    return X, y, merged[ID_COLUMN].to_numpy()


# ------------------------------------------------------------------------------------ folds
def choose_folds(
    y: NDArray[Any], kind: Kind, n_folds: int, seed: int, groups: NDArray[Any] | None = None
) -> tuple[list[tuple[NDArray[np.int64], NDArray[np.int64]]], str]:
    """Seeded fold split adapted to the cohort size (rule in the module docstring).

    Args:
        y: targets (n,).
        kind: regression (plain K-fold) or classification (stratified when possible).
        n_folds: wanted folds.
        seed: shuffle seed.
        groups: optional group labels (e.g. subject of each box): a group never sits in both the
            training and the test side of a fold; k is then also capped by the number of groups.

    Returns:
        ``([(train_idx, test_idx), ...], note)``; an empty list when no valid split exists.
    """
    n = len(y)
    n_units = n if groups is None else len(np.unique(groups))
    k = min(n_folds, n // 2, n_units)
    if n < 4 or k < 2:
        return [], f"too few samples (n={n}) for cross-validation"
    notes = [f"{k}-fold" + (f" (n={n})" if k < n_folds else "")]
    X_dummy = np.zeros((n, 1))
    if kind == "classification":
        values, counts = np.unique(y, return_counts=True)
        if len(values) < 2:
            return [], f"single class {values.tolist()}"
        if counts.max() >= k:
            rare = values[counts < k].tolist()
            if rare:
                notes.append(f"stratified; classes with < {k} members: {rare}")
            else:
                notes.append("stratified")
            if groups is None:
                splitter: Any = StratifiedKFold(k, shuffle=True, random_state=seed)
            else:
                splitter = StratifiedGroupKFold(k, shuffle=True, random_state=seed)
        else:
            notes.append(f"plain K-fold: no class has {k} members")
            splitter = (
                KFold(k, shuffle=True, random_state=seed)
                if groups is None
                else GroupKFold(k, shuffle=True, random_state=seed)
            )
    else:
        splitter = (
            KFold(k, shuffle=True, random_state=seed)
            if groups is None
            else GroupKFold(k, shuffle=True, random_state=seed)
        )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*least populated class.*")
        folds = [
            (tr.astype(np.int64), te.astype(np.int64))
            for tr, te in splitter.split(X_dummy, y, groups)
        ]
    if groups is not None:
        notes.append("grouped")
    return folds, "; ".join(notes)


# ------------------------------------------------------------------------------------ models
def make_readout(kind: Kind, cfg: EvaluateConfig, n_train: int, n_features: int) -> Pipeline:
    """A fresh, unfitted readout pipeline: ``scale`` → (``pca``) → ``model``.

    Ridge chooses its penalty among ``cfg.ridge_alphas`` by efficient leave-one-out on the training
    rows only; logistic regression is L2 with ``C = cfg.logistic_c`` (multinomial for > 2 classes).
    PCA keeps ``min(cfg.readout_pca, n_train, n_features)`` components.
    """
    steps: list[tuple[str, BaseEstimator]] = [("scale", StandardScaler())]
    if cfg.readout_pca is not None:
        steps.append(
            (
                "pca",
                PCA(n_components=min(cfg.readout_pca, n_train, n_features), random_state=cfg.seed),
            )
        )
    if kind == "regression":
        steps.append(("model", RidgeCV(alphas=cfg.ridge_alphas)))
    else:
        # Newton-Cholesky is exact and fast for the small problems of a readout; L-BFGS scales
        # better when there are many features (e.g. one LAA value per landmark patch).
        solver = "newton-cholesky" if n_features <= 256 else "lbfgs"
        steps.append(("model", LogisticRegression(C=cfg.logistic_c, solver=solver, max_iter=5000)))
    return Pipeline(steps)


PipelineFactory = Callable[[Kind, EvaluateConfig, int, int], Any]


@dataclass
class CVResult:
    """Outcome of one cross-validated readout.

    Attributes:
        fold_scores: metric name → (k,) per-test-fold scores.
        oof: out-of-fold predictions (n,), NaN/None where a sample was never tested.
        folds: the (train_idx, test_idx) pairs used.
        note: how the folds were chosen (or why there are none).
        models: fitted pipelines per fold when ``keep_models`` was set.
    """

    fold_scores: dict[str, NDArray[np.float64]]
    oof: NDArray[Any]
    folds: list[tuple[NDArray[np.int64], NDArray[np.int64]]]
    note: str
    models: list[Any] = field(default_factory=list)

    def summary(self) -> dict[str, tuple[float, float]]:
        """metric → (mean, sample s.d.) over folds (s.d. NaN with one fold)."""
        out = {}
        for name, s in self.fold_scores.items():
            ok = s[np.isfinite(s)]
            mean = float(ok.mean()) if len(ok) else float("nan")
            sd = float(ok.std(ddof=1)) if len(ok) > 1 else float("nan")
            out[name] = (mean, sd)
        return out

    def pooled(self, y: NDArray[Any], metric: str) -> float:
        """``metric`` on all out-of-fold predictions at once (steadier than fold means when test
        folds hold only a few subjects); NaN without folds."""
        if not self.folds:
            return float("nan")
        tested = np.concatenate([te for _, te in self.folds])
        pred = self.oof[tested]
        truth = np.asarray(y)[tested]
        if pred.dtype == object:
            pred = pred.astype(truth.dtype)
        return METRICS[metric](truth, pred)


def cross_validate(
    X: NDArray[Any],
    y: NDArray[Any],
    kind: Kind,
    metrics: Sequence[str],
    cfg: EvaluateConfig | None = None,
    *,
    groups: NDArray[Any] | None = None,
    keep_models: bool = False,
    pipeline_factory: PipelineFactory | None = None,
) -> CVResult:
    """K-fold readout with every preprocessing step fitted inside the training fold.

    Args:
        X: (n, D) features.
        y: (n,) targets.
        kind: regression or classification.
        metrics: names from :data:`METRICS`, computed on each test fold.
        cfg: evaluation settings (defaults if None).
        groups: optional groups kept on one side of each split (see :func:`choose_folds`).
        keep_models: keep the fitted pipeline of each fold (for inspection and tests).
        pipeline_factory: replaces :func:`make_readout` (same signature).

    Returns:
        A :class:`CVResult`.
    """
    cfg = cfg or EvaluateConfig()
    X = np.asarray(X, np.float64)
    y = np.asarray(y)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; known: {sorted(METRICS)}")
    folds, note = choose_folds(y, kind, cfg.n_folds, cfg.seed, groups)
    oof = np.full(len(y), np.nan) if kind == "regression" else np.full(len(y), None, dtype=object)
    scores = {m: np.full(len(folds), np.nan) for m in metrics}
    factory = pipeline_factory or make_readout
    models = []
    for f, (tr, te) in enumerate(folds):
        if kind == "classification" and len(np.unique(y[tr])) < 2:
            model: Any = DummyClassifier(strategy="most_frequent")
        else:
            model = factory(kind, cfg, len(tr), X.shape[1])
        model.fit(X[tr], y[tr])
        pred = model.predict(X[te])
        oof[te] = pred
        for m in metrics:
            scores[m][f] = METRICS[m](y[te], pred)
        if keep_models:
            models.append(model)
    return CVResult(scores, oof, folds, note, models)


# ------------------------------------------------------------------------------------ tables
TABLE_COLUMNS = ["task", "metric", "mean", "sd", "pooled", "n", "n_folds", "note"]


def task_rows(result: CVResult, task: Task, y: NDArray[Any]) -> list[dict[str, Any]]:
    """Tidy rows (one per metric) of one task's CV result on targets ``y``."""
    summary = result.summary()
    return [
        {
            "task": task.name,
            "metric": m,
            "mean": summary[m][0],
            "sd": summary[m][1],
            "pooled": result.pooled(y, m),
            "n": len(y),
            "n_folds": len(result.folds),
            "note": result.note,
        }
        for m in task.metrics
    ]


def image_readout_table(
    features: FeatureInput,
    labels: pd.DataFrame,
    cfg: EvaluateConfig | None = None,
    tasks: Sequence[Task] = IMAGE_TASKS,
) -> pd.DataFrame:
    """Every image-level readout for one features frame: a tidy table.

    Tasks whose label column is absent or entirely missing (e.g. ``covid_grade`` on a COPD
    cohort) are left out; tasks with too few subjects give NaN rows with the reason in ``note``.

    Args:
        features: features frame (``subject_id`` + numeric columns) or ``(ids, (S, D) array)``.
        labels: the cohort's labels table (schema ``labels``).
        cfg: evaluation settings.
        tasks: which readouts to run.

    Returns:
        DataFrame with columns task, metric, mean, sd (over test folds), pooled (the metric on all
        out-of-fold predictions together), n, n_folds, note.
    """
    cfg = cfg or EvaluateConfig()
    frame, dropped = complete_rows(as_feature_frame(features))
    rows: list[dict[str, Any]] = []
    for task in tasks:
        if task.column not in labels.columns or labels[task.column].notna().sum() == 0:
            continue
        X, y, _ = align(frame, labels, task.column, log=task.log)
        if task.kind == "classification":
            y = y.astype(np.int64)
        result = cross_validate(X, y, task.kind, task.metrics, cfg)
        if dropped:
            result.note += f"; {dropped} subject(s) without features left out"
        rows.extend(task_rows(result, task, y))
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def format_mean_sd(
    table: pd.DataFrame, index: str = "method", digits: int = 2, percent: bool = False
) -> pd.DataFrame:
    """Wide report table: one row per ``index`` value, one column per task/metric, "mean ± sd".

    Args:
        table: tidy table with ``index``, task, metric, mean and sd columns.
        index: the column that names rows (e.g. method).
        digits: decimals.
        percent: show accuracies (metrics other than r2 / c_index) in percent.
    """

    def fmt(row: pd.Series) -> str:
        scale = 100.0 if percent and row["metric"] not in ("r2", "c_index") else 1.0
        d = 1 if scale == 100.0 else digits
        if not np.isfinite(row["mean"]):
            return "–"
        sd = f" ± {row['sd'] * scale:.{d}f}" if np.isfinite(row["sd"]) else ""
        return f"{row['mean'] * scale:.{d}f}{sd}"

    cells = table.assign(
        cell=table.apply(fmt, axis=1), column=table["task"] + " " + table["metric"]
    )
    order = list(dict.fromkeys(cells["column"]))
    wide = cells.pivot(index=index, columns="column", values="cell")
    return wide.reindex(columns=order).reindex(list(dict.fromkeys(cells[index])))
