"""Neural network parts: Loc-CondConv and its execution paths, the DrasCLR encoder and head."""

from drasclr.nn.condconv import (
    PATHS,
    ConvPath,
    HyperConv3d,
    LocationConv3d,
    LocationPlan,
    LocCondConv3d,
    StaticConv3d,
    plan_locations,
)
from drasclr.nn.encoder import (
    CONDITIONINGS,
    ENCODER_LAYERS,
    Conditioning,
    ConvBNAct,
    DrasEncoder,
    ProjectionHead,
    make_conv,
)
from drasclr.nn.intensity import HU_HALF_RANGE, HU_MAX, HU_MIN, hu_to_input, hu_to_input_scale

__all__ = [
    "CONDITIONINGS",
    "ENCODER_LAYERS",
    "HU_HALF_RANGE",
    "HU_MAX",
    "HU_MIN",
    "PATHS",
    "Conditioning",
    "ConvBNAct",
    "ConvPath",
    "DrasEncoder",
    "HyperConv3d",
    "LocCondConv3d",
    "LocationConv3d",
    "LocationPlan",
    "ProjectionHead",
    "StaticConv3d",
    "hu_to_input",
    "hu_to_input_scale",
    "make_conv",
    "plan_locations",
]
