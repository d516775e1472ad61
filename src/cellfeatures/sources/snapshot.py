"""A local snapshot: one or more directories of per-table files.

A table named T is any of `T.parquet`, `T.feather`, `T.arrow`, `T.ipc`, `T.csv`, `T.csv.gz`, or a folder
`T/` of such part files (a partitioned table, or parts of different origins). Several roots may hold parts
of the same table; they are concatenated. Any subset of tables is fine: a pipeline that needs a missing
table says which one.

An optional `manifest.json` in a root declares datastack, materialization_version, timestamp,
position_resolution_nm and per-table provenance (origin, kind, source, parts); `cellfeatures fetch` writes one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from cellfeatures._util.checksums import cached_sha256
from cellfeatures.errors import SourceError, TableNotFoundError, one_line
from cellfeatures.sources.base import Source, TableInfo, TablePart, least_real
from cellfeatures.sources.normalize import coerce_wire

SUFFIXES = (".csv.gz", ".parquet", ".feather", ".arrow", ".ipc", ".csv")


def _table_name(path: Path) -> str | None:
    for suffix in SUFFIXES:
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)]
    return None


_MAGIC = {b"PAR1": "Parquet", b"ARROW1": "Arrow IPC (Feather)", b"\x1f\x8b": "gzip"}


def _content_kind(path: Path) -> str | None:
    with path.open("rb") as fh:
        head = fh.read(6)
    return next((kind for magic, kind in _MAGIC.items() if head.startswith(magic)), None)


def check_table_file(path: Path) -> None:
    """A file's bytes must match its name: empty, truncated or misnamed files are refused by name."""
    size = path.stat().st_size
    if size == 0:
        raise SourceError(f"{path}: the file is empty (0 bytes): a failed copy or download? Fetch or export it again")
    kind = _content_kind(path)
    name = path.name
    expected = (
        "Parquet"
        if name.endswith(".parquet")
        else "gzip"
        if name.endswith(".csv.gz")
        else "Arrow IPC (Feather)"
        if name.endswith((".feather", ".arrow", ".ipc"))
        else None
    )
    if expected and kind != expected:
        raise SourceError(
            f"{path}: named like {expected} but its bytes are {kind or 'not ' + expected} (renamed by mistake?)"
        )
    if expected is None and kind is not None:  # .csv holding a binary format
        raise SourceError(f"{path}: named .csv but its bytes are {kind} (renamed by mistake?)")
    if expected == "Parquet":
        with path.open("rb") as fh:
            fh.seek(-4, os.SEEK_END)
            if fh.read(4) != b"PAR1":
                raise SourceError(f"{path}: truncated Parquet file (no footer): the copy or download was cut short")


def read_table_file(path: Path) -> pl.LazyFrame:
    """Lazily read one table file of any supported flavour (no dialect coercion).

    CSV files are read eagerly (see read_csv_table).
    """
    name = path.name
    try:
        check_table_file(path)
        if name.endswith(".parquet"):
            pq.read_metadata(path)  # a corrupt footer fails here, naming the file
            return pl.scan_parquet(path)
        if name.endswith((".feather", ".arrow", ".ipc")):
            lf = pl.scan_ipc(path)
            lf.collect_schema()
            return lf
        if name.endswith((".csv", ".csv.gz")):
            return read_csv_table(path).lazy()
    except (OSError, pl.exceptions.PolarsError, ValueError) as exc:
        if isinstance(exc, SourceError):
            raise
        raise SourceError(f"cannot read {path}: {one_line(exc)}") from None
    raise SourceError(f"{path}: unsupported file type (expected one of {', '.join(SUFFIXES)})")


_CSV_CACHE: dict[tuple[str, int, int], pl.DataFrame] = {}
CSV_CACHE_MAX_BYTES = 64 * 2**20  # file size up to which a parsed CSV table is kept for reuse


def read_csv_table(path: Path) -> pl.DataFrame:
    """A .csv or .csv.gz table, parsed strictly (a ragged row is an error) and memoised for small files.

    Why eager: scan_csv cannot stream gzip, and a parse error must name the file now, not surface as an
    engine error deep inside a build. Why memoised on (path, size, mtime): a build scans a table several
    times (schema lookups by the store and by its family, then the data); each scan parsed the whole file
    again. Large files are not kept in memory.
    """
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key in _CSV_CACHE:
        return _CSV_CACHE[key]
    frame = pl.read_csv(path, infer_schema_length=10_000)
    if stat.st_size <= CSV_CACHE_MAX_BYTES:
        _CSV_CACHE[key] = frame
    return frame


