"""External feature tables: any table keyed by nucleus id joins in as its own family.

Declared in config, one block per table:

    [features.external.somanuc]
    table = "soma_nuc_features_v117"     # a table of the source, or `path = "file.parquet"`
    key = "nucleus_id"
    [features.external.somanuc.columns]  # source column = unit; output = <prefix>_<column>_<unit>
    nucleus_volume = "um3"
    [features.external.somanuc.caveats]  # optional: what a modeller must know (dataset cards list it)
    nucleus_volume = "..."

Output columns are `<prefix>_<column>_<unit>` (prefix defaults to the block name), so every name says its
unit; an empty unit ("") leaves the name as is, for columns whose name already says their kind.
A file given by `path` is not a source table, so say where its values come from: `origin = "real"`
(the default), "derived" or "synthetic".
A key that appears twice is an error naming the table and the keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from cellfeatures.errors import ConfigError, SchemaError
from cellfeatures.pipelines.base import BuildContext, FeatureSpec, with_family
from cellfeatures.sources.normalize import coerce_wire
from cellfeatures.sources.snapshot import read_table_file

FAMILY = "external"
_DTYPES = {
    pl.Float64: "Float64",
    pl.Float32: "Float64",
    pl.Int64: "Int64",
    pl.Int32: "Int64",
    pl.UInt32: "Int64",
    pl.Boolean: "Boolean",
    pl.String: "String",
}


def _blocks(cfg: dict[str, Any]) -> dict[str, dict[str, Any]]:
    for name, block in cfg.items():
        if not isinstance(block, dict) or not isinstance(block.get("columns"), dict) or not block["columns"]:
            raise ConfigError(f"[features.external.{name}] needs a non-empty [columns] table (column = unit)")
        if not block.get("table") and not block.get("path"):
            raise ConfigError(f"[features.external.{name}] needs `table` or `path`")
    return cfg


def output_name(block_name: str, block: dict[str, Any], column: str, unit: str) -> str:
    prefix = block.get("prefix", block_name)
    return f"{prefix}_{column}_{unit}" if unit else f"{prefix}_{column}"


def features(cfg: dict[str, Any], dtypes: dict[str, dict[str, str]] | None = None) -> list[FeatureSpec]:
    specs = []
    for name, block in _blocks(cfg).items():
        for column, unit in block["columns"].items():
            dtype = (dtypes or {}).get(name, {}).get(column, "Float64")
            specs.append(
                FeatureSpec(
                    output_name(name, block, column, unit),
                    dtype,
                    unit or "unspecified",
                    block.get("descriptions", {}).get(column)
                    or f"{column} from external table {block.get('table') or block.get('path')}",
                    inputs=(str(block.get("table") or block.get("path")),),
                    origin=None if block.get("table") else block.get("origin", "real"),
                    caveat=block.get("caveats", {}).get(column, ""),
                )
            )
    return with_family(specs, FAMILY)


def inputs(cfg: dict[str, Any]) -> list[str]:
    return [b["table"] for b in _blocks(cfg).values() if b.get("table")]


def _scan(ctx: BuildContext, block: dict[str, Any]) -> tuple[str, pl.LazyFrame]:
    if block.get("table"):
        return block["table"], ctx.scan(block["table"])
    path = Path(block["path"])
    if not path.exists():
        raise ConfigError(f"external feature file {path} does not exist")
    return str(path), coerce_wire(read_table_file(path), str(path))


# What a declared unit implies about the values (a rule per family of units; anything else: finite numbers).
COUNT_UNITS = {"count", "n"}
FRACTION_UNITS = {"fraction", "frac"}
VOLUME_UNITS = {"um3", "nm3", "mm3", "vx"}  # positive
AREA_UNITS = {"um2", "nm2", "mm2"}  # non-negative (a nucleus without folds has a fold area of 0)
NUMERIC_KINDS = ("Float64", "Int64")


def implied_dtype(unit: str, source_dtype: str) -> str:
    """The catalogue dtype a unit implies: counts are integers, other units numbers; "" keeps the source's."""
    if unit in COUNT_UNITS:
        return "Int64"
    if unit and source_dtype not in NUMERIC_KINDS:
        return "Float64"
    return source_dtype


