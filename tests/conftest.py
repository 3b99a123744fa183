"""Shared fixtures: one embedded Ray instance per test session, reference-data paths."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """``../shared/reference`` beside the checkout; tests using it skip when it is absent."""
    if not REFERENCE.exists():
        pytest.skip(f"reference data not found at {REFERENCE}")
    return REFERENCE


@pytest.fixture(scope="session")
def ray_local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """An embedded Ray (2 CPUs, no dashboard) shared by the session; stopped only if we started it."""
    import ray

    started = False
    if not ray.is_initialized():
        ray.init(
            address="local",
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            _temp_dir=str(tmp_path_factory.mktemp("ray")),
        )
        started = True
    yield
    if started:
        ray.shutdown()


@pytest.fixture(scope="session")
def tiny_store(ray_local: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny synthetic cohort (8 subjects), its atlas and its patch store, built once.

    Returns paths ``cohort``, ``atlas``, ``store`` and ``labels``.
    """
    from drasclr.imaging.atlas import save_atlas
    from drasclr.labels import read_labels
    from drasclr.pipeline import pick_atlas_subject
    from drasclr.preprocess.config import PreprocessConfig
    from drasclr.preprocess.run import run_preprocess
    from drasclr.preprocess.subject import atlas_from_ct
    from drasclr.synth.cohort import generate_cohort
    from drasclr.synth.config import preset_config

    root = tmp_path_factory.mktemp("tiny_run")
    cohort = root / "cohort"
    generate_cohort(preset_config("tiny", n_subjects=8), cohort, progress=False)
    labels = read_labels(cohort / "labels.parquet", cohort / "truth.parquet")
    cfg = PreprocessConfig(qc_figures=False)
    sid = pick_atlas_subject(labels)
    atlas = save_atlas(atlas_from_ct(cohort / "images" / f"{sid}.nii.gz", cfg), root / "atlas")
    store = root / "store"
    run_preprocess(cohort, atlas, store, cfg, progress=False)
    return {"cohort": cohort, "atlas": atlas, "store": store,
            "labels": cohort / "labels.parquet"}
