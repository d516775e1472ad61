"""Run a pandera model on collected data and turn failures into one readable error.

The message names the table, then for each failing column and check: how many rows fail, a few failure
values, and the offending rows themselves (so a user can find them in their file).
"""

from __future__ import annotations

from typing import Any

import pandera.polars as pa
import polars as pl

from cellfeatures.errors import SchemaError

MAX_ROWS_SHOWN = 5


def _format_failures(df: pl.DataFrame, cases: pl.DataFrame) -> str:
    lines: list[str] = []
    for (column, check), group in cases.group_by(["column", "check"], maintain_order=True):
        rows = group["index"].drop_nulls().unique(maintain_order=True)
        values = group["failure_case"].head(MAX_ROWS_SHOWN).to_list()
        what = f"column {column!r}" if column in df.columns else f"{column!r}"
        if check == "column_in_dataframe":
            lines.append(f"- missing column {group['failure_case'][0]!r} (required by {column})")
            continue
        if str(check).startswith("dtype("):
            got = df.schema.get(str(column))
            lines.append(f"- {what}: wrong dtype {got}, expected {str(check)[6:-1]}")
            continue
        lines.append(f"- {what} fails {check}: {len(rows) or len(group)} row(s); values {values}")
        if len(rows) and column in df.columns:
            idx = rows.head(MAX_ROWS_SHOWN).cast(pl.Int64)
            shown = df.with_row_index("row").filter(pl.col("row").is_in(idx.to_list()))
            lines.append("  offending rows:\n" + "\n".join("    " + line for line in str(shown).splitlines()))
    return "\n".join(lines)


def _required_columns(schema: Any) -> list[str]:
    resolved = schema.to_schema() if hasattr(schema, "to_schema") else schema
    return [name for name, column in resolved.columns.items() if getattr(column, "required", True)]


def validate(df: pl.DataFrame, schema: Any, table: str) -> pl.DataFrame:
    """Validate collected data against a DataFrameModel class or DataFrameSchema; raise SchemaError."""
    # pandera's polars backend fails with a bare ColumnNotFoundError when coercing a missing column,
    # so missing columns are reported here first, all of them at once.
    missing = [c for c in _required_columns(schema) if c not in df.columns]
    if missing:
        raise SchemaError(
            table,
            "\n".join(f"- missing column {c!r}" for c in missing) + f"\n  (columns present: {', '.join(df.columns)})",
        )
    try:
        validated: pl.DataFrame = schema.validate(df, lazy=True)
    except pa.errors.SchemaErrors as exc:
        raise SchemaError(table, _format_failures(df, exc.failure_cases)) from None
    except pa.errors.SchemaError as exc:  # pragma: no cover - lazy=True reports SchemaErrors
        raise SchemaError(table, str(exc)) from None
    return validated
