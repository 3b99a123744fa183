"""The location check (the paper's location perturbation, split into its two causes)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from drasclr.evaluate.location_check import (
    OWN,
    RANDOM,
    SWAPPED,
    derangement,
    evaluation_rows,
    kernel_move,
    location_check,
)
from drasclr.nn.encoder import DrasEncoder


def test_derangement_moves_every_item_and_is_seeded() -> None:
    for n in range(2, 30):
        p = derangement(n, seed=n)
        assert sorted(p.tolist()) == list(range(n))
        assert not (p == np.arange(n)).any()
    np.testing.assert_array_equal(derangement(12, 3), derangement(12, 3))
    assert not np.array_equal(derangement(12, 3), derangement(12, 4))
    with pytest.raises(ValueError, match="at least 2"):
        derangement(1, 0)


def test_kernel_move_reads_the_routing() -> None:
    """Static convolutions have no kernel to move (NaN); fresh Loc-CondConv kernels move with
    location; with zero routing weights every location gets the same kernel."""
    locs = np.random.default_rng(0).uniform(-1, 1, (20, 3))
    assert np.isnan(kernel_move(DrasEncoder("none"), locs))
    torch.manual_seed(0)
    enc = DrasEncoder("loccondconv")
    assert kernel_move(enc, locs) > 0.05
    for m in enc.modules():
        if hasattr(m, "routing"):
            torch.nn.init.zeros_(m.routing.weight)
    assert kernel_move(enc, locs) < 1e-5


@pytest.fixture(scope="module")
def truth(tiny_store: dict[str, Path]) -> pd.DataFrame:
    from drasclr.evaluate.patch_probe import read_patch_truth
    from drasclr.store.reader import PatchStore

    return read_patch_truth(tiny_store["cohort"], PatchStore(tiny_store["store"]))


def test_location_check_separates_conditioned_from_static_encoders(
    tiny_store: dict[str, Path], truth: pd.DataFrame
) -> None:
    """A static encoder gives the same features and scores at every location; a Loc-CondConv
    encoder's features move when encoded at another landmark's location."""
    from drasclr.store.reader import PatchStore

    store = PatchStore(tiny_store["store"])
    rows = evaluation_rows(truth, 6, seed=0)
    assert rows["landmark"].nunique() == 6
    assert (rows.groupby("landmark").size() >= 2).all()
    torch.manual_seed(0)
    static = location_check(DrasEncoder("none").eval(), store, truth, 6, seed=0, repeats=1)
    assert static.feature_change == 0.0
    assert np.isnan(static.kernel_move)
    for which in (SWAPPED, RANDOM):
        assert static.r2(which) == pytest.approx(static.r2(OWN), abs=1e-9)
        assert static.drop(to=which) == pytest.approx(0.0, abs=1e-9)
    torch.manual_seed(0)
    cond = location_check(DrasEncoder("loccondconv").eval(), store, truth, 6, seed=0, repeats=1)
    assert cond.feature_change > 0.01
    assert cond.kernel_move > 0.05
    assert cond.landmarks == static.landmarks
    assert set(cond.table["method"]) == {OWN, SWAPPED, RANDOM}


def test_bench_location_checks_every_export_of_a_run(
    tiny_store: dict[str, Path], truth: pd.DataFrame, tmp_path: Path,
    capsys: pytest.CaptureFixture[str]
) -> None:
    """``drasclr bench location RUN`` writes one row per export and prints them; a folder that
    is not a science run is refused with the missing file named."""
    from drasclr.cli import main
    from drasclr.store.reader import PatchStore
    from drasclr.train.config import PretrainConfig
    from drasclr.train.export import export_initial_encoder

    run = tmp_path / "run"
    run.mkdir()
    assert main(["bench", "location", str(run)]) == 2
    assert f"{run / 'store'}: missing" in capsys.readouterr().err
    (run / "store").symlink_to(tiny_store["store"], target_is_directory=True)
    assert main(["bench", "location", str(run)]) == 2
    err = capsys.readouterr().err
    assert "patch_truth.parquet: missing" in err
    truth.to_parquet(run / "patch_truth.parquet")
    store = PatchStore(tiny_store["store"])
    export_initial_encoder(PretrainConfig(seed=1), store, run / "models" / "drasclr_s1")
    export_initial_encoder(PretrainConfig(model="moco", conditioning="none", neighbours=0, seed=1),
                           store, run / "models" / "plain_moco_s1")
    assert main(["bench", "location", str(run), "--landmarks", "5", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "drasclr_s1" in out and "plain_moco_s1" in out
    res = json.loads((run / "location_check.json").read_text())
    rows = {r["model"]: r for r in res["rows"]}
    assert set(rows) == {"drasclr_s1", "plain_moco_s1"}
    assert rows["plain_moco_s1"]["conditioning"] == "none"
    assert rows["plain_moco_s1"]["feature_change"] == 0.0
    assert rows["plain_moco_s1"]["kernel_move"] is None
    assert rows["drasclr_s1"]["conditioning"] == "loccondconv"
    assert rows["drasclr_s1"]["feature_change"] > 0.01
    assert res["n_landmarks"] == 5
    assert main(["bench", "location", str(run), "--models", "nope"]) == 2
    assert "no export for ['nope']" in capsys.readouterr().err
