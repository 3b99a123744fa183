"""Contrastive losses of DrasCLR (DESIGN.md §4.5-4.8) on L2-normalised embeddings."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

#: MoCo-v2 / DrasCLR temperature.
TEMPERATURE: float = 0.2


def contrast_logits(
    anchor: Tensor, positive: Tensor, negatives: Tensor, temperature: float
) -> Tensor:
    """InfoNCE logits ``[a·k+, a·k-_1, ..., a·k-_K] / tau``.

    Args:
        anchor: (B, D) anchors (``q``, or the neighbour sum ``sum_j' r_j'``).
        positive: (B, D) positive keys ``k+``.
        negatives: (K, D) negative keys (the landmark's queue).
        temperature: tau.

    Returns:
        (B, 1 + K) logits; column 0 is the positive.
    """
    pos = (anchor * positive).sum(dim=1, keepdim=True)
    neg = anchor @ negatives.t()
    return torch.cat([pos, neg], dim=1) / temperature


def contrast_logits_real(
    anchor: Tensor,
    positive: Tensor,
    batch_keys: Tensor | None,
    queue: Tensor,
    queue_valid: Tensor,
    temperature: float,
) -> Tensor:
    """InfoNCE logits with real negatives only: other subjects' in-batch keys and valid queue keys.

    Column 0 is the positive ``a_b·k+_b``; then ``B`` in-batch columns ``a_b·k_b'`` (the other
    subjects of the batch at the same landmark, the own column ``b' = b`` set to ``-inf``); then
    ``K`` queue columns, ``-inf`` where ``queue_valid`` is False (an empty slot, or a key of the
    anchor's own subject). ``-inf`` columns add nothing to the softmax denominator.

    Args:
        anchor: (A, D) anchors of the batch's first A <= B rows.
        positive: (A, D) positive keys.
        batch_keys: (B, D) the batch's keys used as negatives of the other rows, or None.
        queue: (K, D) queued keys.
        queue_valid: (A, K) bool, True where queue key n is a usable negative of row b.
        temperature: tau.

    Returns:
        (A, 1 + B + K) logits (without the in-batch block when ``batch_keys`` is None).
    """
    ninf = float("-inf")
    pos = (anchor * positive).sum(dim=1, keepdim=True) / temperature
    parts = [pos]
    if batch_keys is not None:  # anchor row b is batch row b (anchors may be the first rows)
        own = torch.eye(anchor.shape[0], batch_keys.shape[0], dtype=torch.bool,
                        device=anchor.device)
        parts.append((anchor @ batch_keys.t() / temperature).masked_fill(own, ninf))
    parts.append((anchor @ queue.t() / temperature).masked_fill(~queue_valid, ninf))
    return torch.cat(parts, dim=1)


def info_nce(logits: Tensor) -> Tensor:
    """Mean over the batch of ``-log softmax(logits)[:, 0]`` (the positive is column 0)."""
    target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits, target)


def local_contrastive_loss(
    q: Tensor, k_pos: Tensor, negatives: Tensor, temperature: float = TEMPERATURE
) -> tuple[Tensor, Tensor]:
    """Local loss ``L_loc = -log(exp(q·k+/t) / (exp(q·k+/t) + sum_n exp(q·k-_n/t)))``.

    Args:
        q: (B, D) normalised query embeddings.
        k_pos: (B, D) normalised positive keys.
        negatives: (K, D) the landmark's queue ``Q_j``.
        temperature: tau (0.2).

    Returns:
        (loss averaged over the batch, (B, 1 + K) logits).
    """
    logits = contrast_logits(q, k_pos, negatives, temperature)
    return info_nce(logits), logits


def neighbour_contrastive_loss(
    r: Tensor, k_pos: Tensor, negatives: Tensor, temperature: float = TEMPERATURE
) -> tuple[Tensor, Tensor]:
    """Neighbour loss with ``s+ = sum_j' r_j'·k+`` and ``s-_n = sum_j' r_j'·k-_n``.

    ``L_ngb = -log(exp(s+/t) / (exp(s+/t) + sum_n exp(s-_n/t)))``, as the official implementation
    computes it (the neighbour embeddings are summed, not averaged or re-normalised).

    Args:
        r: (B, k, D) normalised neighbour embeddings (k >= 1).
        k_pos: (B, D) normalised positive keys of the anchor patch.
        negatives: (K, D) the anchor landmark's queue ``Q_j``.
        temperature: tau (0.2).

    Returns:
        (loss averaged over the batch, (B, 1 + K) logits).
    """
    logits = contrast_logits(r.sum(dim=1), k_pos, negatives, temperature)
    return info_nce(logits), logits


def bank_neighbour_logits(
    q: Tensor,
    subjects: Tensor,
    keys: Tensor,
    key_subjects: Tensor,
    ages: Tensor,
    temperature: float,
) -> tuple[Tensor, Tensor]:
    """Neighbour contrast read from a neighbour landmark's queue (no extra encoder pass).

    The anchor query ``q_ij`` must pick its own subject's newest queued key ``k_ij'`` at the
    neighbour landmark ``j'`` among the other subjects' keys at ``j'``: positive and negatives
    share one anatomy, so only what a subject's patches have in common across the
    neighbourhood (parenchymal density, a lesion pattern that spans both regions) separates
    them, never the layout of one patch.

    Args:
        q: (B, D) normalised anchor queries at landmark ``j``.
        subjects: (B,) the anchors' subject ids.
        keys: (K, D) the queue of ``j'``.
        key_subjects: (K,) subject id of each queued key (negative ids: empty or unknown).
        ages: (K,) age of each slot (0 = written last).
        temperature: tau.

    Returns:
        ``(logits (A, 1 + K), rows (B,) bool)``: logits of the A rows whose subject has a key in
        the queue (column 0 its newest own key; other subjects' keys after it, ``-inf`` where
        not a usable negative) and which rows those are.
    """
    ks = key_subjects.to(q.device)
    own = ks.unsqueeze(0) == subjects.to(q.device).view(-1, 1)  # (B, K)
    rows = own.any(dim=1)
    newest = torch.where(own, -ages.to(q.device).unsqueeze(0).to(q.dtype),
                         torch.full_like(own, float("-inf"), dtype=q.dtype)).argmax(dim=1)
    sims = q @ keys.to(q.dtype).t()  # (B, K)
    pos = sims.gather(1, newest.view(-1, 1))
    usable = (ks >= 0).unsqueeze(0) & ~own
    logits = torch.cat([pos, sims.masked_fill(~usable, float("-inf"))], dim=1) / temperature
    return logits[rows], rows


@torch.no_grad()
def nearest_key_columns(keys: Tensor, logits: Tensor, candidates: Tensor) -> Tensor:
    """Column of each row's nearest usable negative key, by key-to-key cosine.

    The positive key ``k+_b`` of row b is compared with the negatives the row may use (the
    columns of ``logits`` after the positive that are not ``-inf``): both come from the key
    encoder, so the choice does not depend on the query being trained.

    Args:
        keys: (A, D) the rows' positive keys.
        logits: (A, 1 + M) contrast logits, column 0 the positive, ``-inf`` unusable.
        candidates: (M, D) the keys behind columns 1..M (in-batch keys, then the queue).

    Returns:
        (A,) long: the logits column (1..M) of the nearest usable key, or 0 where a row has
        no usable negative.
    """
    usable = torch.isfinite(logits[:, 1:])
    sims = (keys @ candidates.to(keys.dtype).t()).masked_fill(~usable, float("-inf"))
    col = sims.argmax(dim=1) + 1
    return torch.where(usable.any(dim=1), col, torch.zeros_like(col))


def soft_positive_info_nce(logits: Tensor, nearest: Tensor, weight: float) -> Tensor:
    """InfoNCE whose target puts ``1 - weight`` on the own positive (column 0) and ``weight``
    on column ``nearest`` (another subject's key): ``-(1-w) log p_0 - w log p_nn``, mean over
    rows. A row whose ``nearest`` is 0 keeps the plain target; ``weight`` 0 is :func:`info_nce`.
    """
    logp = F.log_softmax(logits, dim=1)
    own = logp[:, 0]
    other = logp.gather(1, nearest.view(-1, 1)).squeeze(1)
    return -((1.0 - weight) * own + weight * other).mean()


@torch.no_grad()
def contrast_top1(logits: Tensor) -> Tensor:
    """Fraction (0-1) of rows whose largest logit is the positive (column 0)."""
    return (logits.argmax(dim=1) == 0).to(logits.dtype).mean()


def neighbour_weight_at(
    epoch: int, beta: float = 1.0, warmup_epochs: int = 0, step: int = 0, warmup_steps: int = 0
) -> float:
    """beta of ``L = L_loc + beta L_ngb`` at a 0-based epoch and step: 0 during the warm-up
    (the first ``warmup_epochs`` epochs or the first ``warmup_steps`` steps)."""
    return 0.0 if epoch < warmup_epochs or step < warmup_steps else beta
