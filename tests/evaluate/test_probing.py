"""Linear probes, powered image readouts and the science metrics on hand-made data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from drasclr.evaluate.image_probe import LandmarkStandardizedMean, repeated_cv, sanity_rows
from drasclr.evaluate.science import (
    DETECT_FRACTION,
    WITH_LAA950_METRIC,
    detection_metrics,
    patch_metrics,
    with_density_r2,
)
from drasclr.probing import grouped_folds, r2_score, ridge_probe


def test_grouped_folds_never_split_a_subject() -> None:
    groups = np.repeat(np.arange(23), 7)
    folds = grouped_folds(groups, 5, seed=3)
    assert sorted(np.concatenate(folds).tolist()) == list(range(len(groups)))
    for test in folds:
        inside = set(groups[test])
        outside = set(np.delete(groups, test))
        assert not inside & outside
    sizes = [len(set(groups[t])) for t in folds]
    assert max(sizes) - min(sizes) <= 1
    with pytest.raises(ValueError, match="groups cannot make"):
        grouped_folds(np.arange(3), 5, 0)


def test_ridge_probe_finds_a_planted_signal_and_not_noise() -> None:
    rng = np.random.default_rng(0)
    n_sub, n_lm = 40, 12
    groups = np.repeat(np.arange(n_sub), n_lm)
    y = rng.uniform(0, 0.2, len(groups)) * (rng.random(len(groups)) < 0.5)
    signal = np.column_stack([y + rng.normal(0, 0.02, len(y)), rng.normal(size=(len(y), 7))])
    noise = rng.normal(size=(len(y), 8))
    good = ridge_probe(signal, y, groups, 5, 2, 0)
    bad = ridge_probe(noise, y, groups, 5, 2, 0)
    assert good.summary()["r2"] > 0.8 and good.summary()["auc"] > 0.95
    assert bad.summary()["r2"] < 0.05 and abs(bad.summary()["auc"] - 0.5) < 0.1
    assert good.oof.shape == (2, len(y)) and np.isfinite(good.oof).all()
    with pytest.raises(ValueError, match="finite"):
        ridge_probe(np.full((len(y), 2), np.nan), y, groups)


def test_r2_score_definition() -> None:
    y = np.array([1.0, 2.0, 3.0, 4.0])
    assert r2_score(y, y) == 1.0
    assert r2_score(y, np.full(4, y.mean())) == 0.0
    assert np.isnan(r2_score(np.ones(3), np.arange(3.0)))


def test_landmark_standardisation_uses_training_rows_only() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(10, 3 * 2))
    x[:, :2] *= 100.0  # landmark 0 has a 100x larger scale: it must not dominate the mean
    t = LandmarkStandardizedMean(3).fit(x[:6])
    np.testing.assert_allclose(t.mean_, x[:6].mean(axis=0))
    out = t.transform(x)
    assert out.shape == (10, 2)
    z = (x[:6] - x[:6].mean(0)) / x[:6].std(0)
    np.testing.assert_allclose(out[:6], z.reshape(6, 3, 2).mean(axis=1))
    x_nan = x.copy()
    x_nan[0, 0:2] = np.nan  # an invalid patch is skipped in the mean
    o = LandmarkStandardizedMean(3).fit(x_nan).transform(x_nan)
    assert np.isfinite(o).all()


def test_sanity_rows_random_features_do_not_drown_a_real_one() -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal(150)
    y = 0.8 * a + 0.6 * rng.standard_normal(150)
    rows = sanity_rows(a, y, seeds=(0,), repeats=2)
    alone = rows["LAA-950 alone"]["score"]
    padded = rows["LAA-950 + 128 random (seed 0)"]["score"]
    assert alone > 0.5 and abs(alone - padded) < 0.08
    noise = repeated_cv(rng.standard_normal((150, 20)), y, "regression", repeats=2)
    assert noise["score"] < 0.1 and len(noise["scores"]) == 2


def test_detection_metrics_on_hand_made_predictions() -> None:
    # 3 subjects x 4 landmarks; subject a healthy, b half flagged, c all flagged
    truth = pd.DataFrame({"subject_id": np.repeat(["a", "b", "c"], 4),
                          "store_index": np.repeat([0, 1, 2], 4),
                          "landmark": np.tile(np.arange(4), 3)})
    oof = np.array([0.0, 0.0, 0.01, 0.0,
                    DETECT_FRACTION, DETECT_FRACTION, 0.0, 0.0,
                    0.2, 0.3, 0.2, 0.1])
    lung = np.ones((4, 3))
    det = detection_metrics(oof, truth, lung, {"a": 0.0, "b": 0.05, "c": 0.2})
    assert det["healthy_detected_fraction"] == 0.0 and det["n_healthy"] == 1
    assert det["detected_true_spearman"] == pytest.approx(1.0)
    assert det["detected_share_mean"] == pytest.approx((0 + 0.5 + 1) / 3)


def test_with_density_r2_credits_what_the_density_score_misses_and_nothing_else() -> None:
    """Features that see a part of the lesion burden the density score misses lift the probe
    above the density score alone; noise features beside it do not."""
    rng = np.random.default_rng(1)
    n_sub, n_lm = 40, 10
    n = n_sub * n_lm
    seen, missed = rng.uniform(0, 0.1, n), rng.uniform(0, 0.1, n)
    truth = pd.DataFrame({"subject_id": np.repeat([f"s{i}" for i in range(n_sub)], n_lm),
                          "store_index": np.repeat(np.arange(n_sub), n_lm),
                          "landmark": np.tile(np.arange(n_lm), n_sub), "valid": True,
                          "lung_fraction": 1.0, "emphysema": seen + missed, "cle": seen,
                          "pse": missed})
    density = seen + rng.normal(0, 0.005, n)
    features = np.column_stack([missed + rng.normal(0, 0.005, n), rng.normal(size=(n, 5))])
    alone = np.mean(patch_metrics(density, truth, 2, 0)[0]["patch_lesion_r2"])
    lifted = with_density_r2(features, density, truth, 2, 0)[WITH_LAA950_METRIC]
    flat = with_density_r2(rng.normal(size=(n, 6)), density, truth, 2, 0)[WITH_LAA950_METRIC]
    assert len(lifted) == 2 and 0.3 < alone < 0.7
    assert np.mean(lifted) > alone + 0.3
    assert abs(np.mean(flat) - alone) < 0.03
    # the emphysema-only probe is the full probe's emphysema score
    both = np.column_stack([features, density])
    full, _ = patch_metrics(both, truth, 2, 0)
    assert lifted == full["patch_lesion_r2"]
