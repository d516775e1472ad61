"""The synapse family's phase-2 kernel: a bucket's records -> one row of aggregates per cell.

The records come from synapse_kernels.scatter (any plan, any number of ranges, any order). A first pass
counts records per cell; grouping them by cell is a counting sort in two steps, into runs of 128 cells and
then within each run (a few hundred write streams each, where one step over a bucket's 8,192 cells had
24,000: measured 13-21 -> 9.5 ns per record). Then, per cell: the exact median from a histogram of its
sizes (a quickselect only within the middle bucket), distinct partners from a small hash set, both linear;
size sums, tags and partner classes added up in registers (in the first pass they were adds scattered
across the bucket's cells: 23.5 -> 19.9 ns per record for the whole kernel); distances sorted so that their
mean has one summation order whatever the plan. The arrays grouping needs come from a GroupScratch the
caller keeps: allocated anew per batch, they were page-faulted anew (phase 2 of the 100M benchmark: 35k
page faults, 14k with the scratch).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
from numba import njit

from cellfeatures.pipelines.synapse_inputs import frozen
from cellfeatures.pipelines.synapse_kernels import (
    CLASS_SHIFT,
    HAS_NUCLEUS,
    SIZE_MISSING,
    TAG_SHIFT,
    RootTable,
    hash_slot,
)
from cellfeatures.pipelines.synapse_records import TAGS

# The per-(cell, direction) aggregates, named like the features without their prefix, or `_x` helpers
# that synapses.direction_features turns into fractions.
INT_AGGREGATES = (
    "count",
    "_sized",
    "size_sum_vx",
    "partners",
    "_partners_nuc",
    "_spine",
    "_shaft",
    "_soma",
    "_exc",
    "_inh",
)
FLOAT_AGGREGATES = ("size_median_vx", "soma_dist_mean_um", "soma_dist_p90_um")
# the aggregates that exist only with tags, with partner labels, with positions (the order of `flags`)
OPTIONAL = (tuple(f"_{t}" for t in TAGS), ("_exc", "_inh"), ("soma_dist_mean_um", "soma_dist_p90_um"))


class GroupScratch:
    """The arrays that grouping a batch by cell writes into, kept between batches (one per thread): grown
    with 25% to spare when a batch needs more, never shrunk."""

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}

    def take(self, name: str, rows: int, dtype: Any) -> np.ndarray:
        array = self._arrays.get(name)
        if array is None or array.size < rows or array.dtype != dtype:
            array = self._arrays[name] = np.empty(rows + rows // 4, dtype)
        return array[:rows]

    def for_batch(self, rows: int, size_dtype: Any, with_positions: bool) -> tuple[np.ndarray, ...]:
        """Runs step: cell, partner, size, flags, dist; grouped: partner, size, flags, dist (in _aggregate's
        order; the dist arrays are empty without positions)."""
        dist_rows = rows if with_positions else 0
        return (
            self.take("run_cell", rows, np.int32),
            self.take("run_partner", rows, np.int64),
            self.take("run_size", rows, size_dtype),
            self.take("run_flags", rows, np.uint8),
            self.take("run_dist", dist_rows, np.float64),
            self.take("partner", rows, np.int64),
            self.take("size", rows, size_dtype),
            self.take("flags", rows, np.uint8),
            self.take("dist", dist_rows, np.float64),
        )


def aggregate(
    batch: dict[str, np.ndarray],
    table: RootTable,
    first_cell: int,
    cells: int,
    out: bool,
    flags: tuple[bool, bool, bool],
    scratch: GroupScratch | None = None,
) -> pl.DataFrame | None:
    """One (bucket, direction)'s records -> one row per cell with records: root, the aggregates, `out`.

    flags: (with tags, with partner labels, with positions): the columns of what is absent are left out,
    as the features are. None when the batch is empty. scratch: kept by a caller that aggregates many
    batches (one per thread), else made here.
    """
    m = batch["cell"].size
    if not m:
        return None
    dist = batch.get("dist", np.empty(0, np.float64))
    size = batch["size"]
    work = (scratch or GroupScratch()).for_batch(m, size.dtype, dist.size == m)
    ints, floats = _aggregate(  # sizes as they come (Int32 or Int64): numba compiles one version each
        frozen(batch["cell"].astype(np.int32, copy=False)),
        frozen(batch["partner"].astype(np.int64, copy=False)),
        frozen(size),
        frozen(batch["flags"].astype(np.uint8, copy=False)),
        frozen(dist.astype(np.float64, copy=False)),
        first_cell,
        cells,
        *work,
    )
    present = ints[:, 0] > 0
    columns: dict[str, pl.Series] = {
        "root": pl.Series("root", table.cell_roots[first_cell : first_cell + cells][present])
    }
    absent = {name for group, made in zip(OPTIONAL, flags, strict=True) if not made for name in group}
    for j, name in enumerate(INT_AGGREGATES):
        if name not in absent:
            columns[name] = pl.Series(name, ints[present, j])
    for j, name in enumerate(FLOAT_AGGREGATES):
        if name not in absent:
            columns[name] = pl.Series(name, floats[present, j], nan_to_null=True)
    return pl.DataFrame(columns).with_columns(pl.lit(out).alias("out"))


RUN_SHIFT = 7  # grouping goes through runs of 2**7 cells


@njit(cache=True, nogil=True)
def _aggregate(
    cell: np.ndarray,
    partner: np.ndarray,
    size: np.ndarray,
    flags: np.ndarray,
    dist: np.ndarray,
    first_cell: int,
    cells: int,
    run_cell: np.ndarray,
    run_partner: np.ndarray,
    run_size: np.ndarray,
    run_flags: np.ndarray,
    run_dist: np.ndarray,
    grouped_partner: np.ndarray,
    grouped_size: np.ndarray,
    grouped_flags: np.ndarray,
    grouped_dist: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Per local cell: integer aggregates (cells x 10, in INT_AGGREGATES' order) and float ones (cells x 3:
    median size, mean and 90th percentile of distances; NaN where undefined). The run_* and grouped_* arrays
    (as long as the batch; the dist ones empty without positions) are written over."""
    m = cell.size
    with_positions = dist.size == m and m > 0
    ints = np.zeros((cells, 10), np.int64)
    floats = np.full((cells, 3), np.nan)
    counts = np.zeros(cells + 1, np.int64)
    for i in range(m):  # records per cell (the other sums wait for the grouping: then they are per cell)
        c = cell[i] - first_cell
        if c < 0 or c >= cells:  # a batch of another bucket: refuse rather than write out of bounds
            raise ValueError("a record's cell lies outside the bucket being aggregated")
        counts[c + 1] += 1
    starts = np.cumsum(counts)
    # a counting sort in two steps, each column written once per step (sequential reads; gathering through
    # a permutation instead costs a cache miss per column and record: 103 against ~40 ns per record)
    runs = (cells + (1 << RUN_SHIFT) - 1) >> RUN_SHIFT
    run_fill = np.empty(runs, np.int64)
    for r in range(runs):
        run_fill[r] = starts[r << RUN_SHIFT]
    for i in range(m):  # into runs of 128 cells
        c = cell[i] - first_cell
        r = c >> RUN_SHIFT
        j = run_fill[r]
        run_fill[r] = j + 1
        run_cell[j] = c
        run_partner[j] = partner[i]
        run_size[j] = size[i]
        run_flags[j] = flags[i]
        if with_positions:
            run_dist[j] = dist[i]
    fill = starts[:-1].copy()
    for i in range(m):  # within each run (a few hundred KB, cache-resident), by cell
        c = run_cell[i]
        j = fill[c]
        fill[c] = j + 1
        grouped_partner[j] = run_partner[i]
        grouped_size[j] = run_size[i]
        grouped_flags[j] = run_flags[i]
        if with_positions:
            grouped_dist[j] = run_dist[i]
    largest = 0
    for c in range(cells):
        largest = max(largest, starts[c + 1] - starts[c])
    sizes = np.empty(largest, np.int64)
    dists = np.empty(largest, np.float64)
    seen = np.zeros(_table_size(largest), np.int64)  # a hash set of partner roots (0: empty; no root is 0)
    histogram, chosen = np.zeros(MEDIAN_BUCKETS, np.int64), np.empty(largest, np.int64)
    by_code = np.zeros(8, np.int64)
    for c in range(cells):
        a, b = starts[c], starts[c + 1]
        if a == b:
            continue
        ints[c, 0] = b - a
        ints[c, 3], ints[c, 4] = _distinct_partners(grouped_partner[a:b], grouped_flags[a:b], seen)
        # sums over the cell's records, in registers (in the first pass they were scattered adds across the
        # bucket's cells); by_code[k]: records with tag k (1-3 spine, shaft, soma) / class k - 4 (5-6)
        sized = size_sum = 0
        by_code[:] = 0
        for j in range(a, b):
            f = grouped_flags[j]
            if not f & SIZE_MISSING:
                sizes[sized] = grouped_size[j]
                size_sum += grouped_size[j]
                sized += 1
            by_code[(f >> TAG_SHIFT) & 3] += 1
            by_code[4 + ((f >> CLASS_SHIFT) & 3)] += 1
        ints[c, 1], ints[c, 2] = sized, size_sum
        ints[c, 5], ints[c, 6], ints[c, 7] = by_code[1], by_code[2], by_code[3]  # spine, shaft, soma
        ints[c, 8], ints[c, 9] = by_code[5], by_code[6]  # excitatory, inhibitory
        if sized:
            floats[c, 0] = _median(sizes[:sized], histogram, chosen)
        n_dist = 0
        if with_positions:
            for j in range(a, b):
                if not np.isnan(grouped_dist[j]):
                    dists[n_dist] = grouped_dist[j]
                    n_dist += 1
        if n_dist:
            d = dists[:n_dist]
            d.sort()  # a fixed summation order: the mean's last bit must not depend on the plan
            acc = 0.0
            for v in d:
                acc += v
            floats[c, 1] = acc / n_dist
            rank = 0.9 * (n_dist - 1)
            lo = int(np.floor(rank))
            hi = min(lo + 1, n_dist - 1)
            floats[c, 2] = d[lo] + (d[hi] - d[lo]) * (rank - lo)
    return ints, floats


