"""Configuration of the pretraining stage (saved as ``pretrain_config.yaml`` in the output folder)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

from drasclr.config import StageConfig, check
from drasclr.imaging.intensity import INPUT_MAPS
from drasclr.moco.model import NEIGHBOUR_REDUCTIONS, NEIGHBOUR_SOURCES
from drasclr.nn.encoder import CONDITIONINGS, DrasEncoder

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from drasclr.imaging.augment import AugmentParams
    from drasclr.store.reader import PatchStore
    from drasclr.train.loader import LandmarkBatchSampler, MixedBatchSampler

ModelKind = Literal["drasclr", "moco"]
OptimizerKind = Literal["sgd", "adamw"]
CONFIG_FILE = "pretrain_config.yaml"
#: How a step's batch is drawn (``PretrainConfig.batch_mode``).
BATCH_MODES: tuple[str, ...] = ("landmark", "mixed")


@dataclass(frozen=True)
class PretrainConfig(StageConfig):
    """Everything that defines a pretraining run (DESIGN.md §4, "Training defaults").

    Attributes:
        model: ``drasclr`` (per-landmark queues, neighbour loss) or ``moco`` (plain MoCo: one
            global queue, static convolutions, no neighbour loss).
        batch_mode: ``landmark`` (one landmark x B subjects a step, with the k neighbours'
            patches: DrasCLR's same-landmark contrast) or ``mixed`` (B random (landmark,
            subject) patches from the whole lung, :class:`drasclr.train.loader.MixedBatchSampler`:
            plain MoCo's batches, as random crops would give: its BatchNorm statistics and
            queue then mix locations; needs ``model: moco``).
        conditioning: encoder conditioning (``loccondconv``, ``none``, ``concat``, ``hypernet``);
            ``moco`` needs ``none``.
        experts: E, experts per Loc-CondConv layer.
        dim: D, embedding (key) dimension.
        queue_size: K, keys per landmark queue.
        temperature: tau of both losses.
        momentum: m of the key-encoder update (official 0.999; default 0.99 so that the key
            encoder follows the query encoder within the few hundred steps of a CPU run).
        neighbours: k, neighbour landmarks per batch (0 disables the neighbour loss).
        neighbour_weight: beta of ``L = L_loc + beta L_ngb``.
        neighbour_rows: how many of the batch's B subjects carry neighbour patches (0 = all, the
            paper). ``L_ngb`` is the mean over rows, so a random subset of rows estimates it
            without bias (the batch is shuffled) at a fraction of the cost: the neighbour
            patches are most of a DrasCLR step's work (2B of the 3B query-side patches).
        neighbour_local_weight: gamma of ``L = L_loc,j + gamma sum_j' L_loc,j' + beta L_ngb``
            (0 = the paper's loss). The neighbour patches ``x_ij'`` are encoded by the query
            encoder for the neighbour loss anyway; with gamma > 0 they are also queries of
            their own landmark's local contrast (a second augmented view is key-encoded, their
            keys are enqueued in the neighbours' queues). The query pass then serves both
            losses instead of spending two thirds of a step on the neighbour loss alone.
            Needs ``neighbour_rows`` 0 (every row carries neighbours). The local losses also
            train while beta is 0 (a warm-up, or ``neighbour_weight`` 0: the same batches
            without the neighbour loss, the paired recipe's ablation).
        neighbour_reduce: ``sum`` (the official implementation, DESIGN.md §4 step 7) or
            ``mean`` of the k neighbour embeddings in the neighbour loss; the sum's norm (up to
            k) sharpens the neighbour logits like a temperature of tau / k.
        neighbour_head: the neighbour loss projects the neighbour patches with a head of its
            own (``g_n``, same shape as ``g``) instead of sharing ``g`` with the local loss
            (the paper). The shared ``g`` must map a subject's neighbouring patches close
            together (the neighbour loss) while keeping each landmark's subjects apart (the
            local loss); with ``g_n`` the neighbour loss still trains the encoder but no longer
            bends the local contrast's space. Costs one 128-d MLP on the neighbour rows.
        neighbour_symmetric: the neighbour contrast runs both ways (needs
            ``neighbour_local_weight`` > 0, whose neighbour keys it reads): the neighbour patch
            ``x_ij'`` must pick the anchor's key at j (the paper), and the anchor ``x_ij`` must
            pick its subject's key at ``j'`` among ``j'``'s negatives; ``L_ngb`` is the mean of
            the two. The second direction reuses the step's embeddings and keys (one head pass
            on the anchors), so it doubles the neighbour contrast's samples at no encoder cost.
        nn_positive_weight: w of the local contrast's soft target (0 = the paper's one-hot
            target): ``1 - w`` on the query's own positive key and ``w`` on the usable
            negative key nearest to that key (cosine between keys), so a subject's patch is
            also drawn toward the most similar other subject's patch, at the same landmark for
            DrasCLR (in the global queue for plain MoCo). What separates two subjects' patches
            at one landmark is then less their individual layout and more what a group of
            similar patches shares, such as their density. Needs ``mask_queue`` or
            ``batch_negatives`` (real negatives).
        neighbour_min_mm: neighbours are the nearest landmarks at least this far from the
            anchor's (0: the store's table, the nearest). On the atlas grid (26 mm) a nearest
            neighbour's 32 mm patch shares a 6 mm slab, 19 % of its voxels, with the anchor's,
            so the neighbour contrast can match the shared structure instead of the subject's
            tissue; 32 (the patch size) leaves the diagonal neighbours (36.8 mm, 3.5 % shared).
        neighbour_source: where the neighbour contrast gets its neighbour embeddings.
            ``patches`` (the paper): the k neighbour patches of every row are augmented and
            encoded by the query encoder, three times a step's query-side work. ``bank``: the
            anchor query must pick its own subject's key at each neighbour landmark ``j'``
            among the other subjects' keys there, read from ``j'``'s queue (keys of an earlier
            visit, with subject ids), so the step costs what a step without neighbours costs;
            the per-landmark queues are pre-filled (``prefill_queue``) so that the contrast
            has positives from step 1.
        warmup_epochs: epochs trained with the local loss only (beta = 0).
        warmup_steps: optimizer steps trained with the local loss only (beta = 0), for runs
            shorter than an epoch (either warm-up rule switches the neighbour loss off; the
            neighbour patches are then neither augmented nor encoded).
        batch_size: B, subjects per batch (per worker); batches are dropped when incomplete.
        optimizer: ``sgd`` (the paper: SGD with ``sgd_momentum`` and L2 ``weight_decay``) or
            ``adamw`` (Adam with decoupled ``weight_decay``; default betas).
        lr: base learning rate (paper: 0.01 for B = 128, SGD).
        lr_warmup_steps: linear learning-rate warm-up steps before the cosine decay.
        sgd_momentum: SGD momentum.
        weight_decay: SGD weight decay.
        epochs: passes over every worker's landmark batches (used when ``steps`` is 0).
        steps: total optimizer steps; 0 derives it from ``epochs``.
        time_budget_s: wall-clock seconds of the whole run (0: none). With a budget the run
            stops after the first step that ends once this much time has passed since it began
            (a queue pre-fill included, training-time probes not; a resumed run carries the time
            already spent), the cosine learning rate follows the elapsed share of the budget
            instead of the step count, and ``steps`` / ``epochs`` only cap the run. Runs
            compared at equal wall-clock (``drasclr bench science``) get equal time this way.
        checkpoint_every: save a checkpoint every this many steps (and at the end).
        keep_checkpoints: checkpoints kept by Ray Train.
        log_every: write a metrics line every this many steps.
        seed: seed of weights, queues, landmark order and augmentation.
        workers: Ray Train workers N (landmarks are sharded across them).
        cpus_per_worker: CPUs reserved per worker (fractions allowed, e.g. 0.5 in tests).
        threads_per_worker: torch intra-op threads per worker (0 = leave torch's default).
        use_gpu: one GPU per worker, NCCL; otherwise gloo on CPU.
        deterministic: ``torch.use_deterministic_algorithms(True)`` (bit-reproducible resume).
        amp: mixed precision for the training step's forward passes and losses (float16 with
            loss scaling on CUDA, bfloat16 on CPU; weights, optimizer and queues stay float32).
            Feature extraction and the training-time probe always run in float32.
        augment: apply the official augmentation (off only for tests/benchmarks).
        prefetch: batches the background loader thread reads ahead.
        max_failures: worker-group restarts Ray Train attempts after a failure.
        run_name: Ray Train run name (the folder under the output's ``ray/`` storage path).
        batch_negatives: the batch's other subjects (same landmark) are negatives too, so every
            step has real negatives (plain MoCo: off, its negatives are the global queue).
        mask_queue: never use empty queue slots or keys of the query's own subject as negatives.
        queue_cap_by_cohort: cap K per landmark queue at ``max(B, N - B)`` for a cohort of N
            subjects (a per-landmark queue then holds at most about one epoch of other subjects).
        queue_negatives: DrasCLR's per-landmark queues supply negatives (off: only the
            batch's other subjects at the landmark, ``batch_negatives``). A landmark's queued
            keys were written at its earlier visits, about ``L`` steps apart for ``L``
            landmarks, by a key encoder that has moved since.
        prefill_queue: fill the queue(s) with real keys of one key-encoder pass before step 1
            (plain MoCo's global queue, and DrasCLR's per-landmark queues when the neighbour
            contrast reads them, ``neighbour_source: bank``; otherwise per-landmark queues rely
            on in-batch negatives).
        bn_groups: split / ghost BatchNorm groups (1 = one batch statistic; shuffle-BN across
            ranks still applies when distributed).
        contrast_prob: probability of the gamma-contrast augmentation (official 0.25; default 0:
            emphysema is coded by intensity, and a random gamma remap of a view teaches the
            encoder to ignore exactly that, see docs/results.md).
        noise_std_hu: Gaussian noise sigma of the augmentation in HU (official 50).
        noise_prob: probability of the noise per view (official 0.25).
        noise_sample_std: draw each view's noise sigma from U(0, noise_std_hu), so the noise
            level of a view says nothing about its scan (official: fixed sigma).
        shift_hu: whole-view intensity offset U(-s, s) HU (not official; default 0).
        density_scale: per-view lung density scaling about air, factor 1 + U(-s, s) (not
            official; default 0; :func:`drasclr.imaging.augment.random_density_scale`).
        flip_prob: per-view mirroring probability along each axis (not official; default 0).
        shuffle_block_vox: cube edge of the per-view cube shuffle, voxels (not official; default
            0: off; :func:`drasclr.imaging.augment.random_block_shuffle`); must divide P.
        translate_vox: translation range of the affine, voxels (official 12; default 4: with
            +-12 on 32^3 patches the two views of a patch can be 24 voxels apart, the contrastive
            task was barely learned and the projection drifted toward collapse; +-4 learned it
            better on 4 of 4 seeds, docs/results.md round 3).
        input_map: the encoder's fixed input map (``linear``: the paper's window scaling;
            default ``parenchyma``: HU below -600 get 80 % of the input range,
            :func:`drasclr.imaging.intensity.map_input`; it lifted the training-time patch probe
            on 4 of 4 seeds, docs/results.md round 7).
        probe_every: run the patch probe every this many steps (0 = never); needs ``probe_file``.
        probe_file: ``.npz`` of probe patches (``store_index``, ``landmark``, ``target``) written
            by :func:`drasclr.evaluate.patch_probe.write_probe_file`.
        collapse_cosine: warn in the metrics when the mean between-subject cosine of the
            query embeddings in a logging window exceeds this.
    """

    stage: ClassVar[str] = "pretrain"

    model: ModelKind = "drasclr"
    batch_mode: str = "landmark"
    conditioning: str = "loccondconv"
    experts: int = 8
    dim: int = 128
    queue_size: int = 4096
    temperature: float = 0.2
    momentum: float = 0.99
    neighbours: int = 2
    neighbour_weight: float = 1.0
    neighbour_rows: int = 0
    neighbour_local_weight: float = 0.0
    neighbour_source: str = "patches"
    neighbour_reduce: str = "sum"
    neighbour_head: bool = False
    neighbour_symmetric: bool = False
    nn_positive_weight: float = 0.0
    neighbour_min_mm: float = 0.0
    warmup_epochs: int = 0
    warmup_steps: int = 0
    batch_size: int = 128
    optimizer: OptimizerKind = "sgd"
    lr: float = 0.01
    lr_warmup_steps: int = 0
    sgd_momentum: float = 0.9
    weight_decay: float = 1e-4
    epochs: int = 20
    steps: int = 0
    time_budget_s: float = 0.0
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 10
    seed: int = 0
    workers: int = 1
    cpus_per_worker: float = 1.0
    threads_per_worker: int = 0
    use_gpu: bool = False
    deterministic: bool = False
    amp: bool = False
    augment: bool = True
    prefetch: int = 4
    max_failures: int = 3
    run_name: str = "pretrain"
    batch_negatives: bool = True
    mask_queue: bool = True
    queue_cap_by_cohort: bool = True
    queue_negatives: bool = True
    prefill_queue: bool = True
    bn_groups: int = 1
    contrast_prob: float = 0.0
    noise_std_hu: float = 50.0
    noise_prob: float = 0.25
    noise_sample_std: bool = False
    shift_hu: float = 0.0
    density_scale: float = 0.0
    flip_prob: float = 0.0
    shuffle_block_vox: int = 0
    translate_vox: float = 4.0
    input_map: str = "parenchyma"
    probe_every: int = 0
    probe_file: str = ""
    collapse_cosine: float = 0.95

    def validate(self) -> None:
        """Check ranges and cross-field rules; errors name the field."""
        s = self.stage
        check(
            self.conditioning in CONDITIONINGS, s, "conditioning",
            f"must be one of {list(CONDITIONINGS)}, got {self.conditioning!r}",
        )
        check(
            self.model != "moco" or self.conditioning == "none", s, "conditioning",
            "plain MoCo ('model: moco') uses static convolutions: set conditioning to 'none'",
        )
        check(self.batch_mode in BATCH_MODES, s, "batch_mode",
              f"must be one of {list(BATCH_MODES)}, got {self.batch_mode!r}")
        check(self.batch_mode == "landmark" or (self.model == "moco" and self.neighbours == 0),
              s, "batch_mode", "'mixed' batches are plain MoCo's: they need model 'moco' and "
              "neighbours 0 (DrasCLR's contrast and neighbour loss need one landmark a batch)")
        check(self.experts >= 1, s, "experts", f"must be >= 1, got {self.experts}")
        check(self.dim >= 1, s, "dim", f"must be >= 1, got {self.dim}")
        check(self.queue_size >= 1, s, "queue_size", f"must be >= 1, got {self.queue_size}")
        check(self.temperature > 0, s, "temperature", f"must be > 0, got {self.temperature}")
        check(0 <= self.momentum < 1, s, "momentum", f"must be in [0, 1), got {self.momentum}")
        check(0 <= self.neighbours <= 16, s, "neighbours", f"must be in [0, 16], got {self.neighbours}")
        check(self.neighbour_weight >= 0, s, "neighbour_weight", "must be >= 0")
        check(0 <= self.neighbour_rows <= self.batch_size, s, "neighbour_rows",
              f"must be in [0, batch_size = {self.batch_size}], got {self.neighbour_rows}")
        check(self.neighbour_local_weight >= 0, s, "neighbour_local_weight", "must be >= 0")
        check(self.neighbour_local_weight == 0 or self.neighbour_rows == 0, s,
              "neighbour_local_weight", "needs neighbour_rows = 0 (every row carries neighbours)")
        check(self.neighbour_reduce in NEIGHBOUR_REDUCTIONS, s, "neighbour_reduce",
              f"must be one of {list(NEIGHBOUR_REDUCTIONS)}, got {self.neighbour_reduce!r}")
        check(self.neighbour_source in NEIGHBOUR_SOURCES, s, "neighbour_source",
              f"must be one of {list(NEIGHBOUR_SOURCES)}, got {self.neighbour_source!r}")
        check(self.neighbour_source == "patches" or (
            self.neighbour_rows == 0 and self.neighbour_local_weight == 0), s, "neighbour_source",
              "'bank' reads no neighbour patches: neighbour_rows and neighbour_local_weight "
              "must be 0")
        check(not self.neighbour_head or (
            self.model == "drasclr" and self.neighbour_source == "patches"), s, "neighbour_head",
              "a neighbour head projects neighbour patches: needs model 'drasclr' and "
              "neighbour_source 'patches'")
        check(not self.neighbour_symmetric or (
            self.model == "drasclr" and self.neighbour_source == "patches"
            and self.neighbour_local_weight > 0), s, "neighbour_symmetric",
              "the reverse neighbour contrast reads the neighbour patches' keys: needs model "
              "'drasclr', neighbour_source 'patches' and neighbour_local_weight > 0")
        check(self.neighbour_min_mm >= 0, s, "neighbour_min_mm", "must be >= 0")
        check(0 <= self.nn_positive_weight < 1, s, "nn_positive_weight", "must be in [0, 1)")
        check(self.nn_positive_weight == 0 or self.mask_queue or (
            self.batch_negatives and self.model == "drasclr"), s, "nn_positive_weight",
              "needs real negatives: mask_queue, or batch_negatives with model 'drasclr'")
        check(self.queue_negatives or (self.batch_negatives and self.model == "drasclr"), s,
              "queue_negatives", "off needs the in-batch negatives of DrasCLR "
              "(model: drasclr, batch_negatives: true)")
        check(self.warmup_epochs >= 0, s, "warmup_epochs", "must be >= 0")
        check(self.warmup_steps >= 0, s, "warmup_steps", "must be >= 0")
        check(self.batch_size >= 2, s, "batch_size", f"must be >= 2, got {self.batch_size}")
        check(self.optimizer in ("sgd", "adamw"), s, "optimizer",
              f"must be 'sgd' or 'adamw', got {self.optimizer!r}")
        check(math.isfinite(self.lr) and self.lr > 0, s, "lr", f"must be > 0, got {self.lr}")
        check(self.lr_warmup_steps >= 0, s, "lr_warmup_steps", "must be >= 0")
        check(0 <= self.sgd_momentum < 1, s, "sgd_momentum", "must be in [0, 1)")
        check(self.weight_decay >= 0, s, "weight_decay", "must be >= 0")
        check(self.epochs >= 1 or self.steps >= 1, s, "epochs", "set epochs >= 1 or steps >= 1")
        check(self.steps >= 0, s, "steps", "must be >= 0 (0 = derive from epochs)")
        check(self.time_budget_s >= 0, s, "time_budget_s", "must be >= 0 (0 = no time budget)")
        check(self.checkpoint_every >= 1, s, "checkpoint_every", "must be >= 1")
        check(self.keep_checkpoints >= 1, s, "keep_checkpoints", "must be >= 1")
        check(self.log_every >= 1, s, "log_every", "must be >= 1")
        check(self.workers >= 1, s, "workers", f"must be >= 1, got {self.workers}")
        check(self.cpus_per_worker > 0, s, "cpus_per_worker", "must be > 0")
        check(self.threads_per_worker >= 0, s, "threads_per_worker", "must be >= 0")
        check(self.prefetch >= 1, s, "prefetch", "must be >= 1")
        check(self.max_failures >= 0, s, "max_failures", "must be >= 0")
        check(
            bool(self.run_name) and self.run_name.replace("-", "").replace("_", "").isalnum(),
            s, "run_name", f"must be letters, digits, '-' or '_', got {self.run_name!r}",
        )
        check(self.bn_groups >= 1, s, "bn_groups", f"must be >= 1, got {self.bn_groups}")
        check(0 <= self.contrast_prob <= 1, s, "contrast_prob", "must be in [0, 1]")
        check(self.noise_std_hu >= 0, s, "noise_std_hu", "must be >= 0")
        check(0 <= self.noise_prob <= 1, s, "noise_prob", "must be in [0, 1]")
        check(self.shift_hu >= 0, s, "shift_hu", "must be >= 0")
        check(0 <= self.density_scale < 0.5, s, "density_scale", "must be in [0, 0.5)")
        check(0 <= self.flip_prob <= 1, s, "flip_prob", "must be in [0, 1]")
        check(self.shuffle_block_vox >= 0, s, "shuffle_block_vox", "must be >= 0 (0: off)")
        check(self.translate_vox >= 0, s, "translate_vox", "must be >= 0")
        check(self.input_map in INPUT_MAPS, s, "input_map",
              f"must be one of {list(INPUT_MAPS)}, got {self.input_map!r}")
        check(self.probe_every >= 0, s, "probe_every", "must be >= 0")
        check(self.probe_every == 0 or bool(self.probe_file), s, "probe_file",
              "probe_every > 0 needs a probe_file")
        check(0 < self.collapse_cosine <= 1, s, "collapse_cosine", "must be in (0, 1]")

    def effective_queue_size(self, num_subjects: int) -> int:
        """K actually used for a cohort of ``num_subjects`` (the cap rule, see ``queue_cap_by_cohort``)."""
        if not self.queue_cap_by_cohort or self.model == "moco":
            return self.queue_size
        return max(1, min(self.queue_size, max(self.batch_size, num_subjects - self.batch_size)))

    @property
    def augment_params(self) -> "AugmentParams":
        """The augmentation of this run (official ranges, configurable intensity parts)."""
        from drasclr.imaging.augment import NO_AUGMENTATION, AugmentParams

        if not self.augment:
            return NO_AUGMENTATION
        return AugmentParams(contrast_prob=self.contrast_prob, noise_std_hu=self.noise_std_hu,
                             noise_prob=self.noise_prob, noise_sample_std=self.noise_sample_std,
                             shift_hu=self.shift_hu, translate_vox=self.translate_vox,
                             density_scale=self.density_scale, flip_prob=self.flip_prob,
                             shuffle_block=self.shuffle_block_vox)

    @property
    def uses_neighbours(self) -> bool:
        """True when the run has a neighbour contrast (DrasCLR with k >= 1)."""
        return self.model == "drasclr" and self.neighbours > 0

    @property
    def neighbour_patches(self) -> int:
        """k when batches carry neighbour patches (``neighbour_source: patches``), else 0."""
        return self.neighbours if self.uses_neighbours and self.neighbour_source == "patches" else 0

    def neighbour_landmarks(self, store: PatchStore) -> npt.NDArray[np.int64]:
        """The (L, k_max) neighbour table this run trains with: the store's, or the nearest
        landmarks at least ``neighbour_min_mm`` away."""
        if self.neighbour_min_mm <= 0:
            return store.neighbours
        from drasclr.imaging.atlas import neighbour_table

        return neighbour_table(store.landmarks, max(1, self.neighbours), self.neighbour_min_mm)

    def batch_sampler(
        self, store: PatchStore, rank: int = 0, world_size: int = 1
    ) -> LandmarkBatchSampler | MixedBatchSampler:
        """The batch sequence of worker ``rank`` of ``world_size`` (:attr:`batch_mode`).

        Raises:
            LoaderError: the store cannot feed the batch size, workers or neighbours.
        """
        from drasclr.train.loader import LandmarkBatchSampler, MixedBatchSampler

        if self.batch_mode == "mixed":
            return MixedBatchSampler(store.valid, self.batch_size, rank, world_size, self.seed)
        return LandmarkBatchSampler(store.valid, self.neighbour_landmarks(store), self.batch_size,
                                    self.neighbour_patches, rank, world_size, self.seed)

    @property
    def neighbour_bank(self) -> bool:
        """True when the neighbour contrast reads the neighbours' queues (``bank``)."""
        return self.uses_neighbours and self.neighbour_source == "bank"

    @property
    def prefills_queues(self) -> bool:
        """Whether a fresh run pre-fills its queues (see ``prefill_queue``)."""
        return self.prefill_queue and (self.model == "moco" or self.neighbour_bank)


def new_encoder(config: PretrainConfig) -> DrasEncoder:
    """A fresh encoder with ``config``'s architecture: conditioning, experts and input map.

    Every place that builds the encoder a run trains (the model, the untrained baseline's
    export, a sweep trial's evaluation) builds it here, so none can miss a setting.
    """
    return DrasEncoder(config.conditioning, experts=config.experts, input_map=config.input_map)
