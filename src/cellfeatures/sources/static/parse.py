"""Decompressing and parsing a static export: newline-aligned blocks, typed by the sidecar, checked.

Why blocks: the synapse export is ~20 GB of gzip (~60 GB of text); it must stream in bounded memory.
A reader thread decompresses (ISA-L: measured 3x the standard library on this machine, see
benchmarks/README.md) and cuts the text at the last complete record; the consumer parses each block
with Polars using the sidecar's names and types (never inferred). Polars fills a short row with nulls
silently, so every block's field count is checked; when anything is wrong, the block is re-read line by
line to name the table, the line and the column.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from isal import igzip

from cellfeatures.errors import SourceError, one_line
from cellfeatures.sources.static.exports import ExportColumn

BLOCK_BYTES = 64 * 2**20  # decompressed text per block (measured: 64 MiB 5% faster than 32 MiB)
_TRUE, _FALSE = ("t", "true"), ("f", "false")


@dataclass(frozen=True)
class Block:
    """A run of complete records: `text[start:end]`, the 1-based line number of the first, their count.

    Why offsets: a block is usually the middle of a decompressed chunk (after the record that began in
    the previous chunk, before the one that ends in the next); Polars reads it in place (skip_lines,
    n_rows) instead of from a copy: each copy of fresh memory cost ~0.2 s per 360 MB in page faults.
    `start` is 0 or just after a newline, so skipping one line gets there.
    """

    text: bytes
    first_line: int
    lines: int
    start: int = 0
    end: int = -1

    @property
    def stop(self) -> int:
        return len(self.text) if self.end < 0 else self.end

    @property
    def records(self) -> bytes:
        return self.text if self.start == 0 and self.end < 0 else self.text[self.start : self.stop]


class _HashingReader(io.RawIOBase):
    """A file read through SHA-256 (the digest of the downloaded bytes costs no second read)."""

    def __init__(self, fh: io.RawIOBase | io.BufferedIOBase, on_bytes: Any = None) -> None:
        self._fh, self.sha256, self.bytes, self._on_bytes = fh, hashlib.sha256(), 0, on_bytes

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._fh.readinto(buffer)
        if n:
            view = memoryview(buffer)[:n]
            self.sha256.update(view)
            self.bytes += n
            if self._on_bytes is not None:
                self._on_bytes(self.bytes)
        return n or 0


def _cut(text: bytes) -> int:
    """End of the last complete record in `text` (after its newline), quote-aware; 0 if none."""
    cut = text.rfind(b"\n") + 1
    if b'"' not in text:
        return cut
    while cut > 0 and text.count(b'"', 0, cut) % 2:  # that newline is inside a quoted field
        cut = text.rfind(b"\n", 0, cut - 1) + 1
    return cut


def _records(text: bytes) -> int:
    if b'"' not in text:
        return text.count(b"\n")
    return sum(1 for _ in csv.reader(io.StringIO(text.decode("utf-8", errors="replace"))))


class BlockReader:
    """Iterate the blocks of a gzip CSV file, decompressing on a thread; `.sha256`/`.bytes` after the end."""

    def __init__(self, path: Path, table: str, block_bytes: int = BLOCK_BYTES, on_bytes: Any = None) -> None:
        self.path, self.table, self.block_bytes, self._on_bytes = path, table, block_bytes, on_bytes
        self.sha256 = ""
        self.bytes = 0
        self._queue: queue.Queue[Block | BaseException | None] = queue.Queue(maxsize=2)
        self._stop = threading.Event()

    def _produce(self) -> None:
        try:
            with self.path.open("rb") as raw:
                hashing = _HashingReader(raw, self._on_bytes)
                with igzip.IGzipFile(fileobj=io.BufferedReader(hashing, 4 * 2**20), mode="rb") as gz:
                    carry, line = b"", 1
                    while not self._stop.is_set():
                        chunk = gz.read(self.block_bytes)
                        if not chunk:
                            if carry:
                                text = carry if carry.endswith(b"\n") else carry + b"\n"
                                self._queue.put(Block(text, line, _records(text)))
                            break
                        first = chunk.find(b"\n") + 1
                        if b'"' in carry or b'"' in chunk or first == 0:  # quoted fields: cut on a copy
                            carry += chunk
                            cut = _cut(carry)
                            if cut == 0:
                                continue  # no record ends here yet
                            block, carry = carry[:cut], carry[cut:]
                            n = _records(block)
                            self._queue.put(Block(block, line, n))
                            line += n
                            continue
                        last = chunk.rfind(b"\n") + 1
                        self._queue.put(Block(carry + chunk[:first], line, 1))  # the record spanning chunks
                        n = chunk.count(b"\n", first, last)
                        if n:
                            self._queue.put(Block(chunk, line + 1, n, start=first, end=last))
                        line += 1 + n
                        carry = chunk[last:]
                    gz.read(1)  # the gzip trailer (CRC, size) is checked when the stream ends
                self.sha256, self.bytes = hashing.sha256.hexdigest(), hashing.bytes
            self._queue.put(None)
        except EOFError:
            self._queue.put(
                SourceError(
                    f"table {self.table!r}: {self.path} is a truncated gzip file (it ends before the end-of-stream "
                    f"marker): the download or copy was cut short; delete it and fetch again"
                )
            )
        except (OSError, igzip.BadGzipFile) as exc:
            self._queue.put(SourceError(f"table {self.table!r}: cannot decompress {self.path}: {one_line(exc)}"))
        except BaseException as exc:
            self._queue.put(exc)

    def __iter__(self) -> Iterator[Block]:
        thread = threading.Thread(target=self._produce, name=f"gunzip-{self.table}", daemon=True)
        thread.start()
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._stop.set()
            while thread.is_alive():  # unblock a producer waiting on a full queue
                with contextlib.suppress(queue.Empty):
                    self._queue.get(timeout=0.1)
            thread.join()


def parse_block(block: Block, columns: list[ExportColumn], table: str) -> pl.DataFrame:
    """The block as a typed frame in the wire dialect (booleans, UTC timestamps); errors name line and column."""
    names = [c.name for c in columns]
    try:
        frame = pl.read_csv(
            block.text,
            has_header=False,
            new_columns=names,
            schema={c.name: c.read_dtype for c in columns},
            quote_char='"',
            skip_lines=1 if block.start else 0,
            n_rows=block.lines if block.start or block.end >= 0 else None,
        )
    except pl.exceptions.PolarsError:
        raise diagnose(block, columns, table) from None
    # A short row leaves its trailing columns null, so a last column without nulls proves there is none;
    # otherwise the block's commas are counted (quoted blocks are checked by Polars and `diagnose`).
    expected = block.lines * (len(columns) - 1)
    if frame.get_column(names[-1]).null_count() == 0 or (block.start == 0 and block.end < 0 and b'"' in block.text):
        commas = expected
    else:
        commas = block.text.count(b",", block.start, block.stop)
    if commas != expected:
        raise diagnose(block, columns, table)  # a short row (Polars fills it with nulls silently)
    if frame.height != block.lines:
        raise diagnose(block, columns, table)
    return convert_values(frame, columns, table, block)


def convert_values(frame: pl.DataFrame, columns: list[ExportColumn], table: str, block: Block) -> pl.DataFrame:
    """Text columns with a declared type (boolean, timestamp, date) to their values; a bad value is refused."""
    exprs = []
    for c in columns:
        col = pl.col(c.name)
        if c.kind == "bool":
            text = col.str.to_lowercase()
            exprs.append(pl.when(text.is_in(_TRUE)).then(True).when(text.is_in(_FALSE)).then(False).alias(c.name))
        elif c.kind == "timestamp":
            exprs.append(col.str.to_datetime("%Y-%m-%d %H:%M:%S%.f", time_unit="us", time_zone="UTC", strict=False))
        elif c.kind == "timestamptz":
            with_minutes = col.str.replace(r"([+-]\d\d)$", "${1}:00")
            parsed = with_minutes.str.to_datetime("%Y-%m-%d %H:%M:%S%.f%:z", time_unit="us", strict=False)
            exprs.append(parsed.dt.convert_time_zone("UTC").alias(c.name))
        elif c.kind == "date":
            exprs.append(col.str.to_date("%Y-%m-%d", strict=False))
    if not exprs:
        return frame
    out = frame.with_columns(exprs)
    for c in columns:
        if c.kind in ("bool", "timestamp", "timestamptz", "date"):
            lost = out.get_column(c.name).is_null() & frame.get_column(c.name).is_not_null()
            if lost.any():
                i = int(lost.arg_max() or 0)
                value = frame.get_column(c.name)[i]
                raise SourceError(
                    f"table {table!r}, line {block.first_line + i}, column {c.name!r}: {value!r} is not a "
                    f"{c.pg_type} ({lost.sum()} such value(s) in lines {block.first_line}-"
                    f"{block.first_line + block.lines - 1})"
                )
    return out


def _castable(value: str, column: ExportColumn) -> bool:
    if value == "":
        return True
    try:
        if column.kind == "int":
            int(value)
        elif column.kind in ("float64", "float32"):
            float(value)
        elif column.kind == "bool":
            return value.lower() in (*_TRUE, *_FALSE)
    except ValueError:
        return False
    return True


def diagnose(block: Block, columns: list[ExportColumn], table: str) -> SourceError:
    """Re-read a block that failed to parse, record by record, and name the first bad line and column."""
    reader = csv.reader(io.StringIO(block.records.decode("utf-8", errors="replace")))
    for i, row in enumerate(reader):
        line = block.first_line + i
        if len(row) != len(columns):
            return SourceError(
                f"table {table!r}, line {line}: {len(row)} fields, but the sidecar declares {len(columns)} columns "
                f"({', '.join(c.name for c in columns[:4])}, ...): the sidecar does not describe this file "
                f"(another version's or table's?), or the line is damaged"
            )
        for value, column in zip(row, columns, strict=True):
            if not _castable(value, column):
                return SourceError(
                    f"table {table!r}, line {line}, column {column.name!r}: {value!r} is not a {column.pg_type}"
                )
    return SourceError(f"table {table!r}: lines {block.first_line}-{block.first_line + block.lines - 1} do not parse")


def parse_kept(
    block: Block, columns: list[ExportColumn], table: str, keep_columns: tuple[str, ...], keep: pl.Expr
) -> tuple[pl.DataFrame, int]:
    """(the block's rows where `keep` holds, all columns; the block's row count), parsing every column only
    for those rows.

    Why: `keep = "cells"` keeps ~1% of the synapse table; parsing the two root columns first (Polars'
    column projection: 0.05 s against 0.17 s per 64 MiB block) and then only the kept lines in full is
    what brings the job under the pandas way's time by more than its decompression floor allows the full
    parse. Quoted blocks, and any block whose kept lines do not parse, take the full path (its errors
    name the right line).
    """
    names = [c.name for c in columns]
    if block.start == 0 and block.end < 0:  # a quoted block, or the record spanning two chunks
        frame = parse_block(block, columns, table)
        return frame.filter(keep), frame.height
    try:
        probe = pl.read_csv(
            block.text,
            has_header=False,
            new_columns=names,
            schema={c.name: c.read_dtype for c in columns},
            columns=[names.index(c) for c in keep_columns],
            skip_lines=1,
            n_rows=block.lines,
        )
    except pl.exceptions.PolarsError:
        raise diagnose(block, columns, table) from None
    if probe.height != block.lines:
        raise diagnose(block, columns, table)
    rows = probe.select(keep.alias("_keep")).to_series().fill_null(False).to_numpy().nonzero()[0]
    if len(rows) == 0:
        return parse_block_schema_empty(columns), block.lines
    text = np.frombuffer(block.text, np.uint8, count=block.stop - block.start, offset=block.start)
    ends = np.flatnonzero(text == 10) + block.start + 1
    starts = np.concatenate(([block.start], ends[:-1]))
    kept = b"".join(block.text[a:b] for a, b in zip(starts[rows].tolist(), ends[rows].tolist(), strict=True))
    try:
        return parse_block(Block(kept, block.first_line, len(rows)), columns, table), block.lines
    except SourceError:  # name the line as it is in the file
        frame = parse_block(block, columns, table)
        return frame.filter(keep), frame.height


def parse_block_schema_empty(columns: list[ExportColumn]) -> pl.DataFrame:
    """An empty frame with the dtypes parse_block returns (booleans and timestamps converted)."""
    final = {"bool": pl.Boolean(), "timestamp": pl.Datetime("us", "UTC"), "timestamptz": pl.Datetime("us", "UTC")}
    final["date"] = pl.Date()
    return pl.DataFrame(schema={c.name: final.get(c.kind, c.read_dtype) for c in columns})
