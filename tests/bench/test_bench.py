"""Benchmarks stay functional and print what they measured: kernels, queue memory, registration.

The benchmarks return their figures; ``drasclr bench`` (:mod:`drasclr.commands.bench`) prints them.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def test_kernels_bench_measures_each_kernel(capsys: pytest.CaptureFixture[str]) -> None:
    from drasclr.bench import kernels
    from drasclr.commands.bench import print_kernels

    res = kernels.run_bench(None, repeats=1, resample_shape=(64, 64, 48))
    for key in ("landmark_grid_s", "cut_patches_s", "resample_s"):
        assert 0 < res[key] < 60, key
    assert res["landmarks"] > 0 and res["resample_shape_out"] == [34, 45, 45]
    print_kernels(res)
    out = capsys.readouterr().out
    assert "landmark grid" in out and "cut 575 patches" in out and "target <" in out


def test_training_step_bench_times_each_conditioning_in_both_precisions(
        capsys: pytest.CaptureFixture[str]) -> None:
    """Four variants timed in one run (bfloat16 on this CPU), printed with the speed-up."""
    from drasclr.commands.bench import print_train_step
    from drasclr.nn.speed import training_step_speed

    ts = training_step_speed(batch_size=2, neighbours=1, queue_size=16, steps=1, threads=1,
                             amp=(False, True))
    variants = {"loccondconv", "none", "loccondconv+amp", "none+amp"}
    assert set(ts["samples_per_s"]) == variants and set(ts["seconds"]) == variants
    assert all(v > 0 for v in ts["samples_per_s"].values())
    speedup = ts["amp_speedup"]
    for c in ("loccondconv", "none"):
        assert speedup[c] == pytest.approx(ts["seconds"][c] / ts["seconds"][f"{c}+amp"])
    print_train_step(ts)
    out = capsys.readouterr().out
    assert "loccondconv+amp" in out and "mixed precision speed-up" in out


def test_queue_memory_is_the_real_allocation_of_two_workers() -> None:
    """Each rank's process RSS grows by its bank's size: measured, not the formula restated."""
    from drasclr.bench.train import queue_memory

    L, K, D = 64, 2048, 128
    rows = queue_memory(L, K, D, (1, 2))
    assert [r["workers"] for r in rows] == [1, 2]
    assert [len(r["ranks"]) for r in rows] == [1, 2]
    for row in rows:
        for r in row["ranks"]:
            assert r["source"] == "process RSS"
            keys = r["landmarks"] * K * D * 4
            assert 0.8 * keys <= r["measured_bytes"] <= 1.2 * keys + 8 * 2**20, r
    two = rows[1]["ranks"]
    assert sum(r["landmarks"] for r in two) == L
    assert rows[1]["measured_bytes_max"] < 0.7 * rows[0]["measured_bytes_max"]


def test_registration_comparison_on_the_same_subjects(tiny_store: dict[str, Path]) -> None:
    """Ours and the published setting on one subject; a reduced run says how it was scaled.

    2 % of the published iterations (and 1 % for the extrapolation) exercises every path of the
    comparison with a fifth of the iterations of 10 %."""
    from drasclr.bench.preprocess import registration_comparison
    from drasclr.pipeline import pick_atlas_subject
    from drasclr.tables import read_frame

    cohort = tiny_store["cohort"]
    synth = read_frame(cohort / "manifest.parquet", "synth_manifest")
    atlas_subject = pick_atlas_subject(read_frame(tiny_store["labels"], "labels"))
    other = next(str(s) for s in synth["subject_id"] if str(s) != atlas_subject)
    res = registration_comparison(cohort, tiny_store["atlas"], [other], synth, atlas_subject,
                                  iteration_fraction=0.02)
    ours, pub = res["ours"], res["published"]
    assert res["subjects"] == [other]
    for r in (ours, pub):
        assert r["seconds_median"] > 0 and 0 <= r["dice_median"] <= 1
        assert r["landmark_error_mean_mm"] >= 0
    assert ours["resolution_mm"] == 4.0 and pub["resolution_mm"] is None
    assert pub["iterations"] == [10, 5, 2]
    assert pub["timing"].startswith("REDUCED") and "extrapolated" in pub["timing"]
    assert pub["measured_seconds_median"] > 0
    assert res["published_over_ours"] == pytest.approx(
        pub["seconds_median"] / ours["seconds_median"])
    with pytest.raises(ValueError, match="iteration_fraction"):
        registration_comparison(cohort, tiny_store["atlas"], [other], synth, atlas_subject, 0.0)
