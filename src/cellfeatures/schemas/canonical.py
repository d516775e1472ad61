"""pandera models of the canonical tables (DESIGN §3) and of the published feature matrix."""

from __future__ import annotations

from typing import Any

import pandera.polars as pa
import polars as pl


class _Canonical(pa.DataFrameModel):
    class Config:
        strict = False
        coerce = True


class NucleusCanonical(_Canonical):
    nucleus_id: int = pa.Field(unique=True)
    root_id: int = pa.Field(ge=0)
    pos_x_nm: float
    pos_y_nm: float
    pos_z_nm: float
    volume_um3: float = pa.Field(nullable=True, ge=0)


class CellTypeCanonical(_Canonical):
    nucleus_id: int
    root_id: int = pa.Field(ge=0)
    cell_type: str = pa.Field(nullable=True)


class SynapseCanonical(_Canonical):
    synapse_id: int = pa.Field(unique=True)
    pre_root_id: int = pa.Field(ge=0)
    post_root_id: int = pa.Field(ge=0)
    size_vx: int = pa.Field(nullable=True, ge=0)


class SynapseTagCanonical(_Canonical):
    synapse_id: int = pa.Field(unique=True)
    tag: str = pa.Field(isin=["spine", "shaft", "soma"])


_PANDERA_DTYPES: dict[str, Any] = {
    "Int64": pl.Int64,
    "Int32": pl.Int32,
    "UInt32": pl.UInt32,
    "Float64": pl.Float64,
    "Float32": pl.Float32,
    "Boolean": pl.Boolean,
    "String": pl.String,
}


def feature_matrix_schema(columns: dict[str, str]) -> pa.DataFrameSchema:
    """Schema of a feature matrix: unique nucleus_id, then every catalogued column with its dtype.

    `columns` maps column name -> polars dtype name ("Float64", "Int64", "Boolean", "String").
    Strict: an uncatalogued column is an error, so every published column is documented.
    """
    cols: dict[str, pa.Column] = {
        "nucleus_id": pa.Column(pl.Int64, unique=True, nullable=False),
        "root_id": pa.Column(pl.Int64, nullable=False, checks=pa.Check.ge(0)),
    }
    for name, dtype in columns.items():
        if name in cols:
            continue
        checks = []
        if dtype in ("Float64", "Float32"):
            checks.append(
                pa.Check(
                    lambda data: data.lazyframe.select(pl.col(data.key).is_nan().not_()),
                    name="not_nan",
                    element_wise=False,
                )
            )
        cols[name] = pa.Column(_PANDERA_DTYPES[dtype], nullable=True, checks=checks)
    return pa.DataFrameSchema(cols, strict=True, coerce=False, name="feature_matrix")
