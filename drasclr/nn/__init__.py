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

__all__ = [
    "CONDITIONINGS",
    "ENCODER_LAYERS",
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
    "make_conv",
    "plan_locations",
]
