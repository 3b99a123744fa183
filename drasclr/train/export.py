"""Final export of a pretraining run and the loader feature extraction uses.

``<out>/export/`` holds::

    encoder.safetensors   query encoder ``e_theta`` weights (float32, DrasEncoder state_dict keys)
    encoder_config.json   how to rebuild and feed it: conditioning, experts, representation dim,
                          input scaling (HU window), patch size, landmark table (atlas mm and
                          normalised), pretrain config, store summary, final metrics
    model_card.md         data, settings, metrics, intended use and limits, in prose

:func:`load_encoder` rebuilds the :class:`~drasclr.nn.encoder.DrasEncoder` from that folder.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from drasclr import __version__
from drasclr.fsutil import atomic_path, atomic_write_text
from drasclr.nn.encoder import REPRESENTATION_DIM, DrasEncoder
from drasclr.store.reader import PatchStore
from drasclr.train.checkpoint import load_model_state, read_meta
from drasclr.train.config import PretrainConfig, new_encoder

EXPORT_DIR = "export"
WEIGHTS_FILE = "encoder.safetensors"
CONFIG_FILE = "encoder_config.json"
CARD_FILE = "model_card.md"
EXPORT_FORMAT = "drasclr-encoder"
EXPORT_VERSION = 1


class ExportError(RuntimeError):
    """An export folder is missing, incomplete or unreadable."""


def encoder_state(
    model_state: dict[str, torch.Tensor], prefix: str = "encoder."
) -> dict[str, torch.Tensor]:
    """One encoder's tensors from a DrasCLR state dict, ``prefix`` removed: the query encoder's
    (``encoder.``, the default) or the key encoder's (``key_encoder.``)."""
    out = {
        k[len(prefix):]: v.detach().to("cpu", torch.float32).contiguous()
        for k, v in model_state.items()
        if k.startswith(prefix)
    }
    if not out:
        raise ExportError(f"the model state holds no '{prefix}*' tensors")
    return out


def export_encoder(
    checkpoint_dir: str | Path,
    config: PretrainConfig,
    store: PatchStore,
    out_dir: str | Path,
    metrics: dict[str, Any] | None = None,
) -> Path:
    """Write ``<out_dir>/export`` from a training checkpoint (atomically, replacing an old one).

    Args:
        checkpoint_dir: a checkpoint directory (:mod:`drasclr.train.checkpoint` layout).
        config: the run's configuration.
        store: the store it trained on (landmark table and summary are copied into the export).
        out_dir: the run folder.
        metrics: final metrics for the config and the model card (default: the checkpoint's).

    Returns:
        The export folder.
    """
    meta = read_meta(checkpoint_dir)
    state = load_model_state(checkpoint_dir)
    tensors = encoder_state(state["model"])
    metrics = dict(metrics if metrics is not None else meta.get("metrics", {}))
    return _write_export(tensors, config, store, out_dir, metrics, int(meta["step"]),
                         int(meta.get("epoch", 0)), int(meta["world_size"]))


def export_initial_encoder(
    config: PretrainConfig, store: PatchStore | str | Path, out_dir: str | Path
) -> Path:
    """Export the *untrained* encoder of ``config`` (its seeded initial weights, 0 steps).

    The random-initialisation baseline of the evaluation: the same architecture and the same
    initial weights a pretraining run with this config starts from.
    """
    store = store if isinstance(store, PatchStore) else PatchStore(store)
    torch.manual_seed(config.seed)  # the same draw as drasclr.train.loop.build_model
    encoder = new_encoder(config)
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous()
               for k, v in encoder.state_dict().items()}
    return _write_export(tensors, config, store, out_dir, {}, 0, 0, 1)


