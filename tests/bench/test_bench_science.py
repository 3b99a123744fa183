"""``drasclr bench science``: aggregation of seeds x repeats, the table, and (slow) a tiny run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from drasclr.bench.science import (
    BASELINES,
    SCIENCE_METHODS,
    SCIENCE_METRICS,
    ScienceConfig,
    comparisons,
    comparisons_text,
    markdown_table,
    per_seed,
    run_science,
    summarise,
)
from drasclr.config import ConfigError


def test_summarise_pools_seeds_and_repeats() -> None:
    results = {
        "A": [{"patch_lesion_r2": [0.3, 0.5]}, {"patch_lesion_r2": [0.4], "extra": [1.0]}],
        "B": [{"gold_acc": [float("nan"), 0.6]}],
    }
    rows = {(r["method"], r["metric"]): r for r in summarise(results)}
    a = rows[("A", "patch_lesion_r2")]
    assert a["mean"] == pytest.approx(0.4) and a["n"] == 3
    assert a["sd"] == pytest.approx(np.std([0.3, 0.5, 0.4], ddof=1))
    assert rows[("B", "gold_acc")]["mean"] == 0.6 and rows[("B", "gold_acc")]["sd"] == 0.0
    assert math.isnan(rows[("B", "dense_dice")]["mean"])  # every required metric is present
    assert rows[("A", "extra")]["n"] == 1
    table = markdown_table(summarise(results))
    assert "| A | 0.400 ± 0.100 |" in table and "n/a" in table


def test_comparisons_read_the_bar_as_the_issue_states_it() -> None:
    """A margin counts only above the larger of the two spreads; image metrics are counted
    where both sides have a value."""
    image = ("log_fev1pp_r2", "log_fev1_fvc_r2", "gold_acc", "cle_acc", "exacerbation_acc")
    results = {
        "DrasCLR": [{"patch_lesion_r2": [0.80, 0.82], **{k: [0.5] for k in image}},
                    {"patch_lesion_r2": [0.84, 0.86], **{k: [0.5] for k in image}}],
        "plain MoCo": [{"patch_lesion_r2": [0.88], **{k: [0.4] for k in image[:3]},
                        "cle_acc": [0.6], "exacerbation_acc": [float("nan")]},
                       {"patch_lesion_r2": [0.70], **{k: [0.4] for k in image[:3]},
                        "cle_acc": [0.6], "exacerbation_acc": [float("nan")]}],
        "random encoder": [{"patch_lesion_r2": [0.10], **{k: [0.1] for k in image}},
                           {"patch_lesion_r2": [0.12], **{k: [0.1] for k in image}}],
    }
    rows = summarise(results)
    comps = {c["other"]: c for c in comparisons(rows, others=("random encoder", "plain MoCo"))}
    moco, rand = comps["plain MoCo"], comps["random encoder"]
    assert moco["patch_margin"] == pytest.approx(0.83 - 0.79)
    assert moco["larger_sd"] == pytest.approx(np.std([0.88, 0.70], ddof=1))
    assert not moco["patch_clears"]  # +0.04 is inside MoCo's spread of 0.127
    assert moco["image_above"] == list(image[:3]) and moco["image_below"] == ["cle_acc"]
    assert rand["patch_clears"] and len(rand["image_above"]) == 5 and not rand["image_below"]
    seeds = per_seed(results)
    assert seeds["DrasCLR"] == pytest.approx([0.81, 0.85])
    text = comparisons_text(comparisons(rows, others=("plain MoCo",)), seeds)
    assert "| DrasCLR | 0.810 / 0.850 |" in text
    assert "+0.040 against the larger spread 0.127 (does not clear it)" in text
    assert "above on 3 of 4 image metrics (not on cle_acc)" in text


def test_the_command_prints_the_comparisons(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from drasclr.commands.bench import print_science

    results = {"DrasCLR": [{"patch_lesion_r2": [0.8]}, {"patch_lesion_r2": [0.9]}],
               "plain MoCo": [{"patch_lesion_r2": [0.5]}, {"patch_lesion_r2": [0.6]}]}
    rows = summarise(results)
    res = {"rows": rows, "comparisons": comparisons(rows, others=("plain MoCo",)),
           "per_seed_patch_lesion_r2": per_seed(results), "minutes": 1.0,
           "figure": "science.png"}
    print_science(res, argparse.Namespace(out="X"))
    out = capsys.readouterr().out
    assert f"figure: {Path('X') / 'science.png'}" in out
    assert "| plain MoCo | 0.500 / 0.600 |" in out
    assert ("DrasCLR vs plain MoCo: patch probe +0.300 against the larger spread 0.071 "
            "(clears it)") in out


def test_the_figure_reads_the_runs_probe_curves_and_draws_every_method(tmp_path: Path) -> None:
    """``probe_curve`` keeps a run's probe records (the last of a resumed step); the figure is
    drawn from rows with gaps, a run without probes and an untrained encoder without a log."""
    import struct

    from drasclr.bench.science import IMAGE_METRICS, probe_curve
    from drasclr.report.figures import science_figure

    run = tmp_path / "models" / "drasclr_s0"
    run.mkdir(parents=True)
    recs = [{"event": "start", "step": 0}, {"event": "probe", "step": 0, "probe_r2": 0.05},
            {"event": "train", "step": 50, "loss": 5.0},
            {"event": "probe", "step": 50, "probe_r2": 0.30},
            {"event": "probe", "step": 50, "probe_r2": 0.35},  # resumed: the step again
            {"event": "probe", "step": 100, "probe_r2": 0.60}]
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    curve = probe_curve(run)
    assert curve["step"].tolist() == [0, 50, 100]
    assert curve["probe_r2"].tolist() == pytest.approx([0.05, 0.35, 0.60])
    assert probe_curve(tmp_path / "models" / "random_encoder_s0").empty
    results = {"DrasCLR": [{"patch_lesion_r2": [0.8], "gold_acc": [0.5]},
                           {"patch_lesion_r2": [0.7], "gold_acc": [0.4]}],
               "random encoder": [{"patch_lesion_r2": [0.1]}, {"patch_lesion_r2": [0.0]}],
               "LAA-950 (patch)": [{"patch_lesion_r2": [0.9]}],
               "LAA-950 (image)": [{"gold_acc": [0.6]}]}
    seeds = per_seed({m: results[m] for m in ("DrasCLR", "random encoder")})
    png = science_figure(summarise(results), seeds,
                         {"DrasCLR s0": curve, "DrasCLR s1": probe_curve(tmp_path / "none")},
                         tmp_path / "science.png", image_metrics=IMAGE_METRICS)
    head = png.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", head[16:24])
    assert width > 2 * height > 0  # three panels side by side


def test_config_is_validated() -> None:
    with pytest.raises(ConfigError, match="n_subjects"):
        ScienceConfig(n_subjects=5)
    with pytest.raises(ConfigError, match="bn_stats"):
        ScienceConfig(bn_stats="batch")
    with pytest.raises(ConfigError, match="input_map"):
        ScienceConfig(input_map="log")


def test_every_method_gets_the_input_map(tmp_path: Path) -> None:
    from drasclr.bench.science import method_config

    cfg = ScienceConfig(input_map="parenchyma")
    for name, over in SCIENCE_METHODS.items():
        pc = method_config(cfg, name, 0, tmp_path / "probe.npz")
        assert (pc is None) == (over is None)
        assert pc is None or pc.input_map == "parenchyma"


def test_every_trained_method_gets_the_benchmarks_translation(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The views' translation is one setting for every trained method (+-4 by default, the
    pretraining default since round 36's rule); the command passes a different one through."""
    from drasclr.bench import science
    from drasclr.bench.science import method_config
    from drasclr.cli import build_parser
    from drasclr.train.config import PretrainConfig

    def shifts(cfg: ScienceConfig) -> set[float]:
        pcs = [method_config(cfg, n, 0, tmp_path / "p.npz") for n in SCIENCE_METHODS]
        return {pc.translate_vox for pc in pcs if pc is not None}

    assert shifts(ScienceConfig()) == {4.0} and PretrainConfig().translate_vox == 4.0
    assert shifts(ScienceConfig(translate_vox=8)) == {8.0}
    with pytest.raises(ConfigError, match="translate_vox"):
        ScienceConfig(translate_vox=-1)
    seen = {}
    monkeypatch.setattr(science, "run_science", lambda out, cfg, **kw: seen.setdefault("cfg", cfg))
    science.run_from_args(build_parser().parse_args(
        ["bench", "science", "--out", str(tmp_path), "--translate-vox", "6"]))
    assert seen["cfg"].translate_vox == 6.0


