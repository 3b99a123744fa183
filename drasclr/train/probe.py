"""The cheap patch probe that pretraining runs every ``probe_every`` steps.

It answers "does training add disease information?" while training runs: a fixed set of probe
patches (subjects x landmarks with their true lesion fraction, written before pretraining by
:func:`drasclr.evaluate.patch_probe.write_probe_file`) is encoded with the current query encoder
(BatchNorm in inference mode, as feature extraction does) and a subject-grouped ridge probe
(:func:`drasclr.probing.ridge_probe`) scores how well the 128-d representation predicts the
fraction. Step 0 is the untrained encoder, so the curve starts at the random-init value.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from drasclr.imaging.intensity import hu_to_input
from drasclr.probing import ridge_probe
from drasclr.store.reader import PatchStore

#: Keys of a probe file.
PROBE_KEYS: tuple[str, ...] = ("store_index", "landmark", "target")


@dataclass
class TrainingProbe:
    """Probe patches held in memory, grouped by landmark.

    Attributes:
        patches: (n, P, P, P) int16 HU, sorted by landmark.
        landmarks: (n,) landmark of each patch.
        subjects: (n,) store index of each patch (the CV groups).
        target: (n,) true lesion fraction of each patch.
        locations: (L, 3) normalised landmark locations (on the training device).
    """

    patches: npt.NDArray[np.int16]
    landmarks: npt.NDArray[np.int64]
    subjects: npt.NDArray[np.int64]
    target: npt.NDArray[np.float64]
    locations: Tensor

    @classmethod
    def load(cls, path: str | Path, store: PatchStore, locations: Tensor) -> TrainingProbe:
        """Read a probe file and its patches from ``store``.

        Raises:
            ValueError: the file lacks a key or names patches the store does not have.
        """
        with np.load(path) as z:
            missing = [k for k in PROBE_KEYS if k not in z]
            if missing:
                raise ValueError(f"{path}: probe file lacks {missing}")
            idx, lms, y = (np.asarray(z[k]) for k in PROBE_KEYS)
        if idx.max(initial=-1) >= store.capacity or lms.max(initial=-1) >= store.num_landmarks:
            raise ValueError(f"{path}: probe patches outside the store {store.path}")
        order = np.lexsort((idx, lms))
        idx, lms, y = idx[order].astype(np.int64), lms[order].astype(np.int64), y[order]
        parts = [store.read_landmark_batch(int(j), idx[lms == j]) for j in np.unique(lms)]
        return cls(np.concatenate(parts), lms, idx, y.astype(np.float64), locations)

    @torch.no_grad()
    def features(self, encoder: torch.nn.Module, batch_size: int = 256) -> npt.NDArray[np.float64]:
        """(n, 128) representations of the probe patches (encoder in inference mode)."""
        was_training = encoder.training
        encoder.eval()
        device = self.locations.device
        out = []
        try:
            for j in np.unique(self.landmarks):
                rows = np.flatnonzero(self.landmarks == j)
                for lo in range(0, len(rows), batch_size):
                    hu = torch.from_numpy(self.patches[rows[lo:lo + batch_size]]).to(device)
                    out.append(encoder(hu_to_input(hu).unsqueeze(1), self.locations[int(j)])
                               .double().cpu().numpy())
        finally:
            encoder.train(was_training)
        return np.concatenate(out)

    def run(self, model: torch.nn.Module, n_folds: int = 5, seed: int = 0) -> dict[str, float]:
        """Probe scores of ``model``'s query encoder: ``probe_r2``, ``probe_r2_sd``, ``probe_auc``."""
        feats = self.features(model.encoder)
        ok = np.isfinite(feats).all(axis=1)
        res = ridge_probe(feats[ok], self.target[ok], self.subjects[ok], n_folds=n_folds,
                          seed=seed).summary()
        return {"probe_r2": res["r2"], "probe_r2_fold_sd": res["r2_fold_sd"],
                "probe_auc": res["auc"], "probe_patches": int(ok.sum())}
