"""MoCo machinery of DrasCLR: memory bank, losses, momentum encoder, shuffle-BN, the model."""

from drasclr.moco.losses import (
    TEMPERATURE,
    bank_neighbour_logits,
    contrast_logits,
    contrast_top1,
    info_nce,
    local_contrastive_loss,
    neighbour_contrastive_loss,
    neighbour_weight_at,
)
from drasclr.moco.memory_bank import MemoryBank
from drasclr.moco.model import DrasCLR, PlainMoCo
from drasclr.moco.momentum import MOMENTUM, deactivate_requires_grad, update_momentum
from drasclr.moco.shuffle import batch_shuffle, batch_unshuffle, concat_all_gather

__all__ = [
    "MOMENTUM",
    "TEMPERATURE",
    "DrasCLR",
    "MemoryBank",
    "PlainMoCo",
    "bank_neighbour_logits",
    "batch_shuffle",
    "batch_unshuffle",
    "concat_all_gather",
    "contrast_logits",
    "contrast_top1",
    "deactivate_requires_grad",
    "info_nce",
    "local_contrastive_loss",
    "neighbour_contrastive_loss",
    "neighbour_weight_at",
    "update_momentum",
]
