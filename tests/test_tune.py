"""Ray Tune sweep over pretrain -> extract -> evaluate on the tiny cohort (issue 6 Done-when)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from drasclr.config import ConfigError
from drasclr.tune import SPACES, SweepConfig, run_sweep


def test_spaces_and_config_validation() -> None:
    assert set(SPACES["neighbours"]["neighbours"][1]) == {0, 1, 2, 3}
    assert set(SPACES["conditioning"]["conditioning"][1]) == {
        "none", "concat", "hypernet", "loccondconv"}
    with pytest.raises(ConfigError, match="space"):
        SweepConfig(space="nope")


def test_neighbours_x_conditioning_sweep(tiny_store: dict[str, Path], tmp_path: Path) -> None:
    cfg = SweepConfig(space="neighbours_x_conditioning", steps=8, eval_every=4, batch_size=4,
                      queue_size=16, experts=2, cpus_per_trial=1.0, early_stopping=True)
    out = tmp_path / "run" / "sweeps" / "ngb_x_cond"
    table = run_sweep({"tiny": tiny_store["store"]}, tiny_store["labels"], out, cfg)
    assert len(table) == 4
    combos = set(zip(table["param_neighbours"], table["param_conditioning"]))
    assert combos == {(0, "none"), (0, "loccondconv"), (2, "none"), (2, "loccondconv")}
    # every trial reported a downstream metric at least once (ASHA may stop some at rung 1)
    assert table["training_iteration"].between(1, 2).all()
    assert table[cfg.metric].notna().all() and (table["status"] == "ok").all()
    assert (out / "results.csv").exists() and (out / "sweep.png").stat().st_size > 5000
    assert pd.read_csv(out / "results.csv").shape[0] == 4
    # each trial pretrained for real: checkpoints in its own folder
    assert len(list((out / "trials").glob("*/checkpoints/step_*"))) >= 4
    # re-running restores the finished experiment instead of training again
    again = run_sweep({"tiny": tiny_store["store"]}, tiny_store["labels"], out, cfg)
    assert len(again) == 4
    # the sweep lands in the run's report: its table (every trial) and its figure
    from drasclr.report.markdown import write_report

    report = write_report(tmp_path / "run", tmp_path / "run" / "report")
    text = report.read_text()
    assert "Sweep `ngb_x_cond`" in text and "neighbours_x_conditioning" in text
    assert text.count("| loccondconv |") + text.count("| none |") >= 4
    assert (report.parent / "figures" / "sweep_ngb_x_cond.png").is_file()
    with pytest.raises(ConfigError, match="another sweep"):
        run_sweep({"tiny": tiny_store["store"]}, tiny_store["labels"], out, cfg.replace(steps=9))


def test_non_finite_readout_is_nan_and_marks_the_trial_failed(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    """A readout that could not be computed is NaN (not -1.0, which reads as a real R²)."""
    import math
    from types import SimpleNamespace

    from drasclr import features
    from drasclr.evaluate import readouts
    from drasclr.features import output
    from drasclr.tune import trial_metrics, trial_status

    table = pd.DataFrame({"task": ["log_fev1pp", "gold", "cle_score"],
                          "metric": ["r2", "accuracy", "accuracy"],
                          "mean": [float("-inf"), float("nan"), 0.5]})
    monkeypatch.setattr(features, "extract_patch_features", lambda *a, **k: None)
    monkeypatch.setattr(output, "image_table", lambda f: SimpleNamespace(to_pandas=lambda: None))
    monkeypatch.setattr(readouts, "image_readout_table", lambda *a, **k: table)
    got = trial_metrics(None, tmp_path, pd.DataFrame())
    assert math.isnan(got["log_fev1pp_r2"]) and math.isnan(got["gold_accuracy"])
    assert got["cle_score_accuracy"] == 0.5
    assert trial_status(got["log_fev1pp_r2"], "log_fev1pp_r2").startswith("failed: ")
    assert trial_status(None, "log_fev1pp_r2").startswith("failed: ")
    assert trial_status(got["cle_score_accuracy"], "cle_score_accuracy") == "ok"


def test_trial_encoder_is_built_as_it_was_trained(tiny_store: dict[str, Path],
                                                  tmp_path: Path) -> None:
    """A trial's intermediate evaluation rebuilds the encoder with the run's conditioning,
    experts and input map, so it computes exactly what the exported encoder computes."""
    import torch

    from drasclr.train.checkpoint import latest_checkpoint
    from drasclr.train.config import PretrainConfig
    from drasclr.train.export import load_encoder
    from drasclr.train.run import SINGLE_CHECKPOINTS, train_single_process
    from drasclr.tune import encoder_from_checkpoint

    cfg = PretrainConfig(steps=2, checkpoint_every=2, batch_size=4, queue_size=8, experts=2,
                         threads_per_worker=1, input_map="parenchyma")
    train_single_process(cfg, tiny_store["store"], tmp_path / "run")
    ckpt = latest_checkpoint(tmp_path / "run" / SINGLE_CHECKPOINTS)
    assert ckpt is not None
    trial = encoder_from_checkpoint(ckpt, cfg)
    exported, _ = load_encoder(tmp_path / "run")
    assert trial.input_map == exported.input_map == "parenchyma"
    x = torch.linspace(-1, 1, 2 * 32 ** 3).view(2, 1, 32, 32, 32)
    loc = torch.zeros(3)
    with torch.no_grad():
        assert torch.allclose(trial(x, loc), exported(x, loc))
