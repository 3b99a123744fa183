"""The evaluation's inputs: method feature folders.

:func:`read_method` checks a features folder (:func:`drasclr.features.extract_features`) and
reads what the evaluation needs from its info and config (:class:`MethodFeatures`). The settings
of the store the features came from are read with :func:`drasclr.preprocess.config.saved_config`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from torch import nn

from drasclr.evaluate.readouts import feature_frame

EncoderInput = nn.Module | str | Path
"""An encoder: an in-memory module, or an export / run folder."""


class EvaluationError(RuntimeError):
    """The evaluation cannot run: missing cohort files, features or encoders."""


@dataclass(frozen=True)
class MethodFeatures:
    """One method's feature folder.

    Attributes:
        name: method name (table rows).
        folder: the features folder.
        fingerprint: ``features_info.json`` fingerprint.
        encoder_fingerprint: the encoder part of it (pairs a random-location run with its partner).
        random_locations: extracted with random locations (paper Table 7 ablation).
        bn_stats: BatchNorm statistics of the extraction (``running`` or ``landmark``).
    """

    name: str
    folder: Path
    fingerprint: str
    encoder_fingerprint: str
    random_locations: bool
    bn_stats: str = "running"


def read_method(name: str, folder: str | Path) -> MethodFeatures:
    """Check a features folder and read what the evaluation needs from its info and config."""
    from drasclr.features import FeaturesConfig
    from drasclr.features.output import CONFIG_FILE as FEAT_CONFIG
    from drasclr.features.output import IMAGE_FILE, read_info

    folder = Path(folder)
    info = read_info(folder)
    if info is None or not (folder / IMAGE_FILE).is_file():
        raise EvaluationError(
            f"method {name!r}: {folder} holds no finished features (features_info.json and "
            f"{IMAGE_FILE}); run `drasclr extract` first"
        )
    rand, bn = False, "running"
    if (folder / FEAT_CONFIG).is_file():
        fcfg = FeaturesConfig.load(folder / FEAT_CONFIG)
        rand, bn = fcfg.random_locations, fcfg.bn_stats
    parts = info.get("parts", {})
    return MethodFeatures(
        name, folder, str(info.get("fingerprint")), str(parts.get("encoder", "")), bool(rand), bn
    )


def image_frame(method: MethodFeatures) -> pd.DataFrame:
    """The method's image features as a readout frame (``subject_id`` + ``f000``..)."""
    from drasclr.features import read_image_features

    ids, feats, _ = read_image_features(method.folder)
    return feature_frame(feats, ids)