@njit(inline="always")
def _table_size(n: int) -> int:
    size = 16
    while size < 2 * n:
        size *= 2
    return size


@njit(cache=True, nogil=True)
def _distinct_partners(partners: np.ndarray, flags: np.ndarray, seen: np.ndarray) -> tuple[int, int]:
    """Distinct partners, and how many of them carry a nucleus (a property of the partner root), through
    a hash set in `seen` (zeros, left zeroed): linear, where sorting each cell's partners cost ~25 ns per
    record."""
    size = _table_size(partners.size)
    shift, mask = 64 - int(np.log2(size)), size - 1
    distinct = with_nucleus = 0
    for j in range(partners.size):
        key = partners[j]
        h = hash_slot(key, shift)
        while seen[h] != 0 and seen[h] != key:
            h = (h + 1) & mask
        if seen[h] == 0:
            seen[h] = key
            distinct += 1
            if flags[j] & HAS_NUCLEUS:
                with_nucleus += 1
    seen[:size] = 0
    return distinct, with_nucleus


@njit(cache=True, nogil=True)
def _select(values: np.ndarray, k: int) -> int:
    """The k-th smallest of values (reordered in place): quickselect, linear on average."""
    lo, hi = 0, values.size - 1
    while lo < hi:
        pivot = values[(lo + hi) >> 1]
        i, j = lo, hi
        while i <= j:
            while values[i] < pivot:
                i += 1
            while values[j] > pivot:
                j -= 1
            if i <= j:
                values[i], values[j] = values[j], values[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            break
    return values[k]


MEDIAN_BUCKETS = 4096  # the most buckets a median's histogram uses (a cell's records / 4, at least 16)


@njit(cache=True, nogil=True)
def _median(values: np.ndarray, histogram: np.ndarray, chosen: np.ndarray) -> float:
    """The median as a float (mean of the middle two for an even count), like polars' and statistics'.

    Why a histogram: a quickselect over a cell's sizes mispredicts a branch per comparison, about 10 of
    the 30 ns per record of the whole aggregation. Here the values are counted into equal-width buckets
    (about 4 values each), the bucket(s) holding the middle rank(s) found by a running sum, and only their
    values selected: ~2.5 ns per value (log-normal sizes; tests/pipelines/test_synapse_aggregates.py checks it
    against numpy). With a bucket 1 wide the bucket is the value, nothing is selected; a few outliers that
    stretch the range put most values in one bucket, and the selection is then the old quickselect.
    histogram: >= MEDIAN_BUCKETS zeros, left zeroed; chosen: scratch as long as values."""
    n = values.size
    lo = hi = values[0]
    for j in range(1, n):
        lo = min(lo, values[j])
        hi = max(hi, values[j])
    if lo == hi:
        return np.float64(lo)
    buckets = 16
    while buckets * 4 < n and buckets < MEDIAN_BUCKETS:
        buckets *= 2
    shift = 0
    while ((hi - lo) >> shift) >= buckets:
        shift += 1
    used = ((hi - lo) >> shift) + 1
    for j in range(n):
        histogram[(values[j] - lo) >> shift] += 1
    upper_rank = n // 2
    lower_rank = upper_rank if n % 2 else upper_rank - 1
    below = 0  # values in buckets before `first`
    first = 0
    while below + histogram[first] <= lower_rank:
        below += histogram[first]
        first += 1
    last, through = first, below
    while through + histogram[last] <= upper_rank:
        through += histogram[last]
        last += 1
    histogram[:used] = 0
    if shift == 0:  # a bucket is one value
        lower, upper = lo + first, lo + last
    else:
        m = 0
        for j in range(n):
            bucket = (values[j] - lo) >> shift
            if first <= bucket <= last:
                chosen[m] = values[j]
                m += 1
        upper = _select(chosen[:m], upper_rank - below)
        lower = upper if n % 2 else _select(chosen[:m], lower_rank - below)
    return (np.float64(lower) + np.float64(upper)) / 2.0


WARM_UP_PARTS = ("records", "aggregates")


def warm_up(parts: tuple[str, ...] = WARM_UP_PARTS) -> None:
    """Compile (or load from numba's cache) every kernel with the types real tables give them.

    A process that first meets an empty cache compiles for about 10 s (records ~6 s, aggregates ~4 s);
    whoever runs many processes at once (a test session, a cluster) calls this once first, and the others
    load the result. The two parts compile independently (numba caches each function in its own files), so
    two processes can compile one part each at the same time."""
    from cellfeatures.pipelines import synapse_inputs as si
    from cellfeatures.pipelines import synapse_kernels as sk
    from cellfeatures.pipelines.synapse_records import RootSets

    unknown = set(parts) - set(WARM_UP_PARTS)
    if unknown:
        raise ValueError(f"warm_up parts are {WARM_UP_PARTS}, got {sorted(unknown)}")
    if "records" in parts:
        roots = RootSets(pl.Series([5, 6, 7]), pl.Series([5, 6, 7]), pl.Series([5]), pl.Series([6]))
        table = sk.root_table(roots)
        frame = pl.DataFrame(
            {"synapse_id": [1, 2], "pre_root_id": [5, 6], "post_root_id": [6, 7], "size_vx": [1, None]},
            schema_overrides={"size_vx": pl.Int64},
        ).with_columns(pl.lit(1.0).alias(f"ctr_{a}_nm") for a in "xyz")
        tags = pl.DataFrame({"synapse_id": [1, 2], "tag_code": [1, 2]}, schema_overrides={"tag_code": pl.UInt8})
        si.dense_tags(tags.reverse(), 0, 3)  # ids out of order: the marking pass
        dense = si.dense_tags(tags, 0, 3)
        for positions in (None, np.zeros((3, 3))):
            sk.scatter(frame, table, 31, 1, positions, dense, 0)
    if "aggregates" in parts:  # a batch with the dtypes scatter gives (Int32 sizes: real cleft sizes fit)
        slots = np.zeros((16, 2), np.int64)
        slots[:, 1] = -1
        table = sk.RootTable(slots, 4, np.array([5, 6, 7], np.int64))
        for dist in (None, np.array([1.0, 2.0])):
            batch: dict[str, np.ndarray] = {
                "cell": np.array([0, 2], np.int32),
                "partner": np.array([6, 5], np.int64),
                "size": np.array([1, 0], np.int32),
                "flags": np.array([1, sk.SIZE_MISSING], np.uint8),
            }
            if dist is not None:
                batch["dist"] = dist
            aggregate(batch, table, 0, 3, False, (True, True, dist is not None))
