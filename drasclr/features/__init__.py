"""Feature extraction with a frozen encoder: patch, image and dense voxel features.

- :mod:`~drasclr.features.config`: :class:`FeaturesConfig` (the stage config).
- :mod:`~drasclr.features.patch`: patch/image features of a store in one process.
- :mod:`~drasclr.features.extract`: the stage: Parquet outputs, skip-if-done, Ray Data actors.
- :mod:`~drasclr.features.output`: the tables (``schemas/patch_features.json``,
  ``schemas/features.json``) and how to read them back.
- :mod:`~drasclr.features.dense`: dense voxel features / predictions with a stride.

Importing this package does not import Ray.
"""

from drasclr.features.config import FeaturesConfig
from drasclr.features.dense import (
    DenseFeatures,
    dense_features,
    store_bounds,
)
from drasclr.features.encoding import (
    FeaturesError,
    encode_patches,
    encoder_fingerprint,
    export_config,
    export_dir,
    resolve_encoder,
)
from drasclr.features.extract import (
    ExtractResult,
    extract_features,
    extract_features_ray,
    store_fingerprint,
)
from drasclr.features.output import (
    IMAGE_FILE,
    PATCH_FILE,
    feature_columns,
    read_image_features,
    read_image_frame,
    read_patch_features,
)
from drasclr.features.patch import (
    PatchFeatures,
    Unit,
    extract_patch_features,
    image_features,
    plan_units,
    random_locations,
)

__all__ = [
    "IMAGE_FILE",
    "PATCH_FILE",
    "DenseFeatures",
    "ExtractResult",
    "FeaturesConfig",
    "FeaturesError",
    "PatchFeatures",
    "Unit",
    "dense_features",
    "encode_patches",
    "encoder_fingerprint",
    "export_config",
    "export_dir",
    "extract_features",
    "extract_features_ray",
    "extract_patch_features",
    "feature_columns",
    "image_features",
    "plan_units",
    "random_locations",
    "read_image_features",
    "read_image_frame",
    "read_patch_features",
    "resolve_encoder",
    "store_bounds",
    "store_fingerprint",
]
