"""pandera models: CAVE wire tables, canonical tables, the feature matrix; and `validate`."""

from cellfeatures.schemas.canonical import (
    CellTypeCanonical,
    NucleusCanonical,
    SynapseCanonical,
    SynapseTagCanonical,
    feature_matrix_schema,
)
from cellfeatures.schemas.validate import validate
from cellfeatures.schemas.wire import WIRE_MODELS

__all__ = [
    "WIRE_MODELS",
    "CellTypeCanonical",
    "NucleusCanonical",
    "SynapseCanonical",
    "SynapseTagCanonical",
    "feature_matrix_schema",
    "validate",
]