def _write_export(
    tensors: dict[str, torch.Tensor],
    config: PretrainConfig,
    store: PatchStore,
    out_dir: str | Path,
    metrics: dict[str, Any],
    step: int,
    epoch: int,
    world_size: int,
) -> Path:
    """Write weights, encoder config and model card atomically; returns the export folder."""
    info = store.info
    enc_cfg: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_VERSION,
        "drasclr": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "encoder": {
            "class": "drasclr.nn.encoder.DrasEncoder",
            "conditioning": config.conditioning,
            "experts": config.experts,
            "loc_dim": 3,
            "input_map": config.input_map,
            "representation_dim": REPRESENTATION_DIM,
        },
        "input": {
            "patch_size": info.patch_size,
            "hu_window": list(info.hu_window),
            "scaling": "clip HU to hu_window, then (hu + 1024) / 632 - 1 (hu_to_input); the "
                       "encoder applies encoder.input_map itself (drasclr.imaging.intensity)",
            "location": "landmarks_norm row of the patch's landmark (atlas space, [-1, 1] per axis)",
        },
        "landmarks": {
            "atlas_id": info.atlas_id,
            "landmarks_mm": info.landmarks_mm.tolist(),
            "landmarks_norm": info.landmarks_norm.tolist(),
            "neighbours": info.neighbours.tolist(),
        },
        "training": {
            "steps": step,
            "epochs_completed": epoch,
            "world_size": world_size,
            "pretrain_config": config.to_dict(),
            "config_fingerprint": config.fingerprint(),
            "store": {
                "path": str(store.path),
                "num_subjects": store.num_subjects,
                "num_landmarks": store.num_landmarks,
                "schema_version": info.schema_version,
            },
            "metrics": metrics,
        },
    }
    target = Path(out_dir) / EXPORT_DIR
    with atomic_path(target) as tmp:
        tmp.mkdir(parents=True)
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": EXPORT_FORMAT})
        (tmp / CONFIG_FILE).write_text(json.dumps(enc_cfg, indent=1))
        (tmp / CARD_FILE).write_text(model_card(enc_cfg))
    return target


def _soft_target(cfg: dict[str, Any]) -> str:
    """The model card's words for a local soft target (empty for the paper's one-hot one)."""
    w = float(cfg.get("nn_positive_weight", 0.0))
    return f", local target {1 - w:g} own key / {w:g} nearest other key" if w else ""


def _neighbour_distance(cfg: dict[str, Any]) -> str:
    """The model card's note on ``neighbour_min_mm`` (empty for the nearest neighbours)."""
    far = float(cfg.get("neighbour_min_mm", 0.0))
    return f", at least {far:g} mm away" if far > 0 else ""


