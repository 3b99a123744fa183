"""The feature-extraction stage config (:class:`FeaturesConfig`), saved next to its outputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from drasclr.config import StageConfig, check

Order = Literal["landmark", "subject"]

#: Fields that change the extracted numbers; the others only change how the work is executed
#: (batching, devices, actors) and are left out of :meth:`FeaturesConfig.result_key`.
RESULT_FIELDS: tuple[str, ...] = ("random_locations", "seed")


@dataclass(frozen=True)
class FeaturesConfig(StageConfig):
    """How patch and image features are extracted from a patch store.

    Attributes:
        batch_size: patches per encoder call (and subjects per landmark-major work unit).
        order: ``"landmark"`` (landmark-major: every batch is many subjects at one landmark, so
            one shared Loc-CondConv kernel serves the batch) or ``"subject"`` (subject-major: a
            batch is many landmarks of one subject, mixed locations). Both give the same numbers
            up to float round-off; landmark-major is the fast one.
        random_locations: perturbation ablation (paper Table 7): condition every patch on a
            random location in the lung (a landmark of the grid drawn at random, a new draw for
            every patch) instead of its own landmark's.
        seed: seed of the random locations (used only with ``random_locations``).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        num_actors: Ray Data actor-pool size (each actor holds one copy of the encoder).
        cpus_per_actor: CPUs reserved per actor (torch intra-op threads follow it).
        gpus_per_actor: GPUs reserved per actor (0 on CPU-only clusters).
        units_per_call: work units handed to an actor per call (Ray Data ``batch_size``).
        bn_stats: BatchNorm statistics of the encoder at extraction: ``"running"`` (the
            training run's running averages, the usual inference mode) or ``"landmark"``
            (recomputed per landmark over the extracted subjects' patches at that landmark:
            every landmark's features are normalised with that landmark's own statistics, which
            removes the between-landmark shift that running averages over all landmarks leave;
            a subject's features then depend on the cohort it is extracted with). ``landmark``
            needs ``order: landmark``; a landmark is one work unit.
    """

    stage: ClassVar[str] = "features"

    batch_size: int = 64
    order: Order = "landmark"
    random_locations: bool = False
    seed: int = 0
    device: str = "auto"
    num_actors: int = 1
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0
    units_per_call: int = 1
    bn_stats: Literal["running", "landmark"] = "running"

    def validate(self) -> None:
        """Check ranges; raise ConfigError naming the field."""
        s = self.stage
        check(self.batch_size >= 1, s, "batch_size", f"must be >= 1, got {self.batch_size}")
        check(self.seed >= 0, s, "seed", f"must be >= 0, got {self.seed}")
        check(
            self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
            s,
            "device",
            f"must be auto, cpu, cuda or cuda:N, got {self.device!r}",
        )
        check(self.num_actors >= 1, s, "num_actors", f"must be >= 1, got {self.num_actors}")
        check(
            self.cpus_per_actor > 0, s, "cpus_per_actor", f"must be > 0, got {self.cpus_per_actor}"
        )
        check(
            self.gpus_per_actor >= 0,
            s,
            "gpus_per_actor",
            f"must be >= 0, got {self.gpus_per_actor}",
        )
        check(self.bn_stats in ("running", "landmark"), s, "bn_stats",
              f"must be 'running' or 'landmark', got {self.bn_stats!r}")
        check(self.bn_stats == "running" or self.order == "landmark", s, "bn_stats",
              "per-landmark BatchNorm statistics need order: landmark")
        check(
            self.units_per_call >= 1,
            s,
            "units_per_call",
            f"must be >= 1, got {self.units_per_call}",
        )

    def result_key(self) -> dict[str, Any]:
        """The fields that determine the extracted numbers (the seed only when it is used)."""
        key: dict[str, Any] = {"random_locations": self.random_locations}
        if self.bn_stats != "running":
            key["bn_stats"] = self.bn_stats
        if self.random_locations:
            key["seed"] = self.seed
        return key
