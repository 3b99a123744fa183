"""Tests of drasclr.evaluate: synthetic features with a planted signal, and hand-made cases."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from drasclr.config import ConfigError
from drasclr.evaluate import baselines, detection, readouts, survival
from drasclr.evaluate.config import EvaluateConfig
from drasclr.imaging.geometry import Geometry

FAST = EvaluateConfig(n_bootstrap=20)


# ------------------------------------------------------------------------------------ fixtures
def cohort(
    n: int, seed: int = 0, signal: bool = True, dim: int = 12
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Labels driven by a latent severity z; features carry z (signal) or not (pure noise)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    ids = [f"S{i:03d}" for i in range(n)]
    loading = rng.normal(size=dim)
    noise = rng.normal(size=(n, dim))
    feats = (np.outer(z, loading) + 0.3 * noise) if signal else noise
    age = rng.uniform(45, 80, n)
    t_event = rng.exponential(np.exp(-1.2 * z) * 8.0)
    censor = rng.uniform(2, 12, n)
    labels = pd.DataFrame(
        {
            "subject_id": ids,
            "age": age,
            "sex": rng.integers(0, 2, n),
            "race": rng.integers(0, 2, n),
            "smoking_status": rng.integers(0, 2, n),
            "pack_years": rng.uniform(10, 80, n),
            "fev1pp": np.exp(np.log(80) - 0.25 * z + 0.03 * rng.normal(size=n)),
            "fev1_fvc": np.exp(np.log(0.65) - 0.15 * z + 0.02 * rng.normal(size=n)),
            "gold": np.digitize(z, [-0.8, 0.0, 0.8]).astype(float),
            "cle_score": np.digitize(z, [-0.5, 0.5]).astype(float),
            "paraseptal_score": np.digitize(z, [0.2]).astype(float),
            "exacerbation_history": (z > 0).astype(float),
            "bode": np.clip(np.round(3 + 2 * z), 0, 10),
            "survival_time": np.minimum(t_event, censor),
            "survival_event": (t_event <= censor).astype(int),
            "covid_grade": np.full(n, np.nan),
        }
    )
    return readouts.feature_frame(feats, ids), labels


def lookup(table: pd.DataFrame, task: str, metric: str) -> pd.Series:
    return table[(table["task"] == task) & (table["metric"] == metric)].iloc[0]


# ------------------------------------------------------------------------------------ readouts
def test_readouts_recover_planted_signal_and_noise_is_near_chance() -> None:
    feats, labels = cohort(80)
    table = readouts.image_readout_table(feats, labels, FAST)
    assert list(table.columns) == readouts.TABLE_COLUMNS
    assert "covid_grade" not in set(table["task"])  # all missing on a COPD cohort
    assert lookup(table, "log_fev1pp", "r2")["mean"] > 0.8
    assert lookup(table, "log_fev1_fvc", "r2")["mean"] > 0.8
    assert lookup(table, "gold", "accuracy")["mean"] > 0.7
    assert (
        lookup(table, "gold", "one_off_accuracy")["mean"]
        >= lookup(table, "gold", "accuracy")["mean"]
    )
    assert lookup(table, "exacerbation_history", "accuracy")["mean"] > 0.85
    assert (table["n"] == 80).all() and (table["n_folds"] == 5).all()
    assert (table["sd"] >= 0).all()
    assert lookup(table, "log_fev1pp", "r2")["pooled"] > 0.8

    noise_feats, _ = cohort(80, signal=False)
    noise = readouts.image_readout_table(noise_feats, labels, FAST)
    assert lookup(noise, "log_fev1pp", "r2")["mean"] < 0.15
    assert lookup(noise, "exacerbation_history", "accuracy")["mean"] < 0.7
    assert lookup(noise, "gold", "accuracy")["mean"] < 0.5


def test_readout_with_pca_and_array_input() -> None:
    feats, labels = cohort(40, seed=1)
    arr = feats[readouts.feature_columns(feats)].to_numpy()
    table = readouts.image_readout_table(
        (feats["subject_id"], arr), labels, EvaluateConfig(readout_pca=3)
    )
    assert lookup(table, "log_fev1pp", "r2")["mean"] > 0.7


def test_pipeline_is_refit_inside_each_training_fold(monkeypatch: pytest.MonkeyPatch) -> None:
    from sklearn.preprocessing import StandardScaler

    feats, labels = cohort(30, seed=2)
    X, y, _ = readouts.align(feats, labels, "fev1pp", log=True)
    X = X + 5.0 * (np.arange(len(X)) % 3 == 0)[:, None]  # rows differ in mean, so a leak would show
    seen: list[int] = []
    original = StandardScaler.fit

    def spy(self, X_fit, y_fit=None, sample_weight=None):  # type: ignore[no-untyped-def]
        seen.append(len(X_fit))
        return original(self, X_fit, y_fit, sample_weight)

    monkeypatch.setattr(StandardScaler, "fit", spy)
    result = readouts.cross_validate(X, y, "regression", ("r2",), FAST, keep_models=True)
    assert len(seen) == len(result.folds) == 5
    assert seen == [len(tr) for tr, _ in result.folds] and max(seen) < len(X)
    for model, (tr, te) in zip(result.models, result.folds):
        assert set(tr).isdisjoint(te)
        np.testing.assert_allclose(model.named_steps["scale"].mean_, X[tr].mean(axis=0))
        assert not np.allclose(model.named_steps["scale"].mean_, X.mean(axis=0))
    assert np.isfinite(result.oof.astype(float)).all()  # every subject tested exactly once
    assert sorted(np.concatenate([te for _, te in result.folds]).tolist()) == list(range(len(X)))
    assert result.pooled(y, "r2") == pytest.approx(
        1 - np.sum((y - result.oof) ** 2) / np.sum((y - y.mean()) ** 2)
    )


def test_same_subjects_get_same_folds_whatever_the_row_order() -> None:
    feats, labels = cohort(30, seed=3)
    shuffled = feats.sample(frac=1.0, random_state=0)
    a = readouts.image_readout_table(feats, labels, FAST)
    b = readouts.image_readout_table(shuffled, labels, FAST)
    np.testing.assert_allclose(a["mean"], b["mean"])


def test_tiny_cohorts_fall_back_and_explain() -> None:
    y = np.array([0, 0, 0, 0, 0, 1, 1, 2])  # class 2 has one member
    folds, note = readouts.choose_folds(y, "classification", 5, 0)
    assert len(folds) == 4 and "n=8" in note and "< 4 members: [1, 2]" in note
    folds, note = readouts.choose_folds(np.array([0, 1, 2, 3, 4, 5]), "classification", 5, 0)
    assert len(folds) == 3 and "plain K-fold" in note
    assert readouts.choose_folds(np.zeros(6), "classification", 5, 0) == ([], "single class [0.0]")

    feats, labels = cohort(8, seed=4)
    table = readouts.image_readout_table(feats, labels, FAST)
    assert (
        (table["n_folds"] == 4).all()
        and table["mean"].notna().all()
        and table["pooled"].notna().all()
    )
    tiny = readouts.image_readout_table(feats.iloc[:3], labels, FAST)
    assert tiny["mean"].isna().all() and tiny["note"].str.contains("too few").all()


def test_feature_columns_follow_the_features_schema() -> None:
    feats, labels = cohort(30, seed=7)
    frame = feats.assign(n_valid=np.int32(575))
    assert readouts.feature_columns(frame) == [f"f{j:03d}" for j in range(12)]
    laa = pd.DataFrame({"subject_id": ["a"], "laa950": [0.1], "n_valid": [3], "valid": [True]})
    assert readouts.feature_columns(laa) == ["laa950"]
    frame.loc[frame.index[:2], ["f000", "f001"]] = np.nan  # subjects without any valid patch
    frame.loc[frame.index[:2], "n_valid"] = 0
    table = readouts.image_readout_table(frame, labels, FAST)
    assert (table["n"] == 28).all() and table["note"].str.contains("2 subject").all()
    with pytest.raises(ValueError, match="infinite"):
        readouts.align(frame.assign(f003=np.inf), labels, "fev1pp")


def test_align_errors_are_clear() -> None:
    feats, labels = cohort(10)
    with pytest.raises(ValueError, match="more than once"):
        readouts.align(pd.concat([feats, feats.iloc[:1]]), labels, "fev1pp")
    with pytest.raises(ValueError, match="no subject_id in common"):
        readouts.align(feats.assign(subject_id="X" + feats["subject_id"]), labels, "fev1pp")
    with pytest.raises(ValueError, match="no column 'nope'"):
        readouts.align(feats, labels, "nope")


def test_format_mean_sd_and_config() -> None:
    t = pd.DataFrame(
        {
            "method": ["a", "a"],
            "task": ["gold", "fev"],
            "metric": ["accuracy", "r2"],
            "mean": [0.5, 0.71],
            "sd": [0.02, np.nan],
        }
    )
    wide = readouts.format_mean_sd(t, percent=True)
    assert wide.loc["a", "gold accuracy"] == "50.0 ± 2.0" and wide.loc["a", "fev r2"] == "0.71"
    assert EvaluateConfig.from_dict(FAST.to_dict()) == FAST
    with pytest.raises(ConfigError, match="n_folds"):
        EvaluateConfig(n_folds=1)


# ------------------------------------------------------------------------------------ survival
def brute_force_cindex(
    time: np.ndarray, event: np.ndarray, risk: np.ndarray, t: float, ipcw: bool
) -> float:
    """Pair-by-pair AUC(t) with a loop-computed Kaplan-Meier censoring survival G(T-)."""

    def g_before(s: float) -> float:
        g = 1.0
        for u in sorted(set(time)):
            if u >= s:
                break
            at_risk = sum(1 for x in time if x >= u)
            cens = sum(1 for x, e in zip(time, event) if x == u and e == 0)
            g *= 1 - cens / at_risk
        return g

    num = den = 0.0
    for i, j in itertools.product(range(len(time)), repeat=2):
        if time[i] <= t and event[i] == 1 and time[j] > t:
            w = 1.0 / g_before(time[i]) if ipcw else 1.0
            num += w * (1.0 if risk[i] > risk[j] else 0.5 if risk[i] == risk[j] else 0.0)
            den += w
    return num / den


def test_cindex_matches_brute_force_on_hand_made_example() -> None:
    time = np.array([1.0, 2.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.5])
    event = np.array([1, 0, 1, 1, 0, 1, 0, 0])
    risk = np.array([0.9, 0.2, 0.7, 0.4, 0.5, 0.4, 0.1, 0.3])
    # t = 3.5, no weights: cases {0, 2, 3}, controls {4, 5, 6, 7} with risks .5 .4 .1 .3;
    # case .9 beats 4, .7 beats 4, .4 beats .1 and .3 and ties .4 -> 2.5; total 10.5 / 12.
    assert survival.cumulative_dynamic_cindex(time, event, risk, 3.5, ipcw=False) == pytest.approx(
        10.5 / 12
    )
    for t in (1.5, 3.5, 5.5):
        for ipcw in (False, True):
            assert survival.cumulative_dynamic_cindex(time, event, risk, t, ipcw) == pytest.approx(
                brute_force_cindex(time, event, risk, t, ipcw)
            )
    assert np.isnan(survival.cumulative_dynamic_cindex(time, event, risk, 0.5))  # no case yet


def test_censoring_km_matches_lifelines() -> None:
    from lifelines import KaplanMeierFitter

    rng = np.random.default_rng(0)
    time = np.round(rng.uniform(0.5, 10, 40), 1)
    event = rng.integers(0, 2, 40)
    km = KaplanMeierFitter().fit(time, 1 - event)
    queries = np.array([0.3, 2.05, 5.55, 9.95, 12.0])
    expected = km.survival_function_at_times(queries - 1e-9).to_numpy()
    np.testing.assert_allclose(survival.censoring_survival_before(time, event, queries), expected)


def test_survival_table_finds_planted_risk() -> None:
    feats, labels = cohort(90, seed=5)
    table = survival.survival_table(feats, labels, FAST)
    assert list(table.columns) == survival.SURVIVAL_COLUMNS
    assert set(table["model"]) == {m.name for m in survival.SURVIVAL_MODELS}
    expected_times = np.percentile(labels["survival_time"], [25, 50, 75])
    for _, rows in table.groupby("model"):
        np.testing.assert_allclose(rows["time"], expected_times)
    imaging = table[table["model"] == "imaging"]
    assert (
        (imaging["c_index"] > 0.7).all()
        and (imaging["se"] > 0).all()
        and (imaging["se"] < 0.15).all()
    )
    noise_feats, _ = cohort(90, seed=5, signal=False)
    noise = survival.survival_table(noise_feats, labels, FAST, models=survival.SURVIVAL_MODELS[:1])
    assert noise["c_index"].mean() < 0.65


# ------------------------------------------------------------------------------------ detection
def test_25_percent_rule_on_hand_made_map() -> None:
    geom = Geometry.identity((40, 40, 40))
    prob = np.zeros((40, 40, 40))
    # box A: centre (10,10,10), 10 mm -> voxels 5..15 (11 per axis); 3 of its 11 z-slices (27 %).
    prob[5:8, 0:40, 0:40] = 0.9
    # box B: voxels 25..35; 2 of 11 z-slices (18 %) above 0.5, one slice exactly 0.5.
    prob[25:27, 20:40, 20:40] = 0.8
    prob[27, 20:40, 20:40] = 0.5
    boxes = pd.DataFrame(
        {
            "box_id": ["A", "B"],
            "centre_x": [10.0, 30.0],
            "centre_y": [10.0, 30.0],
            "centre_z": [10.0, 30.0],
            "size_mm": [10.0, 10.0],
        }
    )
    out = detection.box_detections(prob, geom, boxes)
    np.testing.assert_allclose(out["positive_fraction"], [3 / 11, 2 / 11])
    assert out["detected"].tolist() == [True, False]
    assert detection.box_detections(prob, geom, boxes, min_fraction=0.15)["detected"].tolist() == [
        True,
        True,
    ]
    scores = detection.detection_scores(out["detected"], [True, True])
    assert scores == {"f1": pytest.approx(2 / 3), "precision": 1.0, "recall": 0.5}


def test_box_fraction_matches_direct_slicing_with_flipped_axes() -> None:
    rng = np.random.default_rng(1)
    mask = rng.random((20, 24, 28)) > 0.6
    geom = Geometry((1.5, 1.0, 2.0), (10.0, -5.0, 3.0), (-1, 0, 0, 0, 1, 0, 0, 0, 1), (28, 24, 20))
    centres = geom.index_to_world(rng.uniform(0, [28, 24, 20], size=(12, 3)))
    bounds = detection.box_index_bounds(centres, 9.0, geom, mask.shape)
    got = detection.box_voxel_fraction(mask, bounds)
    for (lo, hi), g in zip(bounds, got):
        block = mask[lo[2] : hi[2], lo[1] : hi[1], lo[0] : hi[0]]
        assert g == pytest.approx(block.mean())
        assert 0 < block.size
    assert (bounds[:, 0] >= 0).all() and (bounds[:, 1] <= [28, 24, 20]).all()
    many = np.concatenate([bounds] * 10)  # > SLICE_BOXES_MAX: the summed-area path
    assert len(many) > detection.SLICE_BOXES_MAX
    np.testing.assert_allclose(detection.box_voxel_fraction(mask, many), np.tile(got, 10))


def test_dice_and_overlap_per_subtype_on_hand_made_masks() -> None:
    truth = np.zeros((4, 4, 4), np.uint8)
    truth[0, :2, :2] = 1  # 4 cle voxels
    truth[1, :, :] = 2  # 16 pse voxels
    pred = np.zeros_like(truth)
    pred[0, :2, :1] = 1  # 2 cle voxels, all correct
    pred[1, :2, :] = 2  # 8 pse correct
    pred[2, :2, :] = 2  # 8 pse wrong
    d = detection.dice_per_subtype(pred, truth)
    assert d["cle"] == pytest.approx(2 * 2 / (2 + 4))
    assert d["pse"] == pytest.approx(2 * 8 / (16 + 16))
    assert np.isnan(d["ggo"])
    region = np.ones_like(truth)
    region[2] = 0
    assert detection.dice_per_subtype(pred, truth, region=region)["pse"] == pytest.approx(
        2 * 8 / (8 + 16)
    )
    ov = detection.overlap_by_subtype(pred > 0, truth)
    assert (
        ov["sensitivity_cle"] == 0.5
        and ov["sensitivity_pse"] == 0.5
        and np.isnan(ov["sensitivity_ple"])
    )
    assert ov["dice_emphysema"] == pytest.approx(2 * 10 / (18 + 20))


def test_detected_fraction_and_gold_join() -> None:
    lung = np.zeros((2, 5, 5), bool)
    lung[:, 1:4, 1:4] = True  # 18 lung voxels
    prob = np.zeros(lung.shape)
    prob[0, 1:4, 1] = 0.7
    prob[0, 0, 0] = 0.99  # outside the lungs: ignored
    assert detection.detected_fraction(prob, lung) == pytest.approx(3 / 18)
    labels = pd.DataFrame({"subject_id": ["a", "b", "c"], "gold": [1.0, np.nan, -1.0]})
    out = detection.fraction_by_gold({"a": 0.1, "b": 0.2, "c": 0.3}, labels)
    assert out["subject_id"].tolist() == ["a", "c"] and out["gold"].tolist() == [1, -1]


def box_cohort(
    n_subjects: int = 24, per_subject: int = 4, signal: bool = True, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    rows, feats = [], []
    for s in range(n_subjects):
        label = "healthy" if s % 2 else ("cle" if s % 4 == 0 else "pse")
        for k in range(per_subject):
            box_id = f"S{s:02d}_{label}_{k}"
            rows.append({"box_id": box_id, "subject_id": f"S{s:02d}", "label": label})
            shift = {"healthy": 0.0, "cle": 2.0, "pse": -2.0}[label] if signal else 0.0
            feats.append([box_id, *(rng.normal(size=6) + shift)])
    box_features = pd.DataFrame(feats, columns=["box_id", *[f"f{j}" for j in range(6)]])
    return box_features, pd.DataFrame(rows)


def test_box_readout_grouped_by_subject() -> None:
    bf, boxes = box_cohort()
    table = detection.box_readout_table(bf, boxes, FAST)
    assert set(table["task"]) == {"cle", "pse"} and set(table["metric"]) == {
        "f1",
        "precision",
        "recall",
    }
    assert (table["mean"] > 0.9).all()
    assert table["note"].str.contains("grouped").all()
    _, y, groups = detection.box_dataset(bf, boxes, "cle")
    folds, _ = readouts.choose_folds(y, "classification", 5, 0, groups)
    for tr, te in folds:
        assert set(groups[tr]).isdisjoint(groups[te])
    bf_noise, _ = box_cohort(signal=False)
    assert detection.box_readout_table(bf_noise, boxes, FAST)["mean"].max() < 0.85


def test_label_efficiency_curve() -> None:
    rng = np.random.default_rng(3)
    y = np.repeat([0, 1], 40)
    good = rng.normal(size=(80, 5)) + 1.5 * y[:, None]
    noise = rng.normal(size=(80, 5))
    calls: list[int] = []

    def majority(train_idx: np.ndarray, test_idx: np.ndarray) -> np.ndarray:
        calls.append(len(train_idx))
        return np.full(len(test_idx), np.bincount(y[train_idx]).argmax())

    curve = detection.label_efficiency(
        {"pretrained": good, "scratch": noise, "const": majority},
        y,
        FAST,
        metric="accuracy",
        fractions=(0.1, 1.0),
    )
    assert len(curve) == 6 and set(curve["method"]) == {"pretrained", "scratch", "const"}
    get = curve.set_index(["method", "fraction"])["mean"]
    assert get["pretrained", 1.0] > 0.85 and get["pretrained", 1.0] > get["scratch", 1.0] + 0.2
    assert (
        calls[:5] == [6] * 5 and calls[5:] == [64] * 5
    )  # 10 % of 64 training labels, >= 1 per class


# ------------------------------------------------------------------------------------ baselines
def test_laa950_image_and_patch_level() -> None:
    ct = np.full((4, 4, 4), -800, np.int16)
    ct[0] = -980  # 16 low voxels, 8 of them in the lungs
    ct[3, 0, 0] = -950  # exactly -950 is not below the threshold
    lung = np.zeros_like(ct, bool)
    lung[:, :2, :] = True  # 32 lung voxels
    assert baselines.laa950(ct, lung) == pytest.approx(8 / 32)
    frame = baselines.laa950_frame({"a": (ct, lung)})
    assert frame.loc[0, "laa950"] == pytest.approx(0.25)
    with pytest.raises(ValueError, match="empty"):
        baselines.laa950(ct, np.zeros_like(lung))

    patches = np.stack([np.stack([ct, np.full_like(ct, -1000)])] * 3)  # (S=3, L=2, 4, 4, 4)
    masks = np.broadcast_to(lung, patches.shape)
    np.testing.assert_allclose(baselines.patch_laa950(patches, masks)[0], [0.25, 1.0])
    np.testing.assert_allclose(baselines.patch_laa950(patches)[0], [16 / 64, 1.0])
    lf = np.array([[0.5, 0.0]] * 3)
    assert np.isnan(
        baselines.patch_laa950(patches, masks, lung_fraction=lf, min_lung_fraction=0.1)[:, 1]
    ).all()
    pf = baselines.patch_laa950_frame(patches, ["a", "b", "c"], masks)
    assert list(pf.columns) == ["subject_id", "laa_000", "laa_001"] and pf["laa_001"].eq(1.0).all()


def test_compare_methods_and_survival_methods() -> None:
    feats, labels = cohort(40, seed=6)
    noise, _ = cohort(40, seed=6, signal=False)
    table = baselines.compare_methods({"drasclr": feats, "random": noise}, labels, FAST)
    assert table["method"].unique().tolist() == ["drasclr", "random"]
    r2 = table[table["metric"] == "r2"].set_index(["method", "task"])["mean"]
    assert r2["drasclr", "log_fev1pp"] > r2["random", "log_fev1pp"] + 0.5
    surv = survival.survival_methods_table(
        {"drasclr": feats, "random": noise}, labels, FAST, models=survival.SURVIVAL_MODELS[:2]
    )
    assert surv.groupby("method").size().to_dict() == {"clinical": 3, "drasclr": 3, "random": 3}
    assert set(surv["subjects"]) == {"subjects of drasclr, random"}


def test_survival_clinical_rows_use_each_comparisons_subjects() -> None:
    """A method missing features for some subjects gets clinical rows on its own subjects."""
    feats, labels = cohort(40, seed=6)
    partial = feats.copy()
    partial.loc[partial.index[:10], [c for c in partial.columns if c != "subject_id"]] = np.nan
    surv = survival.survival_methods_table(
        {"full": feats, "partial": partial}, labels, FAST, models=survival.SURVIVAL_MODELS[:2]
    )
    n = surv.groupby("method")["n"].unique().map(lambda v: v.tolist()).to_dict()
    assert n == {"full": [40], "partial": [30], "clinical (subjects of full)": [40],
                 "clinical (subjects of partial)": [30]}
    by_set = surv.groupby("subjects")["method"].unique().map(set).to_dict()
    assert by_set == {"subjects of full": {"full", "clinical (subjects of full)"},
                      "subjects of partial": {"partial", "clinical (subjects of partial)"}}
    clin = surv[surv["group"] == "clinical"].set_index(["method", "quantile"])["c_index"]
    assert not np.allclose(clin["clinical (subjects of full)"], clin["clinical (subjects of partial)"])


# ------------------------------------------------------------------------------------ figures
def test_figures_are_written(tmp_path: Path) -> None:
    from matplotlib.image import imread

    from drasclr.report import figures

    table = pd.DataFrame(
        {
            "method": ["drasclr", "drasclr", "laa", "laa"],
            "task": ["log_fev1pp", "gold"] * 2,
            "metric": ["r2", "accuracy"] * 2,
            "mean": [0.6, 0.55, 0.4, 0.5],
            "sd": [0.05, 0.03, 0.04, 0.02],
        }
    )
    surv = pd.DataFrame(
        {
            "model": ["imaging"] * 3 + ["bode"] * 3,
            "quantile": [25.0, 50.0, 75.0] * 2,
            "c_index": [0.7, 0.72, 0.71, 0.68, 0.7, 0.69],
            "se": [0.02] * 6,
        }
    )
    curve = pd.DataFrame(
        {
            "method": ["a", "a", "b", "b"],
            "fraction": [0.1, 1.0] * 2,
            "metric": "f1",
            "mean": [0.6, 0.8, 0.4, 0.7],
            "sd": [0.05] * 4,
        }
    )
    gold = pd.DataFrame({"gold": [-1, 0, 0, 1, 2, 2, 3, 4], "fraction": np.linspace(0, 0.3, 8)})
    paths = [
        figures.readout_bars(table, tmp_path / "bars.png"),
        figures.survival_plot(surv, tmp_path / "surv.png"),
        figures.label_efficiency_plot(curve, tmp_path / "curve.png"),
        figures.fraction_by_gold_plot(gold, tmp_path / "gold.png"),
    ]
    for p in paths:
        img = imread(p)
        assert img.shape[0] > 200 and img.shape[1] > 300
        assert img[..., :3].std() > 0.05  # not a blank canvas
    assert sorted(x.name for x in tmp_path.iterdir()) == [
        "bars.png",
        "curve.png",
        "gold.png",
        "surv.png",
    ]
