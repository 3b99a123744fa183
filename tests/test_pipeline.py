"""The demo chain's own logic: atlas-subject choice, method sharing, resuming a run folder."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from drasclr.config import ConfigError
from drasclr.pipeline import (
    METHODS,
    PipelineConfig,
    _model_key,
    _pretrain_config,
    demo_config,
    pick_atlas_subject,
    reproduce_config,
    run_pipeline,
)


def test_pick_atlas_subject_prefers_gold0_with_least_emphysema() -> None:
    labels = pd.DataFrame({
        "subject_id": ["a", "b", "c", "d"],
        "gold": [2, 0, 0, -1],
        "true_emphysema_fraction": [0.0, 0.05, 0.01, 0.0],
    })
    assert pick_atlas_subject(labels) == "c"
    assert pick_atlas_subject(labels.assign(gold=[1, 1, 1, 1])) in ("a", "d")


def test_methods_share_encoders_only_when_pretraining_is_identical() -> None:
    assert _model_key("DrasCLR (random locations)") == _model_key("DrasCLR")
    keys = {_model_key(m) for m in METHODS}
    assert len(keys) == len(METHODS) - 1


def test_configs_and_refusing_another_run(tmp_path: Path) -> None:
    assert demo_config().preset == "demo" and reproduce_config().preset == "bench"
    assert reproduce_config().steps > demo_config().steps
    # the demo's key encoders move at 0.95 (rounds 32 and 34); DrasCLR trains the paired recipe
    demo = demo_config()
    momenta = {m: _pretrain_config(demo, over, m).momentum
               for m, (over, _) in METHODS.items() if over is not None}
    assert momenta == {"DrasCLR": 0.95, "DrasCLR (no neighbour loss)": 0.95, "plain MoCo": 0.95,
                       "DrasCLR (random locations)": 0.95}
    assert demo.drasclr_recipe == "paired" and PipelineConfig().drasclr_recipe == "paper"
    assert PipelineConfig().drasclr_momentum == 0.99
    assert _pretrain_config(PipelineConfig(), METHODS["plain MoCo"][0], "m").momentum == 0.99
    # plain MoCo draws mixed batches; every DrasCLR variant one landmark a batch (prereg28.md)
    modes = {m: _pretrain_config(demo, over, m).batch_mode
             for m, (over, _) in METHODS.items() if over is not None}
    assert modes == {"DrasCLR": "landmark", "DrasCLR (no neighbour loss)": "landmark",
                     "plain MoCo": "mixed", "DrasCLR (random locations)": "landmark"}
    with pytest.raises(ConfigError, match="moco_momentum"):
        PipelineConfig(moco_momentum=1.0)
    with pytest.raises(ConfigError, match="methods"):
        PipelineConfig(methods=("DrasCLR", "SimCLR"))
    PipelineConfig(preset="tiny", steps=5).save(tmp_path / "pipeline.yaml")
    with pytest.raises(ConfigError, match="other settings"):
        run_pipeline(tmp_path, PipelineConfig(preset="tiny", steps=6))
