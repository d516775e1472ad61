"""CAVE wire format -> canonical columns.

Two layers, both lazy:
1. `coerce_wire` makes every source speak one *wire* dialect: positions split into `<prefix>_x/_y/_z`
   Float64 (whatever the file had: split columns, a list column, or a numpy-style "[x y z]" string),
   booleans as `pl.Boolean` (servers send 't'/'f' or bools), ids as Int64, `created` as UTC datetimes.
   Units are NOT changed here: positions stay in the source's resolution.
2. `canonical_*` functions rename to the canonical vocabulary of DESIGN §3 and convert positions to nm
   once, using the resolution the source declares.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import polars as pl

from cellfeatures.errors import SourceError

AXES = ("x", "y", "z")
_INT_COLUMNS = re.compile(r"^(id|target_id|valid_id|session|scan_idx|unit_id|field|size|.*_root_id|.*_supervoxel_id)$")
_BOOL_COLUMNS = re.compile(r"^(valid|status_dendrite|status_axon|is_watertight)$")
_TIME_COLUMNS = re.compile(r"^(created|deleted|created_ref)$")
_POSITION_SPLIT = re.compile(r"^(.*_position)_([xyz])$")
# Spellings of booleans accepted (compared lower-case): CAVE servers send 't'/'f' or true/false; exports
# from spreadsheets and pandas add 1/0, yes/no, y/n. Anything else is refused, never read as null:
# a null `valid` counts as valid, so "no" read as null would publish invalid rows.
_TRUE = ("t", "true", "1", "yes", "y")
_FALSE = ("f", "false", "0", "no", "n")
MAX_EXAMPLES = 5


def _examples(lf: pl.LazyFrame, bad: pl.Expr, name: str) -> tuple[int, list[Any]]:
    """How many rows match `bad`, and a few (row index, value) pairs to show the user."""
    rows = lf.with_row_index("_row").filter(bad)
    n = int(rows.select(pl.len()).collect().item())
    shown = rows.select("_row", name).head(MAX_EXAMPLES).collect().rows() if n else []
    return n, shown


def _refuse(table: str, name: str, what: str, n: int, shown: list[Any]) -> SourceError:
    rows = ", ".join(f"row {r}: {v!r}" for r, v in shown)
    return SourceError(f"table {table!r}, column {name!r}: {n} row(s) {what}, e.g. {rows}")


def _bool_expr(name: str, dtype: pl.DataType) -> pl.Expr:
    if dtype == pl.Boolean:
        return pl.col(name)
    if dtype == pl.String:
        text = pl.col(name).str.strip_chars().str.to_lowercase()
        return pl.when(text.is_in(_TRUE)).then(True).when(text.is_in(_FALSE)).then(False).otherwise(None).alias(name)
    if dtype.is_integer():
        return pl.when(pl.col(name) == 1).then(True).when(pl.col(name) == 0).then(False).otherwise(None).alias(name)
    return pl.col(name).cast(pl.Boolean)


def _check_bool(lf: pl.LazyFrame, name: str, dtype: pl.DataType, table: str) -> None:
    if dtype == pl.Boolean:
        return
    if dtype == pl.String:
        text = pl.col(name).str.strip_chars().str.to_lowercase()
        bad = pl.col(name).is_not_null() & ~text.is_in([*_TRUE, *_FALSE])
    elif dtype.is_integer():
        bad = pl.col(name).is_not_null() & ~pl.col(name).is_in([0, 1])
    else:
        bad = pl.col(name).is_not_null() & ~pl.col(name).cast(pl.Float64, strict=False).is_in([0.0, 1.0])
    n, shown = _examples(lf, bad, name)
    if n:
        raise _refuse(table, name, f"are not a boolean (accepted: {', '.join(_TRUE)} / {', '.join(_FALSE)})", n, shown)


def _check_int(lf: pl.LazyFrame, name: str, dtype: pl.DataType, table: str) -> None:
    """Integer columns: no NaN or fractional values (floats), no text (strings) — refused with rows, not nulled."""
    col = pl.col(name)
    if dtype.is_float():
        n, shown = _examples(lf, col.is_nan() | col.is_infinite(), name)
        if n:
            raise _refuse(
                table, name, "are NaN or infinite where integers belong (ids that went through float64?)", n, shown
            )
        n, shown = _examples(lf, col.is_not_null() & (col != col.floor()), name)
        if n:
            raise _refuse(table, name, "are fractional where integers belong", n, shown)
    elif dtype == pl.String:
        n, shown = _examples(lf, col.is_not_null() & col.str.strip_chars().cast(pl.Int64, strict=False).is_null(), name)
        if n:
            raise _refuse(table, name, "are not integers", n, shown)
    elif not dtype.is_integer() and dtype != pl.Null:
        raise SourceError(f"table {table!r}, column {name!r}: dtype {dtype} where integers belong")


def _time_expr(name: str, dtype: pl.DataType) -> pl.Expr:
    if isinstance(dtype, pl.Datetime):
        expr = pl.col(name)
        if dtype.time_zone is None:
            expr = expr.dt.replace_time_zone("UTC")
        return expr.dt.convert_time_zone("UTC").dt.cast_time_unit("us")
    if dtype == pl.String:
        return pl.col(name).str.to_datetime(time_unit="us", time_zone="UTC", strict=False)
    # all-null columns read from CSV arrive as String or Null
    return pl.col(name).cast(pl.Datetime("us", "UTC"))


def _vector(name: str, dtype: pl.DataType) -> pl.Expr | None:
    if isinstance(dtype, pl.List | pl.Array):
        return pl.col(name).cast(pl.List(pl.Float64))
    if dtype == pl.String:
        return (
            pl.col(name)
            .str.strip_chars("[]() ")
            .str.replace_all(r"[,\s]+", " ")
            .str.split(" ")
            .cast(pl.List(pl.Float64), strict=False)
        )
    return None


def _split_position(name: str, dtype: pl.DataType) -> list[pl.Expr]:
    """A 3-vector column (list/array or '[x y z]' / '[x, y, z]' string) -> three Float64 columns."""
    values = _vector(name, dtype)
    if values is None:
        return []
    return [values.list.get(i, null_on_oob=True).alias(f"{name}_{axis}") for i, axis in enumerate(AXES)]


def _check_vector(lf: pl.LazyFrame, name: str, dtype: pl.DataType, table: str) -> None:
    """A position that is present must have three numeric components: '[1 2]' or 'abc' are refused."""
    values = _vector(name, dtype)
    if values is None:
        return
    parsed = values.list.eval(pl.element().is_not_null()).list.all() & (values.list.len() == 3)
    bad = pl.col(name).is_not_null() & ~parsed.fill_null(False)
    n, shown = _examples(lf, bad, name)
    if n:
        raise _refuse(table, name, "are not three numbers [x y z]", n, shown)


FLOAT64_EXACT_INT = 2**53


def _refuse_lossy_ids(lf: pl.LazyFrame, name: str, table: str) -> None:
    """Root and supervoxel ids (~8.6e17) do not survive float64: refuse them rather than cast garbage."""
    largest = lf.select(pl.col(name).abs().max()).collect().item()
    if largest is not None and largest >= FLOAT64_EXACT_INT:
        raise SourceError(
            f"table {table!r}, column {name!r}: ids stored as floating point (max {largest:.0f}) have lost "
            f"precision above 2**53 and cannot be trusted. Re-export the table with integer ids "
            f"(pandas turns integer columns with missing values into float64; use the Int64 dtype)."
        )


def coerce_wire(lf: pl.LazyFrame, table: str) -> pl.LazyFrame:
    """Bring one raw table (any file flavour) to the common wire dialect described in the module doc."""
    schema = lf.collect_schema()
    drop = [c for c in schema if c in ("", "Unnamed: 0", "__index_level_0__")]
    exprs: list[pl.Expr] = []
    split: list[str] = []
    for name, dtype in schema.items():
        if name in drop:
            continue
        is_vector = isinstance(dtype, pl.List | pl.Array) or dtype == pl.String
        if name.endswith("_position") and not _POSITION_SPLIT.match(name) and is_vector:
            split.append(name)
            continue
        if _BOOL_COLUMNS.match(name):
            _check_bool(lf, name, dtype, table)
            exprs.append(_bool_expr(name, dtype))
        elif _TIME_COLUMNS.match(name):
            exprs.append(_time_expr(name, dtype))
        elif _POSITION_SPLIT.match(name) or name == "superceded_id":
            if dtype == pl.String:
                col = pl.col(name).str.strip_chars()
                n, shown = _examples(lf, col.is_not_null() & col.cast(pl.Float64, strict=False).is_null(), name)
                if n:
                    raise _refuse(table, name, "are not numbers", n, shown)
                exprs.append(col.cast(pl.Float64, strict=False))
            else:
                exprs.append(pl.col(name).cast(pl.Float64))
        elif _INT_COLUMNS.match(name) and dtype != pl.Int64:
            _check_int(lf, name, dtype, table)
            if dtype.is_float():
                _refuse_lossy_ids(lf, name, table)
                exprs.append(pl.col(name).cast(pl.Int64, strict=True))
            elif dtype == pl.String:
                exprs.append(pl.col(name).str.strip_chars().cast(pl.Int64, strict=False))
            else:
                exprs.append(pl.col(name).cast(pl.Int64, strict=False))
        elif dtype == pl.Null:
            exprs.append(pl.col(name).cast(pl.String))
        else:
            exprs.append(pl.col(name))
    for name in split:
        _check_vector(lf, name, schema[name], table)
        exprs.extend(_split_position(name, schema[name]))
    try:
        return lf.select(exprs)
    except pl.exceptions.PolarsError as exc:  # pragma: no cover - surfaced at collect time mostly
        raise SourceError(f"table {table!r}: cannot coerce to CAVE wire format: {exc}") from exc


def positions_nm(prefix: str, resolution_nm: Sequence[float], out: str = "pos") -> list[pl.Expr]:
    """Expressions turning `<prefix>_x/_y/_z` in source units into `<out>_x_nm/...` float64 nanometres."""
    return [
        (pl.col(f"{prefix}_{axis}").cast(pl.Float64) * float(res)).alias(f"{out}_{axis}_nm")
        for axis, res in zip(AXES, resolution_nm, strict=True)
    ]


# ---------------------------------------------------------------- canonical forms (DESIGN §3)


def canonical_nucleus(lf: pl.LazyFrame, resolution_nm: Sequence[float]) -> pl.LazyFrame:
    """nucleus_detection_v0 -> nucleus_id, root_id, pos_*_nm, volume_um3 (valid rows only)."""
    return lf.filter(pl.col("valid").fill_null(True)).select(
        pl.col("id").alias("nucleus_id"),
        pl.col("pt_root_id").fill_null(0).alias("root_id"),
        *positions_nm("pt_position", resolution_nm),
        pl.col("volume").cast(pl.Float64).alias("volume_um3"),
    )


def canonical_cell_types(lf: pl.LazyFrame) -> pl.LazyFrame:
    """A cell-type reference table -> nucleus_id, root_id, classification_system, cell_type."""
    schema = lf.collect_schema()
    system = pl.col("classification_system") if "classification_system" in schema else pl.lit(None, pl.String)
    return lf.filter(pl.col("valid").fill_null(True)).select(
        pl.col("target_id").alias("nucleus_id"),
        pl.col("pt_root_id").fill_null(0).alias("root_id") if "pt_root_id" in schema else pl.lit(0).alias("root_id"),
        system.alias("classification_system"),
        pl.col("cell_type").cast(pl.String),
    )


def canonical_synapses(lf: pl.LazyFrame, resolution_nm: Sequence[float], positions: bool = True) -> pl.LazyFrame:
    """synapses_pni_2 -> synapse_id, pre_root_id, post_root_id, size_vx (+ ctr_*_nm) for valid rows.

    positions=False reads no position column at all (a table fetched without them is fine then).
    """
    schema = lf.collect_schema()
    keep = pl.col("valid").fill_null(True) if "valid" in schema else pl.lit(True)
    if positions and "ctr_pt_position_x" not in schema:
        raise SourceError(
            "the synapse table has no ctr_pt_position_* columns: set soma_distance = false "
            "in [features.synapses], or fetch the table with positions"
        )
    return lf.filter(keep).select(
        pl.col("id").alias("synapse_id"),
        pl.col("pre_pt_root_id").alias("pre_root_id"),
        pl.col("post_pt_root_id").alias("post_root_id"),
        pl.col("size").alias("size_vx"),
        *(positions_nm("ctr_pt_position", resolution_nm, out="ctr") if positions else []),
    )


TAG_CODES = {"spine": 1, "shaft": 2, "soma": 3}  # one byte per synapse instead of a string
NO_TAG, UNKNOWN_TAG = 0, 255


def canonical_synapse_tags(lf: pl.LazyFrame) -> pl.LazyFrame:
    """synapse_target_predictions_ssa -> synapse_id, tag_code (valid rows only).

    tag_code (UInt8): 1 spine, 2 shaft, 3 soma, 0 for a row without a tag, 255 for any other spelling (the
    caller refuses those, naming the rows). Three string comparisons decode faster than a cast to an Enum
    (measured 0.094 s against 0.127 s for 8.5M tags, the read included).
    """
    schema = lf.collect_schema()
    keep = pl.col("valid").fill_null(True) if "valid" in schema else pl.lit(True)
    tag = pl.col("tag").cast(pl.String)
    code = (
        pl.when(tag == "spine")
        .then(TAG_CODES["spine"])
        .when(tag == "shaft")
        .then(TAG_CODES["shaft"])
        .when(tag == "soma")
        .then(TAG_CODES["soma"])
        .when(tag.is_null())
        .then(NO_TAG)
        .otherwise(UNKNOWN_TAG)
    )
    return lf.filter(keep).select(pl.col("target_id").alias("synapse_id"), code.cast(pl.UInt8).alias("tag_code"))
