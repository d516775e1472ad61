"""The layout and format of the MICrONS static exports, in one place.

Every materialization version's tables are published as files (anonymous HTTPS, no token):

    <base_url>/v<N>/<table>_merged.csv.gz + <table>_merged_header.csv      annotation tables
    <base_url>/v<N>/synapses_pni_2_v1_filtered_view.csv.gz + ..._header.csv the synapse table (~20 GB)

The data file is gzip CSV *without a header row*; the sidecar holds one `column,type` line per column in
file order, with Postgres type names. Column order differs between tables and versions, so the sidecar
is the only truth about a file: types are never inferred from the data.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from cellfeatures.errors import SourceError

DEFAULT_BASE_URL = "https://storage.googleapis.com/mat_dbs/public/minnie65_phase3_v1"
DEFAULT_DATASTACK = "minnie65_public"
# Tables whose export is not `<table>_merged`: the synapse table is exported as a filtered view.
EXPORT_STEMS = {"synapses_pni_2": "synapses_pni_2_v1_filtered_view"}

# Postgres type name (lower case, modifiers such as (255) removed) -> how the column is parsed.
# Booleans and timestamps are read as text and converted afterwards (t/f, several timestamp spellings).
_TYPES: dict[str, str] = {
    **dict.fromkeys(("bigint", "int8", "bigserial", "integer", "int", "int4", "serial", "smallint", "int2"), "int"),
    **dict.fromkeys(("double precision", "float8", "numeric", "decimal"), "float64"),
    **dict.fromkeys(("real", "float4"), "float32"),
    **dict.fromkeys(("boolean", "bool"), "bool"),
    **dict.fromkeys(("timestamp without time zone", "timestamp"), "timestamp"),
    **dict.fromkeys(("timestamp with time zone", "timestamptz"), "timestamptz"),
    "date": "date",
    **dict.fromkeys(("character varying", "varchar", "text", "character", "char", "uuid", "json", "jsonb"), "text"),
}
READ_DTYPES: dict[str, pl.DataType] = {
    "int": pl.Int64(),
    "float64": pl.Float64(),
    "float32": pl.Float32(),
    "bool": pl.String(),
    "timestamp": pl.String(),
    "timestamptz": pl.String(),
    "date": pl.String(),
    "text": pl.String(),
}
_MODIFIER = re.compile(r"\([^)]*\)")
_SIDECAR_TITLES = {"column", "column_name", "name", "attname"}


@dataclass(frozen=True)
class ExportColumn:
    """One column of an export: its name, its Postgres type as written, and how it is parsed."""

    name: str
    pg_type: str
    kind: str  # a value of _TYPES

    @property
    def read_dtype(self) -> pl.DataType:
        return READ_DTYPES[self.kind]


def export_stem(table: str, stems: dict[str, str] | None = None) -> str:
    """The file stem a table is exported under (`<table>_merged` unless the layout says otherwise)."""
    return {**EXPORT_STEMS, **(stems or {})}.get(table, f"{table}_merged")


def export_file_names(table: str, stems: dict[str, str] | None = None) -> tuple[str, str]:
    """(data file, sidecar file) of a table."""
    stem = export_stem(table, stems)
    return f"{stem}.csv.gz", f"{stem}_header.csv"


def _type_kind(pg_type: str) -> str | None:
    name = " ".join(_MODIFIER.sub("", pg_type).strip().strip('"').lower().split())
    return _TYPES.get(name)


def parse_sidecar(text: str, table: str, where: str) -> list[ExportColumn]:
    """The columns a sidecar declares, in file order; an unknown type or a malformed line names both."""
    columns: list[ExportColumn] = []
    rows = [r for r in csv.reader(io.StringIO(text)) if r and any(c.strip() for c in r)]
    for i, row in enumerate(rows, start=1):
        if len(row) != 2:
            raise SourceError(f"table {table!r}: sidecar {where} line {i}: expected `column,type`, got {row!r}")
        name, pg_type = row[0].strip(), row[1].strip()
        kind = _type_kind(pg_type)
        if kind is None and i == 1 and name.lower() in _SIDECAR_TITLES:
            continue  # a title line (`column,type`) is allowed
        if kind is None:
            known = ", ".join(sorted({k for k in _TYPES if " " in k or k in ("bigint", "integer", "boolean", "real")}))
            raise SourceError(
                f"table {table!r}: sidecar {where} line {i}: column {name!r} has the type {pg_type!r}, which "
                f"cellfeatures does not know how to read (known: {known}, ...)"
            )
        if not name:
            raise SourceError(f"table {table!r}: sidecar {where} line {i}: empty column name")
        columns.append(ExportColumn(name, pg_type, kind))
    if not columns:
        raise SourceError(f"table {table!r}: sidecar {where} declares no columns")
    dupes = sorted({c.name for c in columns if [d.name for d in columns].count(c.name) > 1})
    if dupes:
        raise SourceError(f"table {table!r}: sidecar {where} declares {dupes} more than once")
    return columns


# --- writing exports (tests and benchmarks make files in exactly the published format) -------------------

_PG_NAMES = {
    pl.Int64: "bigint",
    pl.Int32: "integer",
    pl.Int16: "smallint",
    pl.UInt32: "bigint",
    pl.Float64: "double precision",
    pl.Float32: "real",
    pl.Boolean: "boolean",
    pl.String: "character varying",
    pl.Datetime: "timestamp without time zone",
    pl.Date: "date",
}


def pg_type_of(dtype: pl.DataType) -> str:
    for base, name in _PG_NAMES.items():
        if dtype == base or (base == pl.Datetime and isinstance(dtype, pl.Datetime)):
            return name
    raise ValueError(f"no Postgres type for {dtype}")


def export_text(frame: pl.DataFrame) -> pl.DataFrame:
    """A frame as Postgres' COPY writes it: booleans t/f, timestamps without a zone, nulls empty."""
    out = []
    for name, dtype in frame.schema.items():
        col = pl.col(name)
        if dtype == pl.Boolean:
            out.append(pl.when(col).then(pl.lit("t")).when(~col).then(pl.lit("f")).alias(name))
        elif isinstance(dtype, pl.Datetime):
            naive = col.dt.convert_time_zone("UTC").dt.replace_time_zone(None) if dtype.time_zone else col
            out.append(naive.dt.strftime("%Y-%m-%d %H:%M:%S%.f").alias(name))
        else:
            out.append(col)
    return frame.select(out)


def write_export(
    frame: pl.DataFrame,
    folder: Path,
    table: str,
    *,
    columns: Sequence[str] | None = None,
    stems: dict[str, str] | None = None,
    level: int = 6,
) -> tuple[Path, Path]:
    """Write `frame` as a static export (sidecar + headerless gzip CSV), columns in the given order."""
    frame = frame.select(list(columns)) if columns is not None else frame
    data_name, header_name = export_file_names(table, stems)
    folder.mkdir(parents=True, exist_ok=True)
    sidecar = "".join(f"{name},{pg_type_of(dtype)}\n" for name, dtype in frame.schema.items())
    (folder / header_name).write_text(sidecar)
    text = export_text(frame).write_csv(include_header=False, null_value="")
    with gzip.open(folder / data_name, "wb", compresslevel=level) as fh:
        fh.write(text.encode())
    return folder / data_name, folder / header_name
