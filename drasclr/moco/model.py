"""DrasCLR assembled from parts (lightly style): encoders, heads, memory bank, losses.

One training step at landmark ``j`` (DESIGN.md §4.5-4.8)::

    out = model(query, key, neighbours, loc, neighbour_locs, landmark=j, neighbour_weight=beta)
    optimizer.zero_grad(); out["loss"].backward(); optimizer.step()
    model.enqueue(j, out["keys"])          # after the optimizer step

Under DDP call ``ddp_model(...)`` for the forward and ``ddp_model.module.enqueue(...)``. The memory
bank differs between workers (landmark sharding), so its buffers are listed in
``_ddp_params_and_buffers_to_ignore`` and DDP neither checks nor broadcasts them.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from drasclr.moco.losses import (
    TEMPERATURE,
    bank_neighbour_logits,
    contrast_logits,
    contrast_logits_real,
    contrast_top1,
    info_nce,
    nearest_key_columns,
    neighbour_contrastive_loss,
    soft_positive_info_nce,
)
from drasclr.moco.memory_bank import EMPTY, MemoryBank
from drasclr.moco.momentum import MOMENTUM, deactivate_requires_grad, update_momentum
from drasclr.moco.shuffle import batch_shuffle, batch_unshuffle
from drasclr.nn.encoder import Conditioning, DrasEncoder, ProjectionHead

#: Where the neighbour contrast gets its neighbour embeddings (see :class:`DrasCLR`).
NEIGHBOUR_SOURCES: tuple[str, ...] = ("patches", "bank")
#: How the k neighbour embeddings form the neighbour loss's anchor (see :class:`DrasCLR`).
NEIGHBOUR_REDUCTIONS: tuple[str, ...] = ("sum", "mean")


class DrasCLR(nn.Module):
    """Query encoder + head (``f_theta``), momentum key encoder + head (``f_xi``), memory bank.

    Args:
        encoder: query encoder ``e_theta`` with ``encoder(x, loc) -> h``.
        head: projection head ``g`` (the key copies are made by deep copy).
        memory_bank: the queues of the landmarks this worker trains on.
        temperature: tau of both losses (0.2).
        momentum: m of the key-encoder update (0.999).
        distributed: shuffle-BN across ranks with torch.distributed collectives.
        use_neighbours: compute the neighbour loss (False for plain MoCo).
        global_queue: one queue for all landmarks (plain MoCo): every landmark maps to the bank's
            single row.
        batch_negatives: the other subjects' keys of the same batch (same landmark) are
            negatives too, so real negatives exist from the first step.
        mask_queue: never use an empty queue slot (random initial vector) or a key of the
            query's own subject as a negative. Off: the published behaviour (every slot counts).
        bn_groups: split / ghost BatchNorm: encode each view in this many groups with their own
            batch statistics; keys are grouped after a random permutation, so a query and its
            positive key see different statistics (single-process stand-in for shuffle-BN).
        neighbour_source: ``patches`` (the paper: the neighbour patches are encoded by the
            query encoder and must pick the anchor's key) or ``bank`` (the anchor query must
            pick its subject's queued key at each neighbour landmark among the other subjects'
            keys there; no neighbour patch is read or encoded).
        neighbour_reduce: how the k neighbour embeddings form the neighbour loss's anchor:
            ``sum`` (the official implementation; its norm up to k sharpens the logits) or
            ``mean``.
        queue_negatives: the landmark's queue supplies negatives (off: the batch's other
            subjects only, which needs ``batch_negatives``; queued keys still get written).
        neighbour_head: a projection head ``g_n`` of its own for the neighbour loss's queries
            (``r_j' = g_n(e_theta(x_ij', l_j'))`` against ``g``'s keys); None (the paper): the
            neighbour loss shares ``g`` with the local loss. The representation ``h`` is shared
            either way; only the last map into the contrast space differs.
        neighbour_symmetric: the neighbour contrast runs both ways when the neighbour patches
            also have keys (``neighbour_keys``, the paired recipe): besides the paper's
            direction (``x_ij'`` must pick ``x_ij``'s key among landmark j's negatives), the
            anchor ``x_ij`` must pick its subject's key at each ``j'`` among ``j'``'s negatives,
            through the same head. Both directions read embeddings and keys the step computes
            anyway; ``L_ngb`` is their mean, so beta weighs it as before.
        nn_positive_weight: w of the local contrast's soft target: ``1 - w`` on the own
            positive key, ``w`` on the usable negative key nearest to it (another subject's;
            for DrasCLR at the same landmark), :func:`drasclr.moco.losses.soft_positive_info_nce`.
            0 (default): the paper's one-hot target. Needs real negatives (``mask_queue`` or
            ``batch_negatives``).
    """

    def __init__(
        self,
        encoder: DrasEncoder,
        head: ProjectionHead,
        memory_bank: MemoryBank,
        temperature: float = TEMPERATURE,
        momentum: float = MOMENTUM,
        distributed: bool = False,
        use_neighbours: bool = True,
        global_queue: bool = False,
        batch_negatives: bool = False,
        mask_queue: bool = False,
        bn_groups: int = 1,
        neighbour_source: str = "patches",
        queue_negatives: bool = True,
        neighbour_reduce: str = "sum",
        neighbour_head: ProjectionHead | None = None,
        neighbour_symmetric: bool = False,
        nn_positive_weight: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= nn_positive_weight < 1.0:
            raise ValueError(f"nn_positive_weight must be in [0, 1), got {nn_positive_weight}")
        if nn_positive_weight > 0 and not (mask_queue or batch_negatives):
            raise ValueError("nn_positive_weight needs real negatives: mask_queue or "
                             "batch_negatives")
        if neighbour_source not in NEIGHBOUR_SOURCES:
            raise ValueError(f"neighbour_source must be one of {NEIGHBOUR_SOURCES}, "
                             f"got {neighbour_source!r}")
        if neighbour_reduce not in NEIGHBOUR_REDUCTIONS:
            raise ValueError(f"neighbour_reduce must be one of {NEIGHBOUR_REDUCTIONS}, "
                             f"got {neighbour_reduce!r}")
        if not (queue_negatives or batch_negatives):
            raise ValueError("without queue negatives the batch's negatives are needed")
        if bn_groups < 1:
            raise ValueError(f"bn_groups must be >= 1, got {bn_groups}")
        if global_queue and len(memory_bank.landmarks) != 1:
            raise ValueError("a global queue needs a memory bank with exactly one row")
        self.encoder = encoder
        self.head = head
        self.key_encoder = copy.deepcopy(encoder)
        self.key_head = copy.deepcopy(head)
        deactivate_requires_grad(self.key_encoder)
        deactivate_requires_grad(self.key_head)
        self.memory_bank = memory_bank
        self.temperature = temperature
        self.momentum = momentum
        self.distributed = distributed
        self.use_neighbours = use_neighbours
        self.global_queue = global_queue
        self.batch_negatives = batch_negatives
        self.mask_queue = mask_queue
        self.bn_groups = bn_groups
        self.neighbour_source = neighbour_source
        self.queue_negatives = queue_negatives
        self.neighbour_reduce = neighbour_reduce
        self.neighbour_head = neighbour_head
        self.neighbour_symmetric = neighbour_symmetric
        self.nn_positive_weight = nn_positive_weight
        # Per-worker state that DDP must neither verify nor broadcast from rank 0.
        self._ddp_params_and_buffers_to_ignore = [
            f"memory_bank.{name}" for name, _ in memory_bank.named_buffers()
        ]

    @classmethod
    def build(
        cls,
        landmarks: Iterable[int],
        conditioning: Conditioning = "loccondconv",
        experts: int = 8,
        queue_size: int = 4096,
        dim: int = 128,
        temperature: float = TEMPERATURE,
        momentum: float = MOMENTUM,
        distributed: bool = False,
        seed: int = 0,
    ) -> DrasCLR:
        """The paper's model for the given (owned) landmark ids; bank seeded with ``seed``."""
        return cls(
            DrasEncoder(conditioning, experts=experts),
            ProjectionHead(128, 128, dim),
            MemoryBank(landmarks, size=queue_size, dim=dim, seed=seed),
            temperature=temperature,
            momentum=momentum,
            distributed=distributed,
        )

    # ------------------------------------------------------------------ embeddings
    def _grouped(self, net: nn.Module, head: nn.Module, x: Tensor, loc: Tensor) -> Tensor:
        """``head(net(x, loc))`` with BatchNorm statistics per group of ``bn_groups`` samples."""
        g = min(self.bn_groups, x.shape[0] // 2) if self.training else 1
        if g <= 1:
            return head(net(x, loc))
        xs = x.tensor_split(g)
        locs = loc.tensor_split(g) if loc.dim() == 2 else [loc] * g
        return torch.cat([head(net(xi, li)) for xi, li in zip(xs, locs)])

    def _represent(self, x: Tensor, loc: Tensor) -> tuple[Tensor, Tensor]:
        """Query-side representations ``h = e_theta(x, l)`` (B, C) and their normalised
        embeddings ``g(h)`` (B, D); ``h`` also feeds the neighbour head."""
        h = self._grouped(self.encoder, nn.Identity(), x, loc)
        return h, F.normalize(self.head(h), dim=1)

    def embed(self, x: Tensor, loc: Tensor) -> Tensor:
        """Normalised query-side embeddings ``f_theta(x, l)``: (B, D)."""
        return self._represent(x, loc)[1]

    @torch.no_grad()
    def embed_keys(self, x: Tensor, loc: Tensor) -> Tensor:
        """Normalised key embeddings ``f_xi(x, l)`` with shuffle-BN: (B, D), detached.

        Args:
            x: (B, 1, P, P, P) key patches.
            loc: (3,) or (B, 3) normalised locations.
        """
        b = x.shape[0]
        loc_b = loc.to(x.dtype).expand(b, 3) if loc.dim() == 1 else loc.to(x.dtype)
        x_sh, loc_sh, unshuffle = batch_shuffle(x, loc_b.contiguous(), self.distributed)
        if self.bn_groups > 1 and self.training:
            # ghost BN: a random permutation before grouping separates a key from its query's
            # group (the query side groups samples in batch order)
            perm = torch.randperm(x_sh.shape[0], device=x.device)
            k_perm = self._grouped(self.key_encoder, self.key_head, x_sh[perm], loc_sh[perm])
            k = torch.empty_like(k_perm)
            k[perm] = k_perm
        else:
            k = self.key_head(self.key_encoder(x_sh, loc_sh))
        return batch_unshuffle(F.normalize(k, dim=1), unshuffle, self.distributed)

    @torch.no_grad()
    def momentum_update(self, m: float | None = None) -> None:
        """``xi <- m xi + (1 - m) theta`` for the key encoder and key head."""
        m = self.momentum if m is None else m
        update_momentum(self.encoder, self.key_encoder, m)
        update_momentum(self.head, self.key_head, m)

    def bank_landmark(self, landmark: int) -> int:
        """The bank row's landmark id used for ``landmark`` (the single row for a global queue)."""
        return self.memory_bank.landmarks[0] if self.global_queue else landmark

    # ------------------------------------------------------------------ training step
    def _local(
        self, q: Tensor, keys: Tensor, landmark: int, subjects: Tensor | None,
        must_own: bool = True,
    ) -> tuple[Tensor, Tensor, Tensor | None, Tensor, Tensor | None]:
        """Local-contrast logits of anchors ``q`` against their positives ``keys`` at a landmark.

        Negatives are the landmark's queue and, with ``batch_negatives``, the other rows' keys.
        A landmark without a queue on this worker is a KeyError, unless ``must_own`` is False
        (a neighbour landmark of another worker's shard): then only in-batch negatives count.

        Returns:
            ``(logits, usable negatives per row (mean), batch keys or None, queue, queue
            validity (A, K) or None for the published every-slot formulation)``.
        """
        owned = self.global_queue or must_own or self.memory_bank.owns(landmark)
        if owned:
            bank_row = self.bank_landmark(landmark)
            self.memory_bank.row(bank_row)  # KeyError when this worker does not hold it
        owned = owned and self.queue_negatives  # from here: the queue is read
        if owned:
            negatives = self.memory_bank.negatives(bank_row).to(q.dtype)
        else:
            negatives = q.new_zeros((0, q.shape[1]))
        valid: Tensor | None = None
        if self.mask_queue and owned:
            ids = self.memory_bank.negative_subjects(bank_row).to(q.device)
            valid = (ids != EMPTY).unsqueeze(0).expand(q.shape[0], -1)
            if subjects is not None:
                own = ids.unsqueeze(0) == subjects.to(ids.device).view(-1, 1)
                valid = valid & ~own
        if valid is None and owned and not self.batch_negatives:  # the published formulation
            logits = contrast_logits(q, keys, negatives, self.temperature)
            n_neg = torch.full((), float(negatives.shape[0]), device=q.device)
            return logits, n_neg, None, negatives, None
        if valid is None:
            valid = torch.ones(q.shape[0], negatives.shape[0], dtype=torch.bool,
                               device=q.device)
        batch_keys = keys if self.batch_negatives else None
        logits = contrast_logits_real(q, keys, batch_keys, negatives, valid, self.temperature)
        # usable negatives per query (a row without any has loss 0; the loop's metrics report
        # the mean, so an empty queue without in-batch negatives is visible)
        n_neg = valid.sum(dim=1).to(q.dtype).mean()
        if self.batch_negatives:
            n_neg = n_neg + (q.shape[0] - 1)
        return logits, n_neg, batch_keys, negatives, valid

    def _local_loss(
        self, logits: Tensor, keys: Tensor, batch_keys: Tensor | None, negatives: Tensor,
    ) -> Tensor:
        """The local contrast's InfoNCE of :meth:`_local`'s ``logits``: one-hot on the own
        positive, or with ``nn_positive_weight`` the soft target that shares it with the
        nearest usable negative key."""
        if self.nn_positive_weight == 0.0:
            return info_nce(logits)
        cands = negatives if batch_keys is None else torch.cat([batch_keys, negatives])
        nearest = nearest_key_columns(keys[: logits.shape[0]], logits, cands)
        return soft_positive_info_nce(logits, nearest, self.nn_positive_weight)

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        neighbours: Tensor | None,
        loc: Tensor,
        neighbour_locs: Tensor | None,
        landmark: int,
        neighbour_weight: float = 1.0,
        update_key_encoder: bool = True,
        subjects: Tensor | None = None,
        neighbour_keys: Tensor | None = None,
        neighbour_landmarks: Sequence[int] | None = None,
        neighbour_local_weight: float = 0.0,
    ) -> dict[str, Tensor]:
        """Losses of one batch of subjects at one landmark.

        Args:
            query: (B, 1, P, P, P) augmented view ``aug(x_ij)``, input scale [-1, 1].
            key: (B, 1, P, P, P) second augmented view ``aug'(x_ij)``.
            neighbours: (B', k, 1, P, P, P) augmented neighbour patches ``x_ij'`` of the batch's
                first B' <= B subjects, or None / k = 0.
            loc: (3,) normalised landmark ``l_j`` (or (B, 3) per sample).
            neighbour_locs: (k, 3) normalised neighbour landmarks ``l_j'``.
            landmark: global landmark id ``j`` (selects the queue ``Q_j``).
            neighbour_weight: beta of ``L = L_loc + beta L_ngb``; 0 skips the neighbour loss
                (warm-up epochs), and the neighbour pass too unless the neighbours' own local
                losses need it (``neighbour_local_weight``).
            update_key_encoder: apply the momentum update before encoding the keys (MoCo order).
            subjects: (B,) subject ids (store indices) of the batch, used to mask the queue's
                keys of a query's own subject (needed with ``mask_queue``; None masks only
                empty slots).
            neighbour_keys: (B, k, 1, P, P, P) second augmented views ``aug'(x_ij')`` of the
                neighbour patches (all B rows), for the neighbours' own local losses.
            neighbour_landmarks: the k global landmark ids ``j'`` (their queues, where held;
                with ``neighbour_source="bank"`` the queues the neighbour contrast reads).
            neighbour_local_weight: gamma of ``L = L_loc,j + gamma sum_j' L_loc,j' + beta
                L_ngb``: the neighbour embeddings ``r_j'`` (already computed for the neighbour
                loss) are also queries of their own landmark's local contrast, so the query
                pass over the neighbour patches serves both losses. 0 (default): the paper's
                loss.

        Returns:
            ``loss`` (scalar, with graph), ``local_loss``, ``neighbour_loss`` (0 when not computed),
            ``top1`` (local contrast accuracy, 0-1), ``negatives`` (mean usable negatives per
            query), ``keys`` (B, D) detached keys to enqueue, ``q`` (B, D) detached queries,
            and with neighbour local losses ``neighbour_keys`` (B, k, D) detached keys to
            enqueue in the neighbours' queues.
        """
        # h_q is kept for the anchors' direction of the neighbour contrast (neighbour_symmetric)
        h_q, q = self._represent(query, loc)

        neighbour_loss: Tensor | None = None
        # the neighbour patches are embedded for the neighbour loss (beta != 0) or their own
        # landmark's local losses (gamma != 0, which also train while beta = 0)
        use_ngb = (
            self.use_neighbours
            and (neighbour_weight != 0.0
                 or (neighbour_local_weight != 0.0 and neighbour_keys is not None))
            and neighbours is not None
            and neighbours.shape[1] > 0
        )
        r: Tensor | None = None
        r_ngb: Tensor | None = None  # the neighbour loss's embeddings (r, or g_n's)
        flat_locs: Tensor | None = None
        if use_ngb:
            assert neighbours is not None and neighbour_locs is not None
            b, k = neighbours.shape[:2]
            if neighbour_locs.shape != (k, 3):
                got = tuple(neighbour_locs.shape)
                raise ValueError(f"neighbour_locs must be ({k}, 3), got {got}")
            flat = neighbours.reshape(b * k, *neighbours.shape[2:])
            flat_locs = neighbour_locs.to(query.dtype).repeat(b, 1)  # row b*k + j -> l_j'
            # one encoder pass; g (row-wise) for r, and g_n for L_ngb when there is one
            h, r_flat = self._represent(flat, flat_locs)
            r = r_flat.view(b, k, -1)
            if self.neighbour_head is not None and neighbour_weight != 0.0:
                r_ngb = F.normalize(self.neighbour_head(h), dim=1).view(b, k, -1)
        ngb_local = r is not None and neighbour_local_weight != 0.0 and neighbour_keys is not None
        if ngb_local:
            assert r is not None and neighbour_keys is not None and flat_locs is not None
            if neighbour_landmarks is None or len(neighbour_landmarks) != r.shape[1]:
                raise ValueError("neighbour local losses need the k neighbour landmark ids")
            if neighbour_keys.shape[:2] != r.shape[:2] or r.shape[0] != query.shape[0]:
                raise ValueError(
                    f"neighbour_keys must be ({query.shape[0]}, {r.shape[1]}, ...) like the "
                    f"neighbours of every row, got {tuple(neighbour_keys.shape)}")

        if update_key_encoder:
            self.momentum_update()
        keys = self.embed_keys(key, loc)
        nkeys: Tensor | None = None
        if ngb_local:
            assert neighbour_keys is not None and flat_locs is not None and r is not None
            nkeys = self.embed_keys(
                neighbour_keys.reshape(-1, *neighbour_keys.shape[2:]), flat_locs
            ).view(r.shape[0], r.shape[1], -1)

        logits, n_neg, batch_keys, negatives, valid = self._local(q, keys, landmark, subjects)
        local_loss = self._local_loss(logits, keys, batch_keys, negatives)
        if r is not None and neighbour_weight != 0.0:  # neighbour rows: the first r.shape[0]
            r_n = r if r_ngb is None else r_ngb
            a = r_n.shape[0]
            r_in = r_n if self.neighbour_reduce == "sum" else r_n / r_n.shape[1]  # mean
            if valid is None and batch_keys is None:
                neighbour_loss = neighbour_contrastive_loss(r_in, keys[:a], negatives,
                                                            self.temperature)[0]
            else:
                assert valid is not None
                neighbour_loss = info_nce(contrast_logits_real(
                    r_in.sum(dim=1), keys[:a], batch_keys, negatives, valid[:a],
                    self.temperature))
        loss = local_loss
        if ngb_local:
            assert r is not None and nkeys is not None and neighbour_landmarks is not None
            for i, lm in enumerate(neighbour_landmarks):
                n_logits, _, n_batch, n_neg_keys, _ = self._local(
                    r[:, i], nkeys[:, i], int(lm), subjects, must_own=False)
                loss = loss + neighbour_local_weight * self._local_loss(
                    n_logits, nkeys[:, i], n_batch, n_neg_keys)
            if self.neighbour_symmetric and neighbour_loss is not None:
                neighbour_loss = 0.5 * (neighbour_loss + self._reverse_neighbour_loss(
                    h_q, nkeys, neighbour_landmarks, subjects))
        if self.use_neighbours and self.neighbour_source == "bank" and neighbour_weight != 0.0:
            neighbour_loss = self._bank_neighbour_loss(q, subjects, neighbour_landmarks)
        if neighbour_loss is not None:
            loss = loss + neighbour_weight * neighbour_loss
        if self.distributed and self.neighbour_head is not None and r_ngb is None:
            # DDP reduces every parameter each step: a step without the neighbour loss (beta 0,
            # a warm-up) still gives g_n a (zero) gradient
            loss = loss + 0.0 * sum(p.sum() for p in self.neighbour_head.parameters())
        zero = torch.zeros((), dtype=local_loss.dtype, device=local_loss.device)
        out = {
            "loss": loss,
            "local_loss": local_loss.detach(),
            "neighbour_loss": zero if neighbour_loss is None else neighbour_loss.detach(),
            "top1": contrast_top1(logits),
            "negatives": n_neg.detach(),
            "keys": keys,
            "q": q.detach(),
        }
        if nkeys is not None:
            out["neighbour_keys"] = nkeys
        return out

    def _reverse_neighbour_loss(
        self, h_q: Tensor, nkeys: Tensor, neighbour_landmarks: Sequence[int],
        subjects: Tensor | None,
    ) -> Tensor:
        """The neighbour contrast from the anchors: row i's anchor representation, projected by
        the neighbour loss's head (``g_n``, or ``g`` when shared), must pick row i's key at each
        neighbour landmark ``j'`` among ``j'``'s negatives (its queue, the other rows' keys);
        the mean of the k InfoNCE losses.

        Args:
            h_q: (B, C) anchor representations ``e_theta(x_ij, l_j)``.
            nkeys: (B, k, D) keys of the rows' neighbour patches.
            neighbour_landmarks: the k landmark ids ``j'``.
            subjects: (B,) subject ids of the rows (masks their own queued keys).
        """
        head = self.head if self.neighbour_head is None else self.neighbour_head
        s = F.normalize(head(h_q), dim=1)
        parts = [info_nce(self._local(s, nkeys[:, i], int(lm), subjects, must_own=False)[0])
                 for i, lm in enumerate(neighbour_landmarks)]
        return torch.stack(parts).mean()

    def _bank_neighbour_loss(
        self, q: Tensor, subjects: Tensor | None, neighbour_landmarks: Sequence[int] | None
    ) -> Tensor | None:
        """InfoNCE of the anchors against their subjects' keys in the neighbours' queues
        (:func:`drasclr.moco.losses.bank_neighbour_logits`) over every (row, ``j'``) pair that
        has a positive; neighbour landmarks of another worker's shard are skipped. None when no
        neighbour landmark is given."""
        if not neighbour_landmarks:
            return None
        if subjects is None:
            raise ValueError("the bank neighbour contrast needs the batch's subject ids")
        bank = self.memory_bank
        parts = [
            bank_neighbour_logits(q, subjects, bank.negatives(lm), bank.negative_subjects(lm),
                                  bank.ages(lm), self.temperature)[0]
            for lm in (int(x) for x in neighbour_landmarks) if bank.owns(lm)
        ]
        logits = torch.cat(parts) if parts else q.new_zeros((0, 1))
        if logits.shape[0] == 0:  # no subject of the batch is queued at a neighbour yet
            return q.sum() * 0.0
        return info_nce(logits)

    @torch.no_grad()
    def enqueue(self, landmark: int, keys: Tensor, subjects: Tensor | None = None) -> None:
        """Push the step's keys (and their subjects) into the landmark's queue (call after the
        optimizer step)."""
        self.memory_bank.enqueue(self.bank_landmark(landmark), keys, subjects)


