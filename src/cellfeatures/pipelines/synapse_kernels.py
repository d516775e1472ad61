"""The synapse family's phase-1 kernel: synapses -> records grouped by cell bucket, without a sort.

Why compiled (numba): the family is a group-by of ~0.9 records per synapse over 10^8-10^9 synapses. In
polars each step was a full pass with its own memory traffic (membership tests, a 4-column sort by root
at ~55 ns per record, an Arrow merge of sorted runs, a group-by); here it is two passes over the
synapses with one lookup per root in a hash table of the ~10^5 nucleus roots, and synapse_aggregates
makes one pass over the records (benchmarks/README.md, "synapses.py", has the numbers).

Every plan (one frame for small tables, id ranges and cell buckets for big ones, on this machine or as
Dask tasks) calls the same kernels, and no aggregate depends on the records' order, so all plans give
the same bits.

A record (one per synapse and attributable cell on one side, per direction) carries the cell's index in
the sorted attributable roots, the partner root, the size and one flags byte: bit 0 partner has a
nucleus, bits 1-2 partner class (0 none, 1 excitatory, 2 inhibitory), bits 3-4 tag (0 none, 1 spine,
2 shaft, 3 soma), bit 5 size missing; plus the distance from the cell's nucleus in um (rounded to 1e-6
um) when positions are used.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import polars as pl
from numba import njit

from cellfeatures._util.prefetch import prefetch
from cellfeatures.errors import IdentityError
from cellfeatures.pipelines.synapse_inputs import aligned_pieces, column_array, frozen
from cellfeatures.pipelines.synapse_records import CLASS_CODES, RootSets
from cellfeatures.vocab import EXC, INH

HAS_NUCLEUS, CLASS_SHIFT, TAG_SHIFT, SIZE_MISSING = 1, 1, 3, 32
MAX_CELLS = 2**23 - 1  # MICrONS minnie65 has ~145,000 nuclei
LOOK_AHEAD = 32  # rows between prefetching a root's slot and looking it up (8: 21, 16: 20, 32: 17.6 ns per row)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: multiply, keep the top bits


@njit(inline="always")
def hash_slot(key: int, shift: int) -> int:
    return int(np.int64((np.uint64(key) * _GOLDEN) >> np.uint64(shift)))


@njit(inline="always")
def _find(key: int, slots: np.ndarray, shift: int, mask: int) -> int:
    """What the table knows of root `key`: (cell index + 1) << 8 | partner flags, 0 for an unknown root.

    Open addressing, linear probing, load factor at most 1/4; a slot holds the root and its value side by
    side, so a lookup is one cache line (12.6 ns against ~20 with separate arrays; the value in the slot
    saves a second random access per root)."""
    h = hash_slot(key, shift)
    while True:
        value = slots[h, 1]
        if value == -1:
            return 0
        if slots[h, 0] == key:
            return value
        h = (h + 1) & mask


@njit(inline="always")
def _find_home_first(key: int, slots: np.ndarray, shift: int, mask: int) -> int:
    """_find, with the common case (the root, or an empty slot, at its home slot: load <= 1/4) decided
    without a branch on which of the two it is: a cell root or not is a coin toss the branch predictor loses
    (16.3 -> 11.8-12.5 ns per synapse for both roots' lookups)."""
    h = hash_slot(key, shift)
    root, value = slots[h, 0], slots[h, 1]
    if (root != key) & (value != -1):  # another root at home: probe on (rare, so predicted)
        return _find(key, slots, shift, mask)
    return value if (root == key) & (value != -1) else 0  # (an empty slot holds root 0: key 0 is no root)


@njit(cache=True, nogil=True)
def _fill_table(roots: np.ndarray, values: np.ndarray, bits: int) -> np.ndarray:
    size = 1 << bits
    slots = np.zeros((size, 2), np.int64)
    slots[:, 1] = -1
    shift, mask = 64 - bits, size - 1
    for i in range(roots.size):
        h = hash_slot(roots[i], shift)
        while slots[h, 1] != -1:
            h = (h + 1) & mask
        slots[h, 0] = roots[i]
        slots[h, 1] = values[i]
    return slots


@dataclass(frozen=True)
class RootTable:
    """What the kernels know of roots: a hash table over every root with a nucleus, holding its cell index
    (if an attributable cell) and its partner flags (nucleus, class)."""

    slots: np.ndarray  # int64 (2^bits, 2): root, (cell index + 1) << 8 | partner flags (-1: empty slot)
    bits: int
    cell_roots: np.ndarray  # int64, sorted: a cell's index is its position here

    @property
    def cells(self) -> int:
        return int(self.cell_roots.size)


def root_table(roots: RootSets) -> RootTable:
    """The table of RootSets: nodes are the union of cells, nucleus roots and class-labelled roots."""

    def values(series: pl.Series) -> np.ndarray:
        return series.cast(pl.Int64).to_numpy()

    cells = values(roots.cells)
    if cells.size >= MAX_CELLS:  # (cell + 1) << 8 | flags is kept in 32 bits per synapse side
        raise IdentityError(f"{cells.size:,} attributable cells: the synapse kernels handle fewer than {MAX_CELLS:,}")
    nodes = np.unique(np.concatenate([cells, values(roots.nucleus), values(roots.exc), values(roots.inh)]))
    nodes = nodes[nodes != 0]
    node_cell = np.full(nodes.size, -1, np.int32)
    node_cell[np.searchsorted(nodes, cells)] = np.arange(cells.size, dtype=np.int32)
    flags = np.zeros(nodes.size, np.uint8)
    flags[np.isin(nodes, values(roots.nucleus))] |= HAS_NUCLEUS
    flags[np.isin(nodes, values(roots.exc))] |= CLASS_CODES[EXC] << CLASS_SHIFT
    flags[np.isin(nodes, values(roots.inh))] |= CLASS_CODES[INH] << CLASS_SHIFT
    bits = max(4, int(np.ceil(np.log2(max(nodes.size, 1) * 4))))
    packed = ((node_cell.astype(np.int64) + 1) << 8) | flags
    return RootTable(_fill_table(frozen(nodes), frozen(packed), bits), bits, cells)


@njit(cache=True, nogil=True)
def _look_up(
    pre: np.ndarray,
    post: np.ndarray,
    size: np.ndarray,
    slots: np.ndarray,
    bits: int,
    bucket_shift: int,
    buckets: int,
    pre_value: np.ndarray,
    post_value: np.ndarray,
) -> tuple[np.ndarray, int, int]:
    """Pass 1: look both roots up once (into pre_value, post_value), count records per (bucket, direction),
    and find the sizes' range (whether they fit Int32: in polars, min, max and a cast were three passes).

    The slots of row i + LOOK_AHEAD are prefetched (cellfeatures._util.prefetch has the why and the numbers)."""
    shift, mask = 64 - bits, (1 << bits) - 1
    # counted without a branch: a root that is no cell has cell index -1, bucket -1 (arithmetic shift), and
    # counts into the two slots before the real ones
    counts = np.zeros(2 * buckets + 2, np.int64)
    low = high = 0
    n = pre.size
    for i in range(n):
        ahead = i + LOOK_AHEAD
        if ahead < n:  # the table's slots for a later row, loading while this one is looked up
            prefetch(slots, hash_slot(pre[ahead], shift))
            prefetch(slots, hash_slot(post[ahead], shift))
        a = _find_home_first(pre[i], slots, shift, mask)
        b = _find_home_first(post[i], slots, shift, mask)
        pre_value[i] = a  # (cell + 1) << 8 | flags fits in 32 bits: fewer than 2**23 cells
        post_value[i] = b
        counts[2 + 2 * (((b >> 8) - 1) >> bucket_shift)] += 1  # an input of the post cell
        counts[3 + 2 * (((a >> 8) - 1) >> bucket_shift)] += 1  # an output of the pre cell
        low = min(low, size[i])
        high = max(high, size[i])
    return counts[2:], low, high


@njit(cache=True, nogil=True)
def _place(
    pre: np.ndarray,
    post: np.ndarray,
    size: np.ndarray,
    size_ok: np.ndarray,
    tag: np.ndarray,
    ids: np.ndarray,
    dense_tags: np.ndarray,
    tags_lo: int,
    ctr: np.ndarray,
    pos: np.ndarray,
    pre_value: np.ndarray,
    post_value: np.ndarray,
    bucket_shift: int,
    fill: np.ndarray,
    cell: np.ndarray,
    partner: np.ndarray,
    sizes: np.ndarray,
    flags: np.ndarray,
    dist: np.ndarray,
) -> None:
    """Pass 2: write each record into its (bucket, direction) run, at `fill[run]` (advanced: a frame's
    pieces are placed one after the other)."""
    with_positions = pos.shape[0] > 0
    by_id = dense_tags.size > 0
    all_sized = size_ok.size == 0  # no missing size in this frame
    for i in range(pre.size):
        a = pre_value[i]
        b = post_value[i]
        t = dense_tags[ids[i] - tags_lo] if by_id else tag[i]
        sized = all_sized or size_ok[i]
        common = (t << TAG_SHIFT) | (0 if sized else SIZE_MISSING)
        value = size[i] if sized else 0
        for out in range(2):
            own = a if out else b
            if not own >> 8:
                continue
            c = (own >> 8) - 1
            run = 2 * (c >> bucket_shift) + out
            k = fill[run]
            fill[run] = k + 1
            cell[k] = c
            partner[k] = post[i] if out else pre[i]
            sizes[k] = value  # Int32 when pass 1 found every size fits
            flags[k] = common | ((b if out else a) & 0xFF)
            if with_positions:
                dx, dy, dz = ctr[i, 0] - pos[c, 0], ctr[i, 1] - pos[c, 1], ctr[i, 2] - pos[c, 2]
                dist[k] = np.round(np.sqrt(dx * dx + dy * dy + dz * dz) / 1000.0, 6)


@dataclass
class Records:
    """One frame's or one range's records, grouped by batch 2 * bucket + (direction is out)."""

    offsets: np.ndarray
    cell: np.ndarray
    partner: np.ndarray
    size: np.ndarray
    flags: np.ndarray
    dist: np.ndarray  # empty without positions
    with_positions: bool

    def columns(self) -> dict[str, np.ndarray]:
        """Every record, by column (`dist` only with positions); run k is rows offsets[k]:offsets[k + 1]."""
        columns = {"cell": self.cell, "partner": self.partner, "size": self.size, "flags": self.flags}
        if self.with_positions:
            columns["dist"] = self.dist
        return columns

    def batch(self, k: int) -> dict[str, np.ndarray]:
        """Batch k's columns (`dist` only with positions)."""
        a, b = int(self.offsets[k]), int(self.offsets[k + 1])
        return {name: column[a:b] for name, column in self.columns().items()}

    @property
    def height(self) -> int:
        return int(self.cell.size)


@dataclass
class _Piece:
    """One aligned piece of a scatter's frame, as the kernels read it."""

    pre: np.ndarray
    post: np.ndarray
    size: np.ndarray  # Int64, 0 where missing
    size_ok: np.ndarray  # empty when no size is missing
    tag: np.ndarray  # tag codes by row, or empty when they are looked up by id
    ids: np.ndarray  # synapse ids when tags are looked up by id, else empty
    ctr: np.ndarray  # synapse positions (rows x 3, nm) with positions, else (0, 3)

    @property
    def rows(self) -> int:
        return int(self.pre.size)


def _piece(piece: pl.DataFrame, by_id: bool, with_positions: bool) -> _Piece:
    size = piece.get_column("size_vx")
    # the validity mask only when some size is missing (real tables have none: one pass less)
    missing = size.null_count()
    size_ok = size.is_not_null().to_numpy() if missing else np.zeros(0, np.bool_)
    sizes = (size.fill_null(0) if missing else size).cast(pl.Int64).to_numpy()
    if by_id:
        ids, tag = column_array(piece, "synapse_id", pl.Int64), np.zeros(0, np.uint8)
    elif "tag_code" in piece.columns:
        ids, tag = np.zeros(0, np.int64), column_array(piece, "tag_code", pl.UInt8)
    else:
        ids, tag = np.zeros(0, np.int64), np.zeros(piece.height, np.uint8)
    if with_positions:
        axes = [piece.get_column(f"ctr_{a}_nm").cast(pl.Float64).fill_null(np.nan).to_numpy() for a in "xyz"]
        ctr = np.ascontiguousarray(np.column_stack(axes))
    else:
        ctr = np.empty((0, 3))
    pre, post = column_array(piece, "pre_root_id", pl.Int64), column_array(piece, "post_root_id", pl.Int64)
    # every array read-only: one compiled version of each kernel (see frozen)
    return _Piece(pre, post, *(frozen(a) for a in (sizes, size_ok, tag, ids, ctr)))


def scatter(
    frame: pl.DataFrame,
    table: RootTable,
    bucket_shift: int,
    buckets: int,
    positions: np.ndarray | None,
    dense_tags: np.ndarray | None = None,
    tags_lo: int = 0,
) -> Records:
    """Records of every synapse in `frame` (pre_root_id, post_root_id, size_vx [, tag_code] [, ctr_*_nm]),
    grouped by bucket (cell index >> bucket_shift: a power of two, so no division per record) and direction.

    positions: the cells' nucleus positions in nm (cells x 3), or None. dense_tags: tag codes by synapse
    id - tags_lo (then frame has synapse_id instead of tag_code): read in the kernel, where a gather in
    the scan plan cost a pass of its own. The kernels run once per aligned piece (aligned_pieces: no copy
    of the input columns)."""
    by_id = dense_tags is not None
    read = ["pre_root_id", "post_root_id", "size_vx"]
    read += ["synapse_id"] if by_id else [name for name in ("tag_code",) if name in frame.columns]
    read += [f"ctr_{a}_nm" for a in "xyz"] if positions is not None else []
    pieces = [_piece(piece, by_id, positions is not None) for piece in aligned_pieces(frame, read)]
    spans = list(pairwise(np.cumsum([0, *(piece.rows for piece in pieces)]).tolist()))  # each piece's rows
    n = frame.height
    pre_value, post_value = np.empty(n, np.int32), np.empty(n, np.int32)
    slots = frozen(table.slots)
    counts, low, high = np.zeros(2 * buckets, np.int64), 0, 0
    for piece, (start, stop) in zip(pieces, spans, strict=True):
        piece_counts, piece_low, piece_high = _look_up(
            piece.pre,
            piece.post,
            piece.size,
            slots,
            table.bits,
            bucket_shift,
            buckets,
            pre_value[start:stop],
            post_value[start:stop],
        )
        counts += piece_counts
        low, high = min(low, piece_low), max(high, piece_high)
    offsets = np.zeros(2 * buckets + 1, np.int64)
    offsets[1:] = np.cumsum(counts)
    m = int(offsets[-1])
    # Int32 sizes when they fit (real cleft sizes do): 4 bytes less per record, spilled and read back
    sizes_out = np.empty(m, np.int32 if low >= -(2**31) and high < 2**31 else np.int64)
    cell, partner, flags = np.empty(m, np.int32), np.empty(m, np.int64), np.empty(m, np.uint8)
    dist = np.empty(m if positions is not None else 0, np.float64)
    dense = frozen(np.zeros(0, np.uint8) if dense_tags is None else dense_tags.astype(np.uint8, copy=False))
    pos = frozen(np.ascontiguousarray(positions if positions is not None else np.empty((0, 3)), dtype=np.float64))
    fill = offsets[:-1].copy()
    for piece, (start, stop) in zip(pieces, spans, strict=True):
        _place(
            piece.pre,
            piece.post,
            piece.size,
            piece.size_ok,
            piece.tag,
            piece.ids,
            dense,
            tags_lo,
            piece.ctr,
            pos,
            frozen(pre_value[start:stop]),
            frozen(post_value[start:stop]),
            bucket_shift,
            fill,
            cell,
            partner,
            sizes_out,
            flags,
            dist,
        )
    return Records(offsets, cell, partner, sizes_out, flags, dist, positions is not None)
