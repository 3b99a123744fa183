"""DrasCLR's recipes: one table, the same batches wherever a recipe is named."""

from __future__ import annotations

import pytest

from drasclr.config import ConfigError
from drasclr.train.recipes import ABLATION, DRASCLR, DRASCLR_RECIPES, recipe_overrides


def test_recipes_split_the_batch_and_leave_other_methods_alone() -> None:
    moco = {"model": "moco", "conditioning": "none", "neighbours": 0}
    assert recipe_overrides("paired", "plain MoCo", moco, 32) is moco
    assert recipe_overrides("paired", DRASCLR, None, 32) is None
    paired = recipe_overrides("paired", DRASCLR, {"model": "drasclr", "neighbours": 2}, 32)
    assert paired is not None
    assert (paired["batch_size"], paired["neighbours"], paired["neighbour_head"]) == (16, 1, True)
    assert paired["neighbour_local_weight"] == 1.0 and paired["model"] == "drasclr"
    ablation = recipe_overrides("paired", ABLATION, {"model": "drasclr", "neighbours": 0}, 32)
    assert ablation is not None
    # the ablation trains the same batches, only without the neighbour loss (and its head)
    same = {k: v for k, v in paired.items() if k not in ("neighbour_head",)}
    assert {**same, "neighbour_weight": 0.0} == ablation
    assert recipe_overrides("paper", DRASCLR, {"model": "drasclr"}, 32)["neighbours"] == 2
    assert recipe_overrides("paper", ABLATION, {"model": "drasclr"}, 32)["batch_size"] == 32
    assert set(DRASCLR_RECIPES) == {"paired", "paper"}
    with pytest.raises(ValueError, match="unknown DrasCLR recipe 'half'"):
        recipe_overrides("half", DRASCLR, {}, 32)
    with pytest.raises(ValueError, match="B // 2 >= 2"):
        recipe_overrides("paired", DRASCLR, {}, 3)


def test_the_pipeline_trains_drasclrs_model_and_its_ablation_in_the_configured_recipe() -> None:
    from drasclr.pipeline import METHODS, PipelineConfig, _pretrain_config, _train_overrides

    cfg = PipelineConfig(drasclr_recipe="paired", batch_size=32)
    built = {m: _pretrain_config(cfg, _train_overrides(cfg, m), m)
             for m, (over, _) in METHODS.items() if over is not None}
    for name in (DRASCLR, "DrasCLR (random locations)"):
        assert (built[name].batch_size, built[name].neighbours) == (16, 1)
        assert built[name].neighbour_head and built[name].neighbour_weight > 0
    assert (built[ABLATION].batch_size, built[ABLATION].neighbour_weight) == (16, 0.0)
    assert (built["plain MoCo"].batch_size, built["plain MoCo"].neighbours) == (32, 0)
    paper = PipelineConfig()
    assert paper.drasclr_recipe == "paper"
    assert _pretrain_config(paper, _train_overrides(paper, DRASCLR), DRASCLR).neighbours == 2
    with pytest.raises(ConfigError, match="drasclr_recipe"):
        PipelineConfig(drasclr_recipe="half")
    with pytest.raises(ConfigError, match="batch_size"):
        PipelineConfig(drasclr_recipe="paired", batch_size=3)
