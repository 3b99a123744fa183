"""The frozen encoder at inference: where it comes from, its fingerprint, batched encoding."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from drasclr.fsutil import file_sha256
from drasclr.imaging.intensity import hu_to_input
from drasclr.store.reader import PatchStore

EncoderSource = nn.Module | str | Path
"""An in-memory encoder, or a run / export folder written by training."""

#: Files of a training export (``<run>/export/``, see ``drasclr.train.export``) that identify
#: the encoder: its weights and its config (architecture, input scaling, landmark table).
EXPORT_FILES: tuple[str, ...] = ("encoder.safetensors", "encoder_config.json")


class FeaturesError(RuntimeError):
    """Feature extraction cannot run: missing encoder, store or outputs of another run."""


def export_dir(path: str | Path) -> Path:
    """The folder holding ``encoder.safetensors`` + ``encoder.json`` for a run or export folder.

    Raises:
        FeaturesError: neither ``path`` nor ``path/export`` holds the export files.
    """
    path = Path(path)
    for cand in (path / "export", path):
        if all((cand / f).is_file() for f in EXPORT_FILES):
            return cand
    raise FeaturesError(
        f"{path}: no trained encoder here (looked for {', '.join(EXPORT_FILES)} in {path}/export "
        f"and {path}); pass a training run folder or its export folder"
    )


def export_config(path: str | Path) -> dict[str, Any]:
    """The ``encoder_config.json`` of a run or export folder (no weights are loaded)."""
    file = export_dir(path) / EXPORT_FILES[1]
    try:
        return dict(json.loads(file.read_text()))
    except (OSError, ValueError) as err:
        raise FeaturesError(f"{file}: unreadable encoder config: {err}") from err


def check_store_matches(config: dict[str, Any], store: PatchStore, source: str) -> None:
    """Refuse a store whose landmarks or patch size differ from the encoder's training store.

    Args:
        config: an export's ``encoder_config.json`` content (sections missing are not checked).
        store: the store to extract from.
        source: the export folder, for the message.
    """
    size = config.get("input", {}).get("patch_size")
    if size is not None and int(size) != store.patch_size:
        raise FeaturesError(
            f"{source}: encoder trained on {size}^3 patches, store {store.path} holds "
            f"{store.patch_size}^3"
        )
    norm = config.get("landmarks", {}).get("landmarks_norm")
    if norm is not None:
        norm = np.asarray(norm, dtype=np.float64)
        if norm.shape != store.landmarks_norm.shape or not np.allclose(
            norm, store.landmarks_norm, atol=1e-5
        ):
            raise FeaturesError(
                f"{source}: the encoder's landmark table ({norm.shape[0]} landmarks) differs from "
                f"the store's ({store.num_landmarks}) at {store.path}; extract from a store "
                "preprocessed with the same atlas grid"
            )


def resolve_encoder(source: EncoderSource) -> tuple[nn.Module, dict[str, Any]]:
    """The encoder module and a description of where it came from.

    A path is loaded with ``drasclr.train.export.load_encoder`` (imported only here, so the
    in-memory use needs no training code).

    Returns:
        ``(encoder, meta)``; meta holds ``source`` and, for an export, its metadata.
    """
    if isinstance(source, nn.Module):
        return source, {"source": "in-memory", "class": type(source).__name__}
    folder = export_dir(source)
    try:
        from drasclr.train.export import load_encoder
    except ImportError as err:
        raise FeaturesError(
            f"{source}: loading an exported encoder needs drasclr.train.export.load_encoder ({err})"
        ) from err
    encoder, meta = load_encoder(Path(source))
    brief = {k: v for k, v in dict(meta).items() if k != "landmarks"}  # drop the big table
    return encoder, {"source": str(folder), **brief}


def encoder_fingerprint(source: EncoderSource) -> str:
    """Content hash of an encoder: of its state dict in memory, of the export files on disk."""
    h = hashlib.sha256()
    if isinstance(source, nn.Module):
        h.update(type(source).__name__.encode())
        for name, tensor in source.state_dict().items():
            t = tensor.detach().cpu().contiguous()
            h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
            h.update(
                t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes()
            )
        return "module:" + h.hexdigest()[:16]
    folder = export_dir(source)
    for f in EXPORT_FILES:
        h.update(f.encode() + file_sha256(folder / f).encode())
    return "export:" + h.hexdigest()[:16]


def pick_device(device: str) -> torch.device:
    """Resolve ``"auto"`` to CUDA when available; check an explicit CUDA request."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise FeaturesError(f"device {device!r} requested but CUDA is not available")
    return torch.device(device)


