"""Content checksums that do not depend on file format, row order or compression.

Why: the sample's real tables are converted (CSV -> Parquet, renamed columns); a byte hash of the
file proves nothing about the data, so traceability compares a hash of the *content* instead.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl


def frame_checksum(df: pl.DataFrame) -> str:
    """SHA-256 of the frame's rows as CSV, after sorting by every column (order-independent)."""
    ordered = df.select(sorted(df.columns)).sort(sorted(df.columns), nulls_last=True)
    return hashlib.sha256(ordered.write_csv().encode()).hexdigest()


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, streamed."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


_SHA_MEMO: dict[tuple[str, int, int], str] = {}


def cached_sha256(path: Path) -> str:
    """File hash, memoised on (path, size, mtime): fingerprints and version checks read the same files often."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA_MEMO:
        _SHA_MEMO[key] = file_sha256(path)
    return _SHA_MEMO[key]