def count_rows(path: Path) -> int:
    try:
        return int(read_table_file(path).select(pl.len()).collect().item())
    except pl.exceptions.PolarsError as exc:
        raise SourceError(f"cannot read {path}: {one_line(exc)}") from None


def _part_name(path: Path, table: str) -> str:
    """A table file as its manifest names it: `T.parquet`, or `T/<part>` inside a partitioned table's folder."""
    return f"{table}/{path.name}" if path.parent.name == table else path.name


def _one_subset(table: str, subset: set[str]) -> str | None:
    if len(subset) > 1:
        raise SourceError(f"table {table!r}: its parts were fetched for the cells of different tables {sorted(subset)}")
    return next(iter(subset), None)


class SnapshotSource(Source):
    """Tables from local files (see module doc)."""

    def __init__(
        self,
        *roots: str | os.PathLike[str],
        datastack: str | None = None,
        materialization_version: int | None = None,
        timestamp: str | None = None,
        position_resolution_nm: tuple[float, float, float] | None = None,
    ) -> None:
        if not roots:
            raise SourceError("SnapshotSource needs at least one directory")
        self.roots = [Path(r) for r in roots]
        for root in self.roots:
            if not root.is_dir():
                raise SourceError(f"snapshot directory {root} does not exist")
        self._manifests = [self._read_manifest(r) for r in self.roots]
        merged: dict[str, Any] = {}
        for manifest in self._manifests:
            for key in ("datastack", "materialization_version", "timestamp", "position_resolution_nm"):
                if manifest.get(key) is not None:
                    if merged.get(key) is not None and merged[key] != manifest[key]:
                        raise SourceError(f"snapshot roots disagree on {key}: {merged[key]!r} vs {manifest[key]!r}")
                    merged[key] = manifest[key]
        self.datastack = datastack or merged.get("datastack") or "unknown"
        self.materialization_version = materialization_version or merged.get("materialization_version")
        self.timestamp = timestamp or merged.get("timestamp")
        self.version_label: str | None = next(
            (m["version_label"] for m in self._manifests if m.get("version_label")), None
        )
        resolution = position_resolution_nm or merged.get("position_resolution_nm") or (4.0, 4.0, 40.0)
        self.position_resolution_nm = (float(resolution[0]), float(resolution[1]), float(resolution[2]))
        self._files = self._discover()

    @staticmethod
    def _read_manifest(root: Path) -> dict[str, Any]:
        path = root / "manifest.json"
        if not path.exists():
            return {}
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise SourceError(f"{path}: invalid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise SourceError(f"{path}: a snapshot manifest must be a JSON object")
        types = {
            "datastack": str,
            "materialization_version": int,
            "timestamp": str,
            "version_label": str,
            "position_resolution_nm": list,
            "tables": dict,
        }
        for key, kind in types.items():
            if data.get(key) is not None and (not isinstance(data[key], kind) or isinstance(data[key], bool)):
                raise SourceError(f"{path}: field {key!r} must be {kind.__name__}, got {data[key]!r}")
        resolution = data.get("position_resolution_nm")
        if resolution is not None and (
            len(resolution) != 3 or not all(isinstance(v, int | float) and v > 0 for v in resolution)
        ):
            raise SourceError(f"{path}: position_resolution_nm must be three positive numbers, got {resolution!r}")
        for table, entry in data.get("tables", {}).items():
            if not isinstance(entry, dict):
                raise SourceError(f"{path}: tables.{table} must be an object, got {entry!r}")
        result: dict[str, Any] = data
        return result

    def _discover(self) -> dict[str, list[Path]]:
        files: dict[str, list[Path]] = {}
        for root in self.roots:
            for entry in sorted(root.iterdir()):
                if entry.name.startswith((".", "_")):
                    continue
                if entry.is_dir():
                    parts = sorted(
                        p for p in entry.iterdir() if _table_name(p) is not None and not p.name.startswith(".")
                    )
                    if parts:
                        files.setdefault(entry.name, []).extend(parts)
                elif (name := _table_name(entry)) is not None:
                    twin = next((p for p in files.get(name, []) if p.parent == root), None)
                    if twin is not None:
                        raise SourceError(
                            f"table {name!r} is in {root} twice, as {twin.name} and {entry.name}: keep one (both "
                            f"would be read as parts of one table and every row counted twice)"
                        )
                    files.setdefault(name, []).append(entry)
        return files

    def tables(self) -> list[str]:
        return sorted(self._files)

    def files(self, table: str) -> list[Path]:
        if table not in self._files:
            raise TableNotFoundError(
                f"table {table!r} is not in snapshot {', '.join(map(str, self.roots))} "
                f"(has: {', '.join(self.tables()) or 'nothing'})"
            )
        return self._files[table]

    def scan(self, table: str) -> pl.LazyFrame:
        frames = [coerce_wire(read_table_file(p), table) for p in self.files(table)]
        if len(frames) == 1:
            return frames[0]
        try:
            return pl.concat(frames, how="diagonal_relaxed")
        except pl.exceptions.PolarsError as exc:
            raise SourceError(f"table {table!r}: parts {self.files(table)} do not share a schema: {exc}") from exc

    def column_range(self, table: str, column: str) -> tuple[Any, Any] | None:
        """From the row-group statistics when every part is Parquet and carries them for `column`."""
        lo = hi = None
        for path in self.files(table):
            if not path.name.endswith(".parquet"):
                return None
            meta = pq.read_metadata(path)
            names = [meta.schema.column(i).path for i in range(meta.num_columns)]
            if column not in names:
                return None  # named otherwise in this file: the wire coercion renames it
            i = names.index(column)
            for g in range(meta.num_row_groups):
                group = meta.row_group(g)
                if group.num_rows == 0:
                    continue
                stats = group.column(i).statistics
                if stats is None or not stats.has_min_max:
                    return None
                lo = stats.min if lo is None else min(lo, stats.min)
                hi = stats.max if hi is None else max(hi, stats.max)
        return None if lo is None else (lo, hi)

    def _root_entry(self, path: Path, table: str) -> dict[str, Any]:
        for root, manifest in zip(self.roots, self._manifests, strict=True):
            if root in path.parents:
                entry: dict[str, Any] = manifest.get("tables", {}).get(table, {})
                return entry
        return {}

    def info(self, table: str) -> TableInfo:
        """Origin per part file: declared in its root's manifest (per part or per table), else 'real'."""
        parts = []
        kind, source = "cave", "snapshot"
        conditioned: set[str] = set()
        subset: set[str] = set()
        for path in self.files(table):
            entry = self._root_entry(path, table)
            rel = _part_name(path, table)
            declared: dict[str, Any] = next((p for p in entry.get("parts", []) if p.get("file") == rel), {})
            origin = declared.get("origin") or entry.get("origin") or "real"
            rows = declared.get("rows") or (entry.get("rows") if len(self.files(table)) == 1 else None)
            parts.append(TablePart(name=rel, origin=origin, rows=rows if rows is not None else count_rows(path)))
            kind = entry.get("kind", kind)
            conditioned.update(entry.get("conditioned_on", []))
            fetch: dict[str, Any] = entry["fetch"] if isinstance(entry.get("fetch"), dict) else {}
            if fetch.get("mode") == "cells" and fetch.get("cells_from"):
                subset.add(str(fetch["cells_from"]))
            source = entry.get("source", source) if source == "snapshot" else source
        return TableInfo(
            name=table,
            origin=least_real([p.origin for p in parts]),
            kind=kind,
            rows=sum(p.rows for p in parts),
            source=source,
            parts=tuple(parts),
            conditioned_on=tuple(sorted(conditioned)),
            cells_from=_one_subset(table, subset),
        )

    def table_fingerprint(self, table: str) -> dict[str, Any]:
        files = self.files(table)
        hashes = [cached_sha256(p) for p in files]
        for path, digest in zip(files, hashes, strict=True):
            entry = self._root_entry(path, table)
            rel = _part_name(path, table)
            part: dict[str, Any] = next((p for p in entry.get("parts", []) if p.get("file") == rel), {})
            declared = part.get("sha256") or (entry.get("sha256") if len(files) == 1 else None)
            if declared and declared != digest:
                raise SourceError(
                    f"table {table!r}: {path} does not match the SHA-256 its snapshot manifest records: the file "
                    f"was modified or corrupted after it was fetched; fetch it again"
                )
        return {"rows": sum(count_rows(p) for p in files), "sha256": hashes}

    def reopen_config(self) -> dict[str, Any]:
        return {
            "kind": "snapshot",
            "paths": [str(r.resolve()) for r in self.roots],
            "datastack": self.datastack,
            "materialization_version": self.materialization_version,
            "timestamp": self.timestamp,
            "position_resolution_nm": list(self.position_resolution_nm),
        }

    def fingerprint(self) -> dict[str, Any]:
        tables = {table: self.table_fingerprint(table) for table in self.tables()}
        return {
            "kind": "snapshot",
            "datastack": self.datastack,
            "materialization_version": self.materialization_version,
            "timestamp": self.timestamp,
            "version_label": self.version_label,
            "position_resolution_nm": list(self.position_resolution_nm),
            "tables": tables,
        }
