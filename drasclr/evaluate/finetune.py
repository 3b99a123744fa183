"""Full fine-tuning of an encoder + linear head on box patches (paper §4.3, Table 5, Fig. 5).

The paper's detection experiments fine-tune the whole encoder with a linear head, and compare
against the same CNN trained from scratch (the supervised baseline). :class:`FineTuner` is a
scikit-learn-like estimator over *box positions*: ``fit(X, y)`` takes ``X`` as an (n, 1) column of
positions into a :class:`~drasclr.evaluate.boxes.BoxPatches`, so it plugs into
:func:`drasclr.evaluate.readouts.cross_validate` (``pipeline_factory``) and
:func:`drasclr.evaluate.detection.label_efficiency` (as a ``FitPredict``) with the same folds as
the linear readouts.

Training is deliberately small (a few epochs of Adam, batch 16, class-balanced binary
cross-entropy, no augmentation) so that it fits a CPU evaluation; its settings are
``EvaluateConfig.finetune_*``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from drasclr.evaluate.boxes import BoxPatches
from drasclr.features.encoding import pick_device
from drasclr.imaging.intensity import hu_to_input

EncoderFactory = Callable[[], nn.Module]
"""Returns a fresh encoder to fine-tune (a copy of a pretrained one, or a new random one)."""


class FineTuner:
    """Encoder + ``Linear(D, 1)`` trained end to end on box patches.

    Args:
        make_encoder: fresh encoder for each fit.
        boxes: the box patches and locations that positions refer to.
        epochs: passes over the training boxes.
        lr: Adam learning rate.
        batch_size: boxes per step.
        seed: seed of the head init and the batch order.
        device: ``auto``, ``cpu``, ``cuda``...
    """

    def __init__(
        self,
        make_encoder: EncoderFactory,
        boxes: BoxPatches,
        epochs: int = 2,
        lr: float = 1e-3,
        batch_size: int = 16,
        seed: int = 0,
        device: str = "auto",
    ) -> None:
        self.make_encoder = make_encoder
        self.boxes = boxes
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.seed = seed
        self.device = device

    def _inputs(self, rows: npt.NDArray[np.int64]) -> tuple[torch.Tensor, torch.Tensor]:
        dev = pick_device(self.device)
        x = hu_to_input(torch.from_numpy(np.ascontiguousarray(self.boxes.patches[rows])).to(dev))
        loc = torch.from_numpy(self.boxes.locations[rows]).to(dev)
        return x.float().unsqueeze(1), loc

    def fit(self, X: npt.NDArray[Any], y: npt.NDArray[Any]) -> FineTuner:
        """Train on the boxes at positions ``X[:, 0]`` with binary labels ``y``."""
        rows = np.asarray(X)[:, 0].astype(np.int64)
        y = np.asarray(y).astype(np.float32)
        torch.manual_seed(self.seed)
        dev = pick_device(self.device)
        self.encoder_ = self.make_encoder().to(dev).train()
        dim = int(getattr(self.encoder_, "out_dim", 128))
        self.head_ = nn.Linear(dim, 1).to(dev)
        params = list(self.encoder_.parameters()) + list(self.head_.parameters())
        opt = torch.optim.Adam(params, lr=self.lr)
        pos = max(float(y.sum()), 1.0)
        loss_fn = nn.BCEWithLogitsLoss(
            pos_weight=torch.tensor([(len(y) - pos) / pos if len(y) > pos else 1.0], device=dev)
        )
        rng = np.random.default_rng(self.seed)
        for _ in range(self.epochs):
            order = rng.permutation(len(rows))
            for start in range(0, len(order), self.batch_size):
                sel = order[start : start + self.batch_size]
                if len(sel) < 2:  # BatchNorm needs two samples in training mode
                    continue
                x, loc = self._inputs(rows[sel])
                logit = self.head_(self.encoder_(x, loc))[:, 0]
                loss = loss_fn(logit, torch.from_numpy(y[sel]).to(dev))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        return self

    def predict_proba_pos(self, X: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        """Probability of the positive class for the boxes at positions ``X[:, 0]``."""
        rows = np.asarray(X)[:, 0].astype(np.int64)
        self.encoder_.eval()
        out = []
        with torch.inference_mode():
            for start in range(0, len(rows), 64):
                x, loc = self._inputs(rows[start : start + 64])
                out.append(torch.sigmoid(self.head_(self.encoder_(x, loc))[:, 0]).cpu().numpy())
        return np.concatenate(out).astype(np.float64) if out else np.zeros(0)

    def predict(self, X: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
        """Binary predictions (p > 0.5)."""
        return (self.predict_proba_pos(X) > 0.5).astype(np.int64)


def copy_factory(encoder: nn.Module) -> EncoderFactory:
    """A factory returning deep copies of ``encoder`` (fine-tuning from pretrained weights)."""
    frozen = copy.deepcopy(encoder).cpu()
    return lambda: copy.deepcopy(frozen)


def fit_predict(tuner_args: dict[str, Any], y: npt.NDArray[Any]) -> Any:
    """A :data:`drasclr.evaluate.detection.FitPredict` for the label-efficiency curve.

    Args:
        tuner_args: keyword arguments of :class:`FineTuner`.
        y: labels of the positions the curve passes (the task's boxes, in the curve's order).
        Positions handed to the callable index ``y`` and the ``rows`` of ``tuner_args["rows"]``.
    """
    rows = np.asarray(tuner_args.pop("rows"), np.int64)

    def run(train: npt.NDArray[np.int64], test: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        if len(np.unique(y[train])) < 2:
            return np.full(len(test), y[train][0])
        tuner = FineTuner(**tuner_args).fit(rows[train][:, None], y[train])
        return tuner.predict(rows[test][:, None])

    return run
