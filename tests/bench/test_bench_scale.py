"""The scale model of ``drasclr bench scale`` (pure arithmetic on measured and stated inputs)."""

from __future__ import annotations

import argparse

import pytest

from drasclr.bench.scale import project


def test_projection_formulas() -> None:
    m = {"subject_core_s": 12.0, "efficiency": 0.9, "step_cpu_s": 20.0,
         "extract_patches_per_s": 100.0, "threads": 2}
    a = argparse.Namespace(subjects=10_000, landmarks=581, epochs=20, batch=128, cpu_nodes=32,
                           cpus_per_node=16, gpus=8, gpu_speedup=50.0, gpu_step_seconds=None)
    p = project(m, a)
    assert p["cores"] == 512
    assert p["preprocess_h"] == pytest.approx(10_000 * 12.0 / (512 * 0.9) / 3600)
    assert p["train_steps"] == 20 * 581 * 79  # ceil(10000 / 128) = 79 batches per landmark
    assert p["train_h"] == pytest.approx(p["train_steps"] * (20.0 / 50.0) / 8 / 3600)
    assert p["extract_h"] == pytest.approx(10_000 * 581 / (8 * 100.0 / 2 * 50.0) / 3600)
    # no measured published registration: no comparison (never the paper's quoted minutes)
    assert "published_registration_serial_h" not in p
    p = project({**m, "published_registration_s": 90.0}, a)
    assert p["published_registration_serial_h"] == pytest.approx(10_000 * 90.0 / 3600)
    assert p["published_registration_same_cores_h"] == pytest.approx(10_000 * 90.0 / 3600 / 512)
    # a measured GPU step time replaces the assumed speed-up; more GPUs train proportionally faster
    a.gpu_step_seconds = 0.25
    a.gpus = 16
    q = project(m, a)
    assert q["train_h"] == pytest.approx(q["train_steps"] * 0.25 / 16 / 3600)
