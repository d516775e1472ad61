"""The synapse plan's spill files: one range's records, grouped in runs, read back straight into place.

A file holds every column of one range's records, whole and back to back, with the runs (one per bucket and
direction) in order inside each column, as synapse_kernels.scatter leaves them; a JSON header names the
columns, their dtypes and the runs' offsets. Phase 2 reads run k of every file straight into its slice of
one preallocated array per column: one copy (from the staging buffer of a direct read, or the kernel's from
the page cache) where Arrow IPC made three (read, concatenate, and the batch's allocation). Measured on a
prototype of this module: 9.05-9.22 -> 8.22-8.24 s on the 100M-synapse benchmark, 30.1-30.6 -> 28.0-28.1 s
at 337M (interleaved rounds). Writes go in 1 MiB pieces: one write of a whole 40 MB column cost the kernel
2.5x more time (0.78-0.90 against 0.33-0.35 s per 1.2 GB).

Local files are written and read around the page cache (O_DIRECT, _util/direct_io.py: the spill is read
once, and new page-cache pages are what a VM with free-page reporting makes slow), reads with pread (no
seek, so two threads share a descriptor); anything else fsspec opens (a Dask scratch on shared storage)
through write, seek and readinto. Memory-mapping the files instead (no copy at all) measured slower with
Arrow IPC: a page fault per page.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from cellfeatures._util import direct_io
from cellfeatures.errors import StoreError

MAGIC = b"CFRUNS01"  # the format's name and version
ALIGN = 64  # column data starts on a cache line
WRITE_PIECE = 1 << 20


def write_runs(columns: dict[str, np.ndarray], offsets: np.ndarray, sink: Path | BinaryIO) -> None:
    """One range's records to `sink` (a path, or a writable binary file): run k of a column is rows
    offsets[k]:offsets[k + 1]."""
    rows = int(offsets[-1])
    if any(column.size != rows for column in columns.values()):
        raise ValueError(f"every column needs {rows} rows: { ({n: c.size for n, c in columns.items()}) }")
    header = json.dumps(
        {"columns": [[name, column.dtype.str] for name, column in columns.items()], "offsets": offsets.tolist()}
    ).encode()
    lead = MAGIC + len(header).to_bytes(8, "little") + header
    with ExitStack() as stack:
        out: Any = stack.enter_context(direct_io.DirectWriter(sink)) if isinstance(sink, Path) else sink
        out.write(memoryview(lead + b"\0" * (-len(lead) % ALIGN)))
        for column in columns.values():
            data = np.ascontiguousarray(column).data.cast("B")
            for start in range(0, len(data), WRITE_PIECE):
                out.write(data[start : start + WRITE_PIECE])


class RunsFile:
    """One spill file opened for reading: its header parsed once, runs read on demand."""

    def __init__(self, name: str, handle: BinaryIO) -> None:
        self.name = name
        self._handle = handle
        lead = self._read_at(0, len(MAGIC) + 8)
        if lead[: len(MAGIC)] != MAGIC:
            raise StoreError(f"{name}: not a cellfeatures runs file (found {bytes(lead[: len(MAGIC)])!r})")
        size = int.from_bytes(lead[len(MAGIC) :], "little")
        try:
            header = json.loads(bytes(self._read_at(len(lead), size)))
        except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are both
            raise StoreError(f"{name}: damaged runs file header ({exc})") from None
        self.offsets = np.asarray(header["offsets"], np.int64)
        rows = int(self.offsets[-1])
        start = len(lead) + size
        start += -start % ALIGN
        self.columns: dict[str, tuple[np.dtype[Any], int]] = {}
        for name_, dtype in header["columns"]:
            self.columns[name_] = (np.dtype(dtype), start)
            start += rows * np.dtype(dtype).itemsize

    @property
    def runs(self) -> int:
        return self.offsets.size - 1

    def rows(self, k: int) -> int:
        return int(self.offsets[k + 1] - self.offsets[k])

    def read_run(self, k: int, name: str, target: np.ndarray) -> None:
        """Run k of column `name` into `target` (its length is the run's; a wider dtype is filled by a cast)."""
        dtype, start = self.columns[name]
        rows = self.rows(k)
        if target.size != rows:
            raise ValueError(f"{self.name}: run {k} has {rows} rows, the target {target.size}")
        landing = target if target.dtype == dtype and target.flags.c_contiguous else np.empty(rows, dtype)
        self._read_into(start + int(self.offsets[k]) * dtype.itemsize, landing.data.cast("B"))
        if landing is not target:
            target[:] = landing

    def _read_at(self, offset: int, size: int) -> memoryview:
        buffer = bytearray(size)
        self._read_into(offset, memoryview(buffer))
        return memoryview(buffer)

    def _read_into(self, offset: int, view: memoryview) -> None:
        if isinstance(self._handle, RawFile):
            done = self._handle.pread_into(offset, view)
        else:
            done = 0
            self._handle.seek(offset)
            while done < len(view):
                got = self._handle.readinto(view[done:])  # type: ignore[attr-defined]
                if not got:
                    break
                done += got
        if done < len(view):
            raise StoreError(
                f"{self.name}: truncated runs file (wanted {len(view)} bytes at {offset}, got {done}); "
                "the scratch files of this build were changed or cut short: rerun the build"
            )


class RawFile:
    """A local file descriptor as a tiny binary handle: RunsFile reads it with pread, direct where it can."""

    def __init__(self, path: Path) -> None:
        self._fd, self.direct = direct_io.open_direct(path, os.O_RDONLY)

    def pread_into(self, offset: int, view: memoryview) -> int:
        """Bytes read at `offset` into `view`; the descriptor's directness is kept here, where it changes."""
        done, self.direct = direct_io.pread_into(self._fd, self.direct, offset, view)
        return done

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> RawFile:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


@contextmanager
def open_runs(
    files: Sequence[Path | Callable[[], Any]], names: Sequence[str] | None = None
) -> Iterator[list[RunsFile]]:
    """Every spill file opened (paths, or callables opening a readable binary file), until the block ends."""
    with ExitStack() as stack:
        handles = [stack.enter_context(RawFile(f) if isinstance(f, Path) else f()) for f in files]
        yield _runs_files(handles, names or [str(f) for f in files])


@contextmanager
def consume_runs(paths: Sequence[Path]) -> Iterator[list[RunsFile]]:
    """Local spill files opened for their one reading and unlinked at once; closed on a thread of their own
    when the block ends.

    Why: for an unlinked file, closing the last descriptor is when the file system frees its blocks (ext4:
    0.23-0.27 s for the 22 files of 100M synapses, 1.6 GB), time the build had nothing else to do. The
    closing thread is not a daemon: the interpreter waits for it at exit. And a build that dies meanwhile
    leaves no spill behind: the process's descriptors close with it, and the files are freed."""
    handles: list[RawFile] = []
    try:
        for path in paths:
            handles.append(RawFile(path))
        readers = _runs_files(handles, [str(p) for p in paths])
        for path in paths:  # only once every header was read: a damaged file stays for the caller to remove
            path.unlink()
        yield readers
    finally:
        threading.Thread(target=_close_all, args=(handles,), name="cellfeatures-free-spill").start()


def _close_all(handles: list[RawFile]) -> None:
    for handle in handles:
        handle.close()


def _runs_files(handles: Sequence[Any], names: Sequence[str]) -> list[RunsFile]:
    opened = [RunsFile(name, handle) for name, handle in zip(names, handles, strict=True)]
    if opened and len({(r.runs, tuple(r.columns)) for r in opened}) > 1:
        raise StoreError(f"runs files of one build disagree on their layout: {[r.name for r in opened]}")
    return opened


def batch_layout(readers: list[RunsFile]) -> tuple[dict[str, np.dtype[Any]], list[int]]:
    """The dtype of each column over all files (a range whose sizes needed Int64 widens the others) and the
    number of rows of each batch (run k of every file)."""
    names = list(readers[0].columns)
    dtypes = {n: np.result_type(*(r.columns[n][0] for r in readers)) for n in names}
    return dtypes, [sum(r.rows(k) for r in readers) for k in range(readers[0].runs)]


def column_buffers(readers: list[RunsFile], batches: range | None = None) -> dict[str, np.ndarray]:
    """One array per column, as long as the largest of `batches` (all by default) and of the widest dtype:
    what read_batch fills, kept by its caller from one batch to the next."""
    dtypes, rows = batch_layout(readers)
    longest = max(rows[k] for k in (batches if batches is not None else range(len(rows))))
    return {name: np.empty(longest, dtype) for name, dtype in dtypes.items()}


def read_batch(readers: list[RunsFile], k: int, buffers: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run k of every file, one after the other, in the first rows of `buffers` (one array per column, long
    enough for the batch); returns views of those rows."""
    rows = sum(r.rows(k) for r in readers)
    batch = {name: buffer[:rows] for name, buffer in buffers.items()}
    at = 0
    for reader in readers:
        n = reader.rows(k)
        for name, column in batch.items():
            reader.read_run(k, name, column[at : at + n])
        at += n
    return batch