def model_card(enc_cfg: dict[str, Any]) -> str:
    """A short Markdown model card from an encoder config dict."""
    tr = enc_cfg["training"]
    cfg = tr["pretrain_config"]
    st = tr["store"]
    m = tr["metrics"]

    def fmt(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    kind = "DrasCLR" if cfg["model"] == "drasclr" else "plain MoCo (baseline)"
    lines = [
        f"# {kind} encoder ({enc_cfg['encoder']['conditioning']} conditioning)",
        "",
        ("Self-supervised 3D CNN encoder of lung-CT patches centred at atlas landmarks "
        "(DrasCLR: location-conditioned convolutions, per-landmark memory bank, local + "
        "neighbour contrastive losses)."),
        "",
        "## Data",
        (f"- patch store `{st['path']}` (schema {st['schema_version']}): {st['num_subjects']} "
        f"subjects x {st['num_landmarks']} landmarks, patch {enc_cfg['input']['patch_size']}^3 "
        f"voxels at 1 mm, atlas `{enc_cfg['landmarks']['atlas_id']}`"),
        f"- input: {enc_cfg['input']['scaling']}",
        "",
        "## Settings",
        (f"- {tr['steps']} steps on {tr['world_size']} worker(s); batch {cfg['batch_size']} "
        + ("random (landmark, subject) patches (mixed batches)"
           if cfg.get("batch_mode", "landmark") == "mixed" else
           f"subjects x 1 landmark (+{cfg['neighbours'] if cfg['model'] == 'drasclr' else 0} "
           "neighbours)") + " per worker"),
        (f"- SGD lr {cfg['lr']} (cosine), momentum {cfg['sgd_momentum']}, weight decay "
        f"{cfg['weight_decay']}; tau {cfg['temperature']}, m {cfg['momentum']}, "
        f"K {cfg['queue_size']}, D {cfg['dim']}, experts {cfg['experts']}, "
        f"beta {cfg['neighbour_weight']} after {cfg['warmup_epochs']} warm-up epoch(s) / "
        f"{cfg.get('warmup_steps', 0)} step(s), neighbour local-loss weight "
        f"{cfg.get('neighbour_local_weight', 0.0)}, neighbours from "
        f"{cfg.get('neighbour_source', 'patches')} ({cfg.get('neighbour_reduce', 'sum')} of "
        "their embeddings, projected by "
        f"{'a head of their own' if cfg.get('neighbour_head', False) else 'the shared head'}"
        f"{', both ways' if cfg.get('neighbour_symmetric', False) else ''}"
        f"{_neighbour_distance(cfg)}), "
        "queue negatives "
        f"{'on' if cfg.get('queue_negatives', True) else 'off'}"
        f"{_soft_target(cfg)}"),
        f"- seed {cfg['seed']}; config fingerprint `{tr['config_fingerprint']}`",
        "",
        "## Final metrics (last logging window)",
        *(f"- {k}: {fmt(v)}" for k, v in sorted(m.items()) if not isinstance(v, (list, dict))),
        "",
        "## Use",
        ("`drasclr.train.export.load_encoder(<this folder>)` returns the encoder in eval mode; "
        "call `encoder(x, loc)` with x (B, 1, P, P, P) scaled as above and loc the normalised "
        "landmarks; output (B, 128). Image representation: mean over landmarks."),
        "",
        "## Limits",
        ("Trained without labels on the cohort above only; representations reflect its scanners, "
        "protocols and population. Research use; not a medical device."),
        "",
    ]
    return "\n".join(lines)


def load_encoder(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[DrasEncoder, dict[str, Any]]:
    """Rebuild the exported encoder.

    Args:
        path: the export folder (``<out>/export``), the run folder holding it, or the
            ``encoder.safetensors`` / ``encoder_config.json`` file.
        device: where to put the weights.

    Returns:
        (encoder in eval mode, the ``encoder_config.json`` dict).

    Raises:
        ExportError: folder or files missing, another format, or weights that do not fit.
    """
    path = Path(path)
    if path.is_file():
        path = path.parent
    if not (path / CONFIG_FILE).is_file() and (path / EXPORT_DIR / CONFIG_FILE).is_file():
        path = path / EXPORT_DIR
    cfg_file, weights_file = path / CONFIG_FILE, path / WEIGHTS_FILE
    for f in (cfg_file, weights_file):
        if not f.is_file():
            raise ExportError(f"{f}: missing; not a drasclr encoder export")
    try:
        cfg = json.loads(cfg_file.read_text())
    except (OSError, ValueError) as err:
        raise ExportError(f"{cfg_file}: unreadable encoder config: {err}") from err
    if cfg.get("format") != EXPORT_FORMAT or cfg.get("format_version") != EXPORT_VERSION:
        raise ExportError(
            f"{cfg_file}: format {cfg.get('format')!r} v{cfg.get('format_version')}, expected "
            f"{EXPORT_FORMAT!r} v{EXPORT_VERSION}"
        )
    enc = cfg["encoder"]
    encoder = DrasEncoder(enc["conditioning"], experts=int(enc["experts"]),
                          loc_dim=int(enc.get("loc_dim", 3)),
                          input_map=str(enc.get("input_map", "linear")))
    try:
        tensors = load_file(str(weights_file))
    except (SafetensorError, OSError) as err:
        raise ExportError(f"{weights_file}: corrupt weights file: {err}") from err
    try:
        encoder.load_state_dict(tensors)
    except RuntimeError as err:
        raise ExportError(f"{weights_file}: weights do not fit the encoder config: {err}") from err
    return encoder.to(device).eval(), cfg


def write_result(out_dir: str | Path, result: dict[str, Any]) -> Path:
    """Write ``<out>/result.json`` atomically."""
    path = Path(out_dir) / "result.json"
    atomic_write_text(path, json.dumps(result, indent=1, default=str))
    return path