def param_dtype(encoder: nn.Module) -> torch.dtype:
    """Floating dtype of the encoder's parameters (float32 when it has none)."""
    for p in encoder.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


@contextmanager
def on_device(encoder: nn.Module, device: torch.device) -> Iterator[nn.Module]:
    """Move the encoder to ``device`` for the block, back to where it was after."""
    home = next((p.device for p in encoder.parameters()), None)
    encoder.to(device)
    try:
        yield encoder
    finally:
        if home is not None:
            encoder.to(home)


@contextmanager
def inference(encoder: nn.Module) -> Iterator[nn.Module]:
    """Eval mode (BatchNorm uses running statistics) + no autograd; restores the mode after."""
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.inference_mode():
            yield encoder
    finally:
        encoder.train(was_training)


def encode_patches(
    encoder: nn.Module,
    patches_hu: npt.NDArray[Any],
    locations: npt.ArrayLike,
    device: torch.device,
) -> npt.NDArray[np.floating]:
    """Encode HU patches at normalised locations (call inside :func:`inference`).

    Args:
        encoder: ``encoder(x, loc) -> (B, D)`` on ``device``.
        patches_hu: (B, P, P, P) patches in HU, indexed [z, y, x].
        locations: (3,) one normalised location for the whole batch (one shared kernel) or
            (B, 3) one per patch; atlas space, [-1, 1] per axis at the landmarks.
        device: where the encoder lives.

    Returns:
        (B, D) representations in the encoder's dtype (float32 or float64), on the CPU.
    """
    dtype = param_dtype(encoder)
    x = hu_to_input(torch.from_numpy(np.ascontiguousarray(patches_hu)).to(device))
    x = x.to(dtype).unsqueeze(1)
    loc = torch.as_tensor(np.asarray(locations), device=device, dtype=dtype)
    return encoder(x, loc).detach().cpu().numpy()


def encode_patches_landmark_bn(
    encoder: nn.Module,
    patches_hu: npt.NDArray[Any],
    locations: npt.ArrayLike,
    device: torch.device,
    chunk: int = 256,
) -> npt.NDArray[np.floating]:
    """Encode one landmark's patches with BatchNorm statistics computed on these patches.

    A copy of the encoder re-estimates every BatchNorm layer's mean and variance from
    ``patches_hu`` (cumulative average over chunks of ``chunk``; one chunk is the exact batch
    statistic), then encodes them in inference mode. When the patches fit one chunk, their
    exact batch statistics are applied in the same pass (BatchNorm in training mode, no
    gradients): one forward pass instead of two. The encoder itself is not changed. A single
    patch has no batch statistic and is encoded with the running statistics.

    Args:
        encoder, patches_hu, locations, device: as :func:`encode_patches` (one landmark's
            patches of many subjects).
        chunk: patches per forward pass.
    """
    import copy

    from torch.nn.modules.batchnorm import _BatchNorm

    n = len(patches_hu)
    if n < 2:  # one patch has no batch statistic: the running statistics are used
        with torch.inference_mode():
            return encode_patches(encoder, patches_hu, locations, device)
    local = copy.deepcopy(encoder)
    if n <= chunk:
        local.train()
        with torch.no_grad():
            return encode_patches(local, patches_hu, locations, device)
    norms = [m for m in local.modules() if isinstance(m, _BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the chunks
    loc = np.asarray(locations)

    def part(lo: int) -> npt.NDArray[Any]:  # one location for all, or each chunk's own rows
        return loc if loc.ndim == 1 else loc[lo:lo + chunk]

    local.train()
    with torch.no_grad():
        for lo in range(0, n, chunk):
            encode_patches(local, patches_hu[lo:lo + chunk], part(lo), device)
    local.eval()
    with torch.inference_mode():
        return np.concatenate([encode_patches(local, patches_hu[lo:lo + chunk], part(lo), device)
                               for lo in range(0, n, chunk)])