def check_values(frame: pl.DataFrame, table: str, column: str, unit: str, dtype: str) -> None:
    """Refuse values the declared unit rules out, naming nuclei: text in a numeric column, a negative or
    fractional count, a fraction outside [0, 1], a non-positive volume, a negative area, an infinity.
    NaN is how pandas writes "missing": it is read as null (not measured), never refused."""
    values = frame.get_column(column)
    if values.dtype == pl.String and (unit or dtype != "String"):
        text = values.filter(values.is_not_null() & values.cast(pl.Float64, strict=False).is_null())
        if text.len():
            raise SchemaError(
                table,
                f"- column {column!r} (unit {unit or 'none'}): {text.len()} value(s) are not numbers, e.g. "
                f"{text.unique().head(5).to_list()}; a text cell turns a numeric feature into text",
            )
        values = values.cast(pl.Float64)
    if values.dtype == pl.String or values.dtype == pl.Boolean:
        # a text column with no unit (categories), or flags
        mixed = values.cast(pl.Float64, strict=False) if values.dtype == pl.String else None
        if mixed is not None and 0 < mixed.is_not_null().sum() < values.is_not_null().sum():
            shown = values.filter(values.is_not_null() & mixed.is_null()).unique().head(5).to_list()
            raise SchemaError(table, f"- column {column!r} mixes numbers and text, e.g. {shown}: declare a unit")
        return
    number = values.cast(pl.Float64).fill_nan(None)
    rules: list[tuple[pl.Series, str]] = [(number.is_infinite(), "infinite (use null for 'not measured')")]
    if unit in COUNT_UNITS:
        rules.append(((number < 0) | (number % 1 != 0), "not a count (a non-negative integer)"))
    elif unit in FRACTION_UNITS:
        rules.append(((number < 0) | (number > 1), "outside [0, 1] for a fraction"))
    elif unit in VOLUME_UNITS:
        rules.append((number <= 0, f"not positive for a volume in {unit}"))
    elif unit in AREA_UNITS:
        rules.append((number < 0, f"negative for an area in {unit}"))
    for bad, what in rules:
        bad = bad.fill_null(False)
        if bad.any():
            shown = frame.filter(bad).select("nucleus_id", column).head(5).rows()
            raise SchemaError(
                table,
                f"- column {column!r} (unit {unit or 'none'}): {int(bad.sum())} value(s) {what}, e.g. "
                + ", ".join(f"nucleus {n}: {v!r}" for n, v in shown),
            )


def _nan_to_null(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    return expr.fill_nan(None) if dtype.is_float() else expr


def column_dtypes(ctx: BuildContext, cfg: dict[str, Any]) -> dict[str, dict[str, str]]:
    """The catalogue dtype of each declared column, from the table's schema."""
    out: dict[str, dict[str, str]] = {}
    for name, block in _blocks(cfg).items():
        table, lf = _scan(ctx, block)
        schema = lf.collect_schema()
        out[name] = {}
        for column in block["columns"]:
            if column not in schema:
                raise ConfigError(f"external table {table!r} has no column {column!r} (has: {', '.join(schema)})")
            dtype = _DTYPES.get(schema[column])  # type: ignore[call-overload]
            if dtype is None:
                raise ConfigError(f"external table {table!r} column {column!r}: unsupported dtype {schema[column]}")
            out[name][column] = implied_dtype(block["columns"][column], dtype)
    return out


def build(ctx: BuildContext, cfg: dict[str, Any]) -> pl.LazyFrame:
    dtypes = column_dtypes(ctx, cfg)
    out = ctx.identity.select("nucleus_id").lazy()
    for name, block in _blocks(cfg).items():
        table, lf = _scan(ctx, block)
        key = block.get("key", "nucleus_id")
        if key not in lf.collect_schema():
            raise ConfigError(f"external table {table!r} has no key column {key!r}")
        raw = lf.select(pl.col(key).cast(pl.Int64).alias("nucleus_id"), *block["columns"]).collect()
        for column, unit in block["columns"].items():
            check_values(raw, table, column, unit, dtypes[name][column])
        frame = raw.select(
            "nucleus_id",
            *[
                _nan_to_null(pl.col(c), raw.schema[c])
                .cast(getattr(pl, dtypes[name][c]))
                .alias(output_name(name, block, c, u))
                for c, u in block["columns"].items()
            ],
        )
        nulls = frame.filter(pl.col("nucleus_id").is_null()).height
        if nulls:
            raise SchemaError(table, f"- key column {key!r} has {nulls} null key(s)")
        dupes = frame.filter(pl.col("nucleus_id").is_duplicated())["nucleus_id"].unique().sort()
        if dupes.len():
            raise SchemaError(
                table,
                f"- key column {key!r} is not unique: {dupes.len()} duplicated keys, e.g. {dupes.head(5).to_list()}",
            )
        out = out.join(frame.lazy(), on="nucleus_id", how="left")
    return out