class PlainMoCo(DrasCLR):
    """MoCo baseline with DrasCLR's interface: static convolutions, one global queue, no
    neighbour loss; ``loc``/``neighbours``/``landmark`` are accepted and ignored."""

    @classmethod
    def build(  # type: ignore[override]
        cls,
        landmarks: Iterable[int] = (0,),
        conditioning: Conditioning = "none",
        experts: int = 8,
        queue_size: int = 4096,
        dim: int = 128,
        temperature: float = TEMPERATURE,
        momentum: float = MOMENTUM,
        distributed: bool = False,
        seed: int = 0,
    ) -> PlainMoCo:
        """Plain MoCo; ``landmarks`` is ignored (one global queue, id 0)."""
        return cls(
            DrasEncoder(conditioning, experts=experts),
            ProjectionHead(128, 128, dim),
            MemoryBank((0,), size=queue_size, dim=dim, seed=seed),
            temperature=temperature,
            momentum=momentum,
            distributed=distributed,
            use_neighbours=False,
            global_queue=True,
        )

    def forward(  # type: ignore[override]
        self,
        query: Tensor,
        key: Tensor,
        neighbours: Tensor | None = None,
        loc: Tensor | None = None,
        neighbour_locs: Tensor | None = None,
        landmark: int = 0,
        neighbour_weight: float = 0.0,
        update_key_encoder: bool = True,
        subjects: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """As :meth:`DrasCLR.forward`; without a location the encoder gets the origin."""
        if loc is None:
            loc = torch.zeros(3, dtype=query.dtype, device=query.device)
        return super().forward(
            query, key, None, loc, None, landmark, 0.0, update_key_encoder, subjects
        )
