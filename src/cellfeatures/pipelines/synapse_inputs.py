"""The synapse kernels' inputs: a frame's columns as NumPy arrays without a copy, and tag codes by id.

Both plans feed the kernels (synapse_kernels, synapse_aggregates) from polars frames: cut at the columns'
chunk boundaries (aligned_pieces), each column of a piece is one Arrow buffer that `to_numpy` hands out
as a view. The target tags become a dense array of codes by synapse id (dense_tags), which the record
kernel reads by position instead of a join.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import polars as pl
from numba import njit


def frozen(array: np.ndarray) -> np.ndarray:
    """A read-only view of `array` (no copy), for every array a kernel reads.

    Numba compiles one version per argument type, and read-only is part of the type: polars hands out
    read-only arrays when it shares its memory and writable ones when it had to copy (a chunked column), so
    without this one build could compile (4 s each, on an empty cache) versions that warm_up never made."""
    view = array.view()
    view.flags.writeable = False
    return view


MIN_PIECE_ROWS = 4096  # below this on average, a frame is rechunked: each kernel call costs ~10 us


def aligned_pieces(frame: pl.DataFrame, columns: list[str] | None = None) -> list[pl.DataFrame]:
    """`frame` (its `columns` only, if given) cut at every column's chunk boundaries: each piece's columns
    are single chunks, which `to_numpy` hands out without a copy (a column without nulls). The columns are
    taken as they are: a `select` of columns chunked differently rechunks them (a copy).

    Why: a range's columns arrive in one chunk per row group read (the filtered root columns cut once
    more), and `to_numpy` of a whole column concatenates them into new memory every range: 0.65 s of
    copying per 100M synapses on the scattering thread, and on a VM whose free memory went back to its
    host, each new page is a host fault. The kernels run once per piece instead (every row is
    independent, the counts add up). A frame of many tiny chunks is rechunked once."""
    if columns is not None:
        frame = pl.DataFrame([frame.get_column(name) for name in columns])
    edges = {0, frame.height}
    for column in frame.iter_columns():
        start = 0
        for chunk in column.get_chunks():
            start += len(chunk)
            edges.add(start)
    cuts = sorted(edges)
    if len(cuts) - 1 > max(1, frame.height // MIN_PIECE_ROWS):
        frame, cuts = frame.rechunk(), [0, frame.height]
    return [frame.slice(a, b - a) for a, b in pairwise(cuts) if b > a]


def column_array(piece: pl.DataFrame, name: str, dtype: type[pl.DataType]) -> np.ndarray:
    """A piece's column as a read-only array of `dtype` (no copy when it already has that type)."""
    return frozen(piece.get_column(name).cast(dtype).to_numpy())


@njit(cache=True, nogil=True)
def _dense_tags_ascending(
    ids: np.ndarray, codes: np.ndarray, lo: int, dense: np.ndarray, last: int
) -> tuple[bool, int]:
    """Codes placed while every id is above the one before (`last` for the first): (True, the last id), or
    (False, _) at the first that is not (the caller starts over with _dense_tags)."""
    for i in range(ids.size):
        if ids[i] <= last:
            return False, last
        last = ids[i]
        dense[last - lo] = codes[i]
    return True, last


@njit(cache=True, nogil=True)
def _dense_tags(ids: np.ndarray, codes: np.ndarray, lo: int, dense: np.ndarray, filled: np.ndarray) -> bool:
    for i in range(ids.size):
        j = ids[i] - lo
        if filled[j]:
            return False
        filled[j] = True
        dense[j] = codes[i]
    return True


def dense_tags(tags: pl.DataFrame, lo: int, hi: int) -> np.ndarray | None:
    """Tag codes by synapse id - lo for the tags' ids (synapse_id, tag_code; all in [lo, hi)), 0 where no
    prediction, or None when an id has two predictions (the caller names them). One pass per piece, where
    numpy's fancy assignment and its checks took four.

    Tags stored in synapse-id order (the sample's real extract is, and a range read from such a table
    stays so) take one pass that proves uniqueness by the order itself; any other order is placed again
    with a mark per id (a second array as large as the range, new memory each range; on the 100M
    benchmark's read-ahead thread the marks cost 0.45 s against 0.33-0.38 s in order)."""
    dense = np.zeros(hi - lo, np.uint8)
    pieces = aligned_pieces(tags, ["synapse_id", "tag_code"])
    arrays = [(column_array(p, "synapse_id", pl.Int64), column_array(p, "tag_code", pl.UInt8)) for p in pieces]
    ascending, last = True, lo - 1
    for ids, codes in arrays:
        ascending, last = _dense_tags_ascending(ids, codes, lo, dense, last)
        if not ascending:
            break
    if ascending:
        return dense
    dense[:] = 0
    filled = np.zeros(hi - lo, np.bool_)
    for ids, codes in arrays:
        if not _dense_tags(ids, codes, lo, dense, filled):
            return None
    return dense