def test_gpu_amp_and_threads_reach_every_trained_method(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--gpu --amp --threads`` (issue 10 item 7) set every trained method's device and
    precision; without a CUDA device a GPU run stops with a clear error before writing."""
    from drasclr.bench import science
    from drasclr.bench.science import method_config
    from drasclr.cli import build_parser
    from drasclr.train.run import PretrainError, train_single_process

    seen = {}
    monkeypatch.setattr(science, "run_science", lambda out, cfg, **kw: seen.setdefault("cfg", cfg))
    science.run_from_args(build_parser().parse_args(
        ["bench", "science", "--out", str(tmp_path), "--gpu", "--amp", "--threads", "16"]))
    cfg = seen["cfg"]
    assert (cfg.gpu, cfg.amp, cfg.threads) == (True, True, 16)
    pcs = [method_config(cfg, n, 0, tmp_path / "p.npz") for n in SCIENCE_METHODS]
    trained = [pc for pc in pcs if pc is not None]
    assert len(trained) == 3
    assert all(pc.use_gpu and pc.amp and pc.threads_per_worker == 16 for pc in trained)
    default = [method_config(ScienceConfig(), n, 0, tmp_path / "p.npz") for n in SCIENCE_METHODS]
    assert not any(pc.use_gpu or pc.amp for pc in default if pc is not None)
    if not torch.cuda.is_available():
        with pytest.raises(PretrainError, match="use_gpu is set but torch sees no CUDA"):
            train_single_process(trained[0], tmp_path / "no-store", tmp_path / "run")
        assert not (tmp_path / "run").exists()


def test_each_method_gets_its_own_momentum_temperature_and_nearest_key_weight(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DrasCLR and its ablation share a key-encoder momentum, a temperature, a soft-target
    weight and a view shuffle, plain MoCo has its own of each; the defaults are round 31's (DrasCLR 0.95, MoCo
    0.99); the command passes them through."""
    from drasclr.bench import science
    from drasclr.bench.science import method_config
    from drasclr.cli import build_parser

    def per_method(cfg: ScienceConfig) -> dict[str, tuple[float, float, float, int]]:
        pcs = {n: method_config(cfg, n, 0, tmp_path / "p.npz") for n in SCIENCE_METHODS}
        assert pcs.pop("random encoder") is None
        for pc in pcs.values():  # the config's shuffle is the augmentation's
            assert pc.augment_params.shuffle_block == pc.shuffle_block_vox
        return {n: (pc.momentum, pc.temperature, pc.nn_positive_weight, pc.shuffle_block_vox)
                for n, pc in pcs.items()}

    assert per_method(ScienceConfig()) == {
        "DrasCLR": (0.95, 0.2, 0.0, 0), "DrasCLR (no neighbour loss)": (0.95, 0.2, 0.0, 0),
        "plain MoCo": (0.99, 0.5, 0.0, 0)}
    modes = {n: method_config(ScienceConfig(), n, 0, tmp_path / "p.npz") for n in SCIENCE_METHODS}
    assert {n: pc.batch_mode for n, pc in modes.items() if pc is not None} == {
        "DrasCLR": "landmark", "DrasCLR (no neighbour loss)": "landmark", "plain MoCo": "mixed"}
    cfg = ScienceConfig(drasclr_momentum=0.9, moco_momentum=0.999, drasclr_temperature=0.5,
                        moco_temperature=0.3, drasclr_nn_positive_weight=0.5,
                        moco_nn_positive_weight=0.25, drasclr_shuffle_block_vox=4,
                        moco_shuffle_block_vox=8)
    assert per_method(cfg) == {
        "DrasCLR": (0.9, 0.5, 0.5, 4), "DrasCLR (no neighbour loss)": (0.9, 0.5, 0.5, 4),
        "plain MoCo": (0.999, 0.3, 0.25, 8)}
    with pytest.raises(ConfigError, match="moco_shuffle_block_vox"):
        ScienceConfig(moco_shuffle_block_vox=-1)
    with pytest.raises(ConfigError, match="moco_temperature"):
        ScienceConfig(moco_temperature=0.0)
    with pytest.raises(ConfigError, match="moco_nn_positive_weight"):
        ScienceConfig(moco_nn_positive_weight=1.0)
    with pytest.raises(ConfigError, match="drasclr_momentum"):
        ScienceConfig(drasclr_momentum=1.0)
    # the command passes them through (run_science itself is stubbed: only the config matters)
    seen = {}
    monkeypatch.setattr(science, "run_science", lambda out, cfg, **kw: seen.setdefault("cfg", cfg))
    args = build_parser().parse_args(["bench", "science", "--out", str(tmp_path),
                                      "--drasclr-temperature", "0.4", "--moco-momentum", "0.9",
                                      "--moco-nn-positive-weight", "0.3",
                                      "--drasclr-shuffle-block-vox", "8"])
    science.run_from_args(args)
    got = seen["cfg"]
    assert (got.drasclr_momentum, got.moco_momentum) == (ScienceConfig.drasclr_momentum, 0.9)
    assert (got.drasclr_temperature, got.moco_temperature) == (0.4, ScienceConfig.moco_temperature)
    assert (got.drasclr_nn_positive_weight, got.moco_nn_positive_weight) == (
        ScienceConfig.drasclr_nn_positive_weight, 0.3)
    assert (got.drasclr_shuffle_block_vox, got.moco_shuffle_block_vox) == (
        8, ScienceConfig.moco_shuffle_block_vox)


def test_drasclr_recipes_spend_a_step_as_stated(tmp_path: Path) -> None:
    """``paired`` encodes B query patches a step (B / 2 anchors + their neighbour, which is
    also a local query), as its ablation does (the same batches, neighbour loss off);
    ``paper`` encodes 3B, its ablation B."""
    from drasclr.bench.science import method_config

    probe = tmp_path / "probe.npz"
    ablation = method_config(ScienceConfig(), "DrasCLR (no neighbour loss)", 0, probe)
    paired = method_config(ScienceConfig(), "DrasCLR", 0, probe)
    paper = method_config(ScienceConfig(drasclr_recipe="paper"), "DrasCLR", 0, probe)
    assert ablation.batch_size * (1 + ablation.neighbours) == 32
    # the ablation is the recipe's batches without the neighbour loss
    same = {"batch_size", "neighbours", "neighbour_local_weight", "neighbour_min_mm"}
    assert {f: getattr(ablation, f) for f in same} == {f: getattr(paired, f) for f in same}
    assert ablation.neighbour_weight == 0.0
    paper_cut = method_config(ScienceConfig(drasclr_recipe="paper"),
                              "DrasCLR (no neighbour loss)", 0, probe)
    assert (paper_cut.batch_size, paper_cut.neighbours) == (32, 0)
    assert paired.batch_size * (1 + paired.neighbours) == 32
    assert paired.neighbours == 1
    assert (paired.neighbour_local_weight, paired.neighbour_weight) == (1.0, 1.0)
    assert paired.neighbour_head and not paper.neighbour_head  # round 21; the paper shares g
    # both recipes take the nearest landmark (DESIGN.md); round 24's far neighbours went back
    assert (paired.neighbour_min_mm, paper.neighbour_min_mm) == (0.0, 0.0)
    assert paper.batch_size * (1 + paper.neighbours) == 96
    assert (paper.neighbours, paper.neighbour_local_weight) == (2, 0.0)
    with pytest.raises(ConfigError, match="drasclr_recipe"):
        ScienceConfig(drasclr_recipe="half")
    with pytest.raises(ConfigError, match="paired recipe"):
        ScienceConfig(batch_size=3)


@pytest.mark.slow
def test_tiny_science_run_writes_every_method_and_metric(tmp_path: Path) -> None:
    cfg = ScienceConfig(preset="tiny", n_subjects=20, seeds=(0,), budget_minutes=0.1,
                        batch_size=6, threads=2, dense_subjects=1, dense_stride=16,
                        image_repeats=1, probe_repeats=1, probe_every=0)
    doc = run_science(tmp_path / "sci", cfg, progress=False)
    saved = json.loads((tmp_path / "sci" / "science.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(doc["rows"]))
    methods = {r["method"] for r in saved["rows"]}
    assert methods == set(SCIENCE_METHODS) | set(BASELINES)
    for m in methods:
        assert {r["metric"] for r in saved["rows"] if r["method"] == m} >= set(SCIENCE_METRICS)
    finite = {(r["method"], r["metric"]) for r in saved["rows"] if np.isfinite(r["mean"])}
    assert ("DrasCLR", "patch_lesion_r2") in finite
    assert ("LAA-950 (image)", "log_fev1pp_r2") in finite
    # every encoder beside LAA-950 (patch); LAA-950 beside itself is LAA-950 alone
    stat = {(r["method"], r["metric"]): r["mean"] for r in saved["rows"]}
    for m in [*SCIENCE_METHODS, "LAA-950 (patch)"]:
        assert (m, "patch_lesion_r2_with_laa950") in finite, m
    assert stat[("LAA-950 (patch)", "patch_lesion_r2_with_laa950")] == pytest.approx(
        stat[("LAA-950 (patch)", "patch_lesion_r2")], abs=0.01)
    assert not np.isfinite(stat[("LAA-950 (image)", "patch_lesion_r2_with_laa950")])
    assert "Against LAA-950 (patch)" in (tmp_path / "sci" / "science.md").read_text()
    # the random encoder ran first (its times set the budget); the table keeps the order
    assert saved["budget"]["budget_s"] == 6.0 and saved["budget"]["eval_s"] > 0
    assert list(dict.fromkeys(r["method"] for r in saved["rows"])) == [
        *SCIENCE_METHODS, *BASELINES]
    assert set(saved["per_seed_patch_lesion_r2"]) == set(SCIENCE_METHODS)
    assert [c["other"] for c in saved["comparisons"]] == [
        "random encoder", "plain MoCo", "DrasCLR (no neighbour loss)"]
    assert "DrasCLR vs plain MoCo: patch probe" in (tmp_path / "sci" / "science.md").read_text()
    assert saved["figure"] == "science.png" and (tmp_path / "sci" / "science.png").stat().st_size
    assert "![bench science](science.png)" in (tmp_path / "sci" / "science.md").read_text()
    with pytest.raises(ConfigError, match="other settings"):
        run_science(tmp_path / "sci", cfg.replace(budget_minutes=0.2), progress=False)


def test_fit_budget_lowers_every_run_alike_only_where_the_deadline_needs_it() -> None:
    from drasclr.bench.science import MIN_BUDGET_S, RUN_OVERHEAD_S, fit_budget_s

    # the run of record's machine: 386 s spent, 127 s to evaluate a method -> the full 5 min
    assert fit_budget_s(300, 3300, 386, 127, 3, 2) == 300
    # a machine twice as slow: the runs share what is left after evaluations and overheads
    slow = fit_budget_s(300, 3300, 807, 268, 3, 2)
    assert slow == pytest.approx((3300 - 807 - 3 * 268) / 6 - RUN_OVERHEAD_S)
    assert 807 + 3 * (2 * (slow + RUN_OVERHEAD_S) + 268) == pytest.approx(3300)
    assert fit_budget_s(300, 3300, 3000, 268, 3, 2) == MIN_BUDGET_S  # never below the floor
    assert fit_budget_s(300, 0, 3000, 268, 3, 2) == 300  # no deadline
    assert fit_budget_s(300, 3300, 3000, 268, 0, 2) == 300  # nothing to train


def test_plan_budget_times_the_random_encoder_and_decides_once(tmp_path: Path) -> None:
    from drasclr.bench.science import fit_budget_s, plan_budget

    cfg = ScienceConfig(deadline_minutes=55)
    seconds = {"synth + atlas + preprocess": 529.0, "extract random encoder s0": 80.0,
               "score random encoder s0": 92.0, "extract random encoder s1": 79.0,
               "score random encoder s1": 17.0}
    said: list[str] = []
    rec = plan_budget(tmp_path, cfg, seconds, said.append)
    assert rec["eval_s"] == 268.0 and rec["spent_s"] == 797.0
    assert rec["budget_s"] == round(fit_budget_s(300, 3300, 797, 268, 3, 2), 1) < 300
    assert any("budget per pretraining run: 4.2" in line for line in said)
    assert not any("warning" in line for line in said), "a fitted budget is not a warning"
    assert json.loads((tmp_path / "budget.json").read_text()) == rec
    # a resumed run keeps the budget it decided, whatever the clock says now
    assert plan_budget(tmp_path, cfg, {}, said.append) == rec
    late = plan_budget(tmp_path / "late", cfg, {**seconds, "synth + atlas + preprocess": 3000.0},
                       said.append)
    assert late["budget_s"] == 60.0 and "warning" in said[-1]


def test_subject_table_reads_the_manifest_and_segments_only_what_it_lacks(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Image LAA-950 comes from preprocessing's manifest column; a subject without it is re-read."""
    import pandas as pd

    import drasclr.store.reader as store_reader
    from drasclr.bench.science import subject_table
    from drasclr.evaluate import boxes

    class FakeStore:
        def __init__(self, path: object) -> None:
            self.manifest = pd.DataFrame({"subject_id": ["a", "b", "c"],
                                          "input_path": ["a.nii", "b.nii", "c.nii"],
                                          "laa950": [0.1, np.nan, 0.3]})
            self.subject_ids = ["a", "b", "c"]
            self.num_subjects = 3

    read: list[str] = []

    def fake_read_scan(path: str, sid: str, seg: object, **kwargs: object) -> tuple[None, float]:
        read.append(sid)
        return None, 0.2

    monkeypatch.setattr(store_reader, "PatchStore", FakeStore)
    monkeypatch.setattr(boxes, "read_scan", fake_read_scan)
    table = subject_table(tmp_path, tmp_path, progress=False)
    assert read == ["b"]
    assert table["subject_id"].tolist() == ["a", "b", "c"]
    assert table["laa950_image"].tolist() == pytest.approx([0.1, 0.2, 0.3])


def test_calibration_alternates_methods_and_times_steady_state_steps(tmp_path: Path) -> None:
    from drasclr.bench.science import calibrate
    from drasclr.train.config import PretrainConfig
    from drasclr.train.synthetic import make_synthetic_store

    store = make_synthetic_store(tmp_path / "store", 4, 12, 8, seed=3)
    base = PretrainConfig(batch_size=4, queue_size=8, lr=0.05, threads_per_worker=1)
    configs = {"with": base.replace(neighbours=2), "without": base.replace(neighbours=0)}
    said: list[str] = []
    table = calibrate(configs, store, tmp_path / "scratch", steps=8, passes=2, say=said.append)
    # pass by pass, every method once per pass (A, B, A, B): load changes reach both alike
    assert [line.split(": ")[1].split()[0] for line in said] == ["with", "without"] * 2
    assert [line.split("pass ")[1][:3] for line in said] == ["1/2", "1/2", "2/2", "2/2"]
    for row in table.values():
        assert len(row["passes"]) == 2 and all(t > 0 for t in row["passes"])
        assert row["seconds_per_step"] == pytest.approx(np.mean(row["passes"]), rel=1e-3)
        assert row["prefill_seconds"] == 0.0  # DrasCLR's per-landmark queues are not pre-filled
    assert not (tmp_path / "scratch").exists()


def test_calibration_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match="calibration_steps"):
        ScienceConfig(calibration_steps=4)
    with pytest.raises(ConfigError, match="calibration_passes"):
        ScienceConfig(calibration_passes=0)


def test_split_budget_fills_the_budget_with_both_kinds_of_step() -> None:
    from drasclr.bench.science import split_budget

    assert split_budget(180.0, 1.5, 0.5, 0.0) == (120, 0)
    steps, warm = split_budget(180.0, 1.5, 0.5, 0.5)
    assert (steps, warm) == (180 + 60, 180)
    assert warm * 0.5 + (steps - warm) * 1.5 == pytest.approx(180.0)
    assert split_budget(1.0, 1.5, 0.5, 0.5) == (10, 1)  # never fewer than 10 steps
    with pytest.raises(ConfigError, match="neighbour_warmup_share"):
        ScienceConfig(neighbour_warmup_share=1.0, budget_mode="calibrated")


def test_warmup_share_calibrates_the_local_only_steps(tmp_path: Path) -> None:
    from drasclr.bench.science import LOCAL_ONLY, budget_steps
    from drasclr.train.synthetic import make_synthetic_store

    store = make_synthetic_store(tmp_path / "store", 4, 12, 8, seed=3)
    cfg = ScienceConfig(batch_size=4, threads=1, probe_every=0, calibration_steps=8,
                        calibration_passes=1, neighbour_warmup_share=0.5, budget_minutes=0.5,
                        budget_mode="calibrated")
    said: list[str] = []
    steps, warm = budget_steps(tmp_path, cfg, "DrasCLR", 0, store, tmp_path / "p.npz",
                               said.append)
    table = json.loads((tmp_path / "calibration.json").read_text())
    assert set(table) == {"DrasCLR", "DrasCLR" + LOCAL_ONLY, "DrasCLR (no neighbour loss)",
                          "plain MoCo"}
    local = table["DrasCLR" + LOCAL_ONLY]["seconds_per_step"]
    full = table["DrasCLR"]["seconds_per_step"]
    assert warm == int(15.0 / local) > 0 and steps == max(10, warm + int(15.0 / full))
    assert table["plain MoCo"]["warmup_steps"] == 0
    # MoCo's queue pre-fill is timed and paid from its budget; DrasCLR has none to pay
    moco = table["plain MoCo"]
    assert moco["prefill_seconds"] > 0 and table["DrasCLR"]["prefill_seconds"] == 0
    assert moco["steps"] == max(10, int((30.0 - moco["prefill_seconds"])
                                        / moco["seconds_per_step"]))
    assert any("queue pre-fill" in line for line in said)
    assert budget_steps(tmp_path, cfg, "plain MoCo", 1, store, tmp_path / "p.npz") == (
        table["plain MoCo"]["steps"], 0)
    assert any("local-only" in line for line in said)


def test_time_budget_gives_every_method_the_same_seconds(tmp_path: Path) -> None:
    """``budget_mode`` ``time``: each run trains until its budget is spent (a pre-fill paid
    from it, probes not), no calibration; ``training`` records the steps and seconds."""
    from drasclr.bench.science import pretrain_method, training_record, training_table
    from drasclr.fsutil import slug
    from drasclr.train.synthetic import make_synthetic_store

    store = make_synthetic_store(tmp_path / "store", 4, 12, 8, seed=3)
    cfg = ScienceConfig(batch_size=4, threads=1, probe_every=0, budget_minutes=0.025)
    said: list[str] = []
    records = {}
    for name in ("DrasCLR", "plain MoCo"):
        pretrain_method(tmp_path, cfg, name, 0, store, tmp_path / "p.npz", said.append)
        records[name] = training_record(tmp_path / "models" / f"{slug(name)}_s0")
    assert not (tmp_path / "calibration.json").exists()
    for name, rec in records.items():
        assert 1.5 <= rec["seconds"] < 1.5 + 1.0 and rec["steps"] > 1, (name, rec)
    assert records["plain MoCo"]["prefill_seconds"] > 0 == records["DrasCLR"]["prefill_seconds"]
    assert [line.split(":")[0] for line in said] == ["[science] DrasCLR s0",
                                                     "[science] plain MoCo s0"]
    table = training_table({f"{k} s0": v for k, v in records.items()})
    assert f"| DrasCLR s0 | {records['DrasCLR']['steps']} |" in table
    with pytest.raises(ConfigError, match="budget_mode"):
        ScienceConfig(budget_mode="steps")
    with pytest.raises(ConfigError, match="calibrated"):
        ScienceConfig(neighbour_warmup_share=0.2)
