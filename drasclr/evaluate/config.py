"""The evaluation stage's configuration: cross-validation, readouts, survival and detection."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from drasclr.config import StageConfig, check


@dataclass(frozen=True)
class EvaluateConfig(StageConfig):
    """Settings shared by every downstream readout (saved next to the evaluation outputs).

    Attributes:
        n_folds: cross-validation folds (the paper uses 5); fewer are used when a cohort is tiny.
        seed: seed of every fold split, bootstrap and subsample.
        readout_pca: principal components kept before a linear readout (fitted inside each
            training fold); None keeps all features (ridge / L2-logistic regularise instead).
        ridge_alphas: candidate ridge penalties; the one used in a fold is chosen by efficient
            leave-one-out inside that training fold (``RidgeCV``).
        logistic_c: inverse L2 strength of the (multinomial) logistic readouts.
        survival_pca: principal components of the image features entering the Cox model.
        cox_penalizer: lifelines ``CoxPHFitter`` L2 penalizer.
        survival_quantiles: follow-up percentiles at which the time-dependent C-index is read.
        n_bootstrap: bootstrap resamples for the C-index standard errors.
        prob_threshold: voxel probability above which a voxel counts as emphysema.
        box_min_fraction: a box is detected when at least this fraction of its voxels is emphysema.
        label_fractions: training-label fractions of the label-efficiency curve.
        batch_size: patches per encoder call (box features, dense predictions, fine-tuning
            inference).
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
        read_workers: threads reading and resampling subject scans.
        dense_subjects: subjects with dense predictions (chosen to span GOLD stages; 0 = none).
        dense_stride: dense grid stride (1 = exact, larger strides interpolate trilinearly).
        dense_methods: methods with dense predictions (empty: the primary method only).
        rule_fractions: candidate box fractions for the *departure* from the 25 % rule, chosen by
            leave-one-subject-out among the dense subjects.
        rule_fallback_fraction: the departure's box fraction when it cannot be chosen (stated).
        finetune_epochs: epochs of full fine-tuning (encoder + linear head) on box patches;
            0 skips fine-tuning and the from-scratch supervised CNN.
        finetune_lr: Adam learning rate of fine-tuning.
        finetune_methods: methods fine-tuned (empty: the primary method only); the supervised
            CNN from scratch is always added when fine-tuning runs.
        probe_repeats: repeats of the subject-grouped 5-fold CV of the patch probe.
        readout_repeats: repeats of the 5-fold CV of the powered image readouts.
    """

    stage: ClassVar[str] = "evaluate"

    probe_repeats: int = 2
    readout_repeats: int = 5

    n_folds: int = 5
    seed: int = 0
    readout_pca: int | None = None
    ridge_alphas: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4)
    logistic_c: float = 1.0
    survival_pca: int = 8
    cox_penalizer: float = 0.1
    survival_quantiles: tuple[float, ...] = (25.0, 50.0, 75.0)
    n_bootstrap: int = 200
    prob_threshold: float = 0.5
    box_min_fraction: float = 0.25
    label_fractions: tuple[float, ...] = (0.1, 0.2, 0.4, 0.6, 0.8, 1.0)
    batch_size: int = 64
    device: str = "auto"
    read_workers: int = 2
    dense_subjects: int = 4
    dense_stride: int = 8
    dense_methods: tuple[str, ...] = ()
    rule_fractions: tuple[float, ...] = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25)
    rule_fallback_fraction: float = 0.05
    finetune_epochs: int = 0
    finetune_lr: float = 1e-3
    finetune_methods: tuple[str, ...] = ()

    def validate(self) -> None:
        """Check ranges."""
        s = self.stage
        check(self.n_folds >= 2, s, "n_folds", f"need at least 2 folds, got {self.n_folds}")
        check(
            self.readout_pca is None or self.readout_pca >= 1,
            s,
            "readout_pca",
            "must be >= 1 or null",
        )
        check(
            len(self.ridge_alphas) > 0 and min(self.ridge_alphas) > 0,
            s,
            "ridge_alphas",
            "need positive values",
        )
        check(self.logistic_c > 0, s, "logistic_c", "must be > 0")
        check(self.survival_pca >= 1, s, "survival_pca", "must be >= 1")
        check(self.cox_penalizer >= 0, s, "cox_penalizer", "must be >= 0")
        check(
            all(0 < q < 100 for q in self.survival_quantiles),
            s,
            "survival_quantiles",
            "must lie in (0, 100)",
        )
        check(self.n_bootstrap >= 0, s, "n_bootstrap", "must be >= 0")
        check(0 < self.prob_threshold < 1, s, "prob_threshold", "must lie in (0, 1)")
        check(0 < self.box_min_fraction <= 1, s, "box_min_fraction", "must lie in (0, 1]")
        check(
            len(self.label_fractions) > 0 and all(0 < f <= 1 for f in self.label_fractions),
            s,
            "label_fractions",
            "must lie in (0, 1]",
        )
        check(self.batch_size >= 1, s, "batch_size", "must be >= 1")
        check(
            self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
            s,
            "device",
            f"must be auto, cpu, cuda or cuda:N, got {self.device!r}",
        )
        check(self.read_workers >= 1, s, "read_workers", "must be >= 1")
        check(self.dense_subjects >= 0, s, "dense_subjects", "must be >= 0")
        check(self.dense_stride >= 1, s, "dense_stride", "must be >= 1")
        check(
            len(self.rule_fractions) > 0 and all(0 < f <= 1 for f in self.rule_fractions),
            s,
            "rule_fractions",
            "must lie in (0, 1]",
        )
        check(0 < self.rule_fallback_fraction <= 1, s, "rule_fallback_fraction", "in (0, 1]")
        check(self.finetune_epochs >= 0, s, "finetune_epochs", "must be >= 0")
        check(self.finetune_lr > 0, s, "finetune_lr", "must be > 0")
