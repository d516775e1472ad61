"""pandera models of CAVE tables in the wire dialect that every Source.scan returns.

The dialect (normalize.coerce_wire) already absorbed the server's variations: unsplit `[x y z]`
positions are split into `<name>_x/_y/_z` Float64, `'t'/'f'` strings are Booleans, ids are Int64. These
models check what must hold on top: required columns, dtypes, unique annotation ids, tag vocabularies.
Extra columns are allowed (`strict = False`): servers add book-keeping columns over time.
"""

from __future__ import annotations

from typing import Optional

import pandera.polars as pa
import polars as pl
from pandera.api.polars.types import PolarsData


def _finite(data: PolarsData) -> pl.LazyFrame:
    """NaN and infinity are refused (null is the spelling of 'not measured')."""
    return data.lazyframe.select(pl.col(data.key).is_finite() | pl.col(data.key).is_null())


# Plausibility bounds: values beyond them are unit mistakes or corruption, not biology.
MAX_NUCLEUS_VOLUME_UM3 = 1e5  # a nucleus is ~100-1,000 um^3; 1e5 is a 46 um cube
MAX_SYNAPSE_SIZE_VX = 1e10  # voxels; at 4x4x40 nm that is 6,400 um^3, larger than a cell


class _Wire(pa.DataFrameModel):
    class Config:
        strict = False
        coerce = True


class _Annotation(_Wire):
    id: int = pa.Field(unique=True, ge=0)  # CAVE ids are never negative: a negative nucleus id is no cell
    valid: bool = pa.Field(nullable=True)


class NucleusWire(_Annotation):
    """nucleus_detection_v0: pt_root_id 0 = outside segmentation; volume in um^3."""

    volume: float = pa.Field(nullable=True, ge=0, le=MAX_NUCLEUS_VOLUME_UM3)
    pt_root_id: int = pa.Field(ge=0)
    pt_position_x: float
    pt_position_y: float
    pt_position_z: float

    @pa.check("pt_position_x", "pt_position_y", "pt_position_z", name="finite")
    def finite(cls, data: PolarsData) -> pl.LazyFrame:
        return _finite(data)


class CellTypeWire(_Annotation):
    """Reference cell-type tables (manual or model): target_id = nucleus id."""

    target_id: int = pa.Field(ge=0)
    cell_type: str = pa.Field(nullable=True)


class SynapseWire(_Annotation):
    """synapses_pni_2."""

    pre_pt_root_id: int = pa.Field(ge=0)
    post_pt_root_id: int = pa.Field(ge=0)
    # null = size unknown (documented, tested): counted as a synapse, left out of the size statistics
    size: int = pa.Field(ge=0, le=MAX_SYNAPSE_SIZE_VX, nullable=True)
    # optional: only the soma-distance features need them
    ctr_pt_position_x: Optional[float] = pa.Field(nullable=True)  # noqa: UP045 - pandera reads Optional
    ctr_pt_position_y: Optional[float] = pa.Field(nullable=True)  # noqa: UP045
    ctr_pt_position_z: Optional[float] = pa.Field(nullable=True)  # noqa: UP045

    @pa.check("ctr_pt_position_x", "ctr_pt_position_y", "ctr_pt_position_z", name="finite")
    def finite(cls, data: PolarsData) -> pl.LazyFrame:
        return _finite(data)


class SynapseTagWire(_Annotation):
    """synapse_target_predictions_ssa: reference table on synapses (target_id = synapse id, one per synapse)."""

    target_id: int = pa.Field(unique=True)
    tag: str = pa.Field(isin=["spine", "shaft", "soma"])


class FunctionalAreaWire(_Annotation):
    """nucleus_functional_area_assignment: tag = area, value = distance to the area border (um)."""

    target_id: int
    tag: str = pa.Field(isin=["V1", "AL", "RL", "LM"])
    value: float = pa.Field(nullable=True, ge=0)

    @pa.check("value", name="finite")
    def finite(cls, data: PolarsData) -> pl.LazyFrame:
        return _finite(data)


class CoregistrationWire(_Annotation):
    """coregistration_manual_v4 / coregistration_auto_*: NOT a reference table; joined by root id."""

    pt_root_id: int = pa.Field(ge=0)
    session: int
    scan_idx: int
    unit_id: int


class DigitalTwinWire(_Annotation):
    """digital_twin_properties_bcm_coreg_*: per scan unit, with the root id of the same version."""

    pt_root_id: int = pa.Field(ge=0)
    session: int
    scan_idx: int
    unit_id: int
    cc_abs: float = pa.Field(nullable=True)
    cc_max: float = pa.Field(nullable=True)
    cc_norm: float = pa.Field(nullable=True)
    OSI: float = pa.Field(nullable=True)
    DSI: float = pa.Field(nullable=True)
    gOSI: float = pa.Field(nullable=True)
    gDSI: float = pa.Field(nullable=True)
    pref_ori: float = pa.Field(nullable=True, ge=0, le=360)
    pref_dir: float = pa.Field(nullable=True, ge=0, le=360)

    @pa.check("cc_abs", "cc_max", "cc_norm", "OSI", "DSI", "gOSI", "gDSI", name="finite")
    def finite(cls, data: PolarsData) -> pl.LazyFrame:
        return _finite(data)


class ProofreadingWire(_Annotation):
    """proofreading_status_and_strategy: valid_id = root id when assessed; pt_root_id = now."""

    valid_id: int
    pt_root_id: int = pa.Field(ge=0)
    status_dendrite: bool = pa.Field(nullable=True)
    status_axon: bool = pa.Field(nullable=True)
    strategy_dendrite: str = pa.Field(nullable=True)
    strategy_axon: str = pa.Field(nullable=True)


WIRE_MODELS: dict[str, type[_Wire]] = {
    "nucleus": NucleusWire,
    "cell_type": CellTypeWire,
    "synapse": SynapseWire,
    "synapse_tag": SynapseTagWire,
    "functional_area": FunctionalAreaWire,
    "coregistration": CoregistrationWire,
    "digital_twin": DigitalTwinWire,
    "proofreading": ProofreadingWire,
}
