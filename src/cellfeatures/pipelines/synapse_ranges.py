"""The synapse family's two-phase plan for big tables, shared by the local and the Dask engine.

Phase 1, one unit per synapse-id range: read the range's synapses and target tags from the source,
drop synapses touching no attributable cell, turn them into records grouped by cell bucket and direction
(synapse_kernels.scatter: no sort) and write one spill file (record_runs) whose run `2 * bucket + out`
holds that bucket's records (a bucket is a block of consecutive cells). Phase 2, one unit per bucket: its
runs from every range file, read into one array per column, aggregated per cell
(synapse_aggregates.aggregate). The local engine runs the units in this process, overlapping reads, the
kernels (which release the GIL) and writes on threads; the Dask engine runs each unit as a task
(cellfeatures.pipelines.execution). Both call the same functions on the same ranges and buckets, and every
aggregate is independent of the records' order, so their matrices are bit-for-bit identical to each other
and to the one-frame plan (tested).

Files are written under a temporary name and renamed: a unit that is retried (a lost worker) never
leaves half a file where phase 2 would read it.
"""

from __future__ import annotations

import gc
import queue
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from cellfeatures._util.runtime import keep_freed_heap
from cellfeatures.pipelines import record_runs as rr
from cellfeatures.pipelines import synapse_aggregates as sa
from cellfeatures.pipelines import synapse_inputs as si
from cellfeatures.pipelines import synapse_kernels as sk
from cellfeatures.pipelines.synapse_records import (
    RootSets,
    clean_synapses,
    refuse_duplicated_tags,
    refuse_unknown_tags,
)
from cellfeatures.sources.normalize import NO_TAG, canonical_synapse_tags, canonical_synapses

READ_AHEAD = 2  # ranges read while one is scattered
# phase 2: batches read ahead from the spill files while others are aggregated (aggregate_local)
READERS, AGGREGATORS = 2, 2
BATCH_BUFFERS = READERS + AGGREGATORS
DENSE_TAG_SPAN = 2**28  # ids per range up to which tags are looked up in a dense byte array (256 MiB)


@dataclass(frozen=True)
class RangePlan:
    """Everything a unit needs besides its id range or bucket: small, picklable, no synapse data.

    `source_config` reopens the source where the unit runs (a Dask worker reads its range straight
    from the shared files, nothing is shipped through the client).
    """

    source_config: dict[str, Any]
    syn_table: str
    tag_table: str
    resolution_nm: tuple[float, float, float]
    roots: RootSets
    positions: np.ndarray | None  # the cells' nucleus positions (nm, cells x 3, in roots.cells order), or None
    flags: tuple[bool, bool, bool]  # with tags, with partner labels, with positions
    bucket_shift: int  # a bucket is 2**bucket_shift consecutive cells

    @property
    def cells_per_bucket(self) -> int:
        return 1 << self.bucket_shift

    @property
    def buckets(self) -> int:
        return max(1, -(-self.roots.cells.len() // self.cells_per_bucket))

    def bucket_cells(self, bucket: int) -> tuple[int, int]:
        """(first cell index, number of cells) of a bucket."""
        first = bucket * self.cells_per_bucket
        return first, max(0, min(self.cells_per_bucket, self.roots.cells.len() - first))


def bucket_shift_for(cells: int, buckets: int) -> int:
    """The smallest power-of-two bucket size that splits `cells` into at most `buckets` buckets."""
    return max(0, int(np.ceil(np.log2(max(1, -(-cells // max(1, buckets)))))))


def plan_ranges(lo: int, hi: int, rows: int, range_rows: int, taper: bool = False) -> list[tuple[int, int]]:
    """[a, b) synapse-id ranges of about range_rows rows each (ids are roughly uniform in CAVE tables).

    taper: the first and last ranges are cut in a quarter and three quarters (the quarter outside). The local
    plan overlaps reading a range with scattering the one before: the first range is read with nothing to
    overlap, the last scattered and written with nothing to overlap, so a small one at each end shortens both.
    """
    n_ranges = max(1, -(-rows // range_rows))
    edges = [lo + (hi + 1 - lo) * i // n_ranges for i in range(n_ranges + 1)]
    if taper and n_ranges >= 2:
        first = edges[0] + (edges[1] - edges[0]) // 4
        last = edges[-1] - (edges[-1] - edges[-2]) // 4
        edges = [edges[0], first, *edges[1:-1], last, edges[-1]]
    return [(a, b) for a, b in pairwise(edges) if b > a]


def source_frames(plan: RangePlan, source: Any) -> tuple[pl.LazyFrame, pl.LazyFrame | None]:
    """The canonical synapse and tag scans of a (re)opened source, as the family's build makes them."""
    raw = source.scan(plan.syn_table)
    syn = clean_synapses(canonical_synapses(raw, plan.resolution_nm, positions=plan.flags[2]))
    tags = canonical_synapse_tags(source.scan(plan.tag_table)) if plan.tag_table else None
    return syn, tags


@dataclass
class RangeFrame:
    """One range's synapses touching a cell, and their tags: a tag_code column, or dense codes by id."""

    synapses: pl.DataFrame
    dense_tags: np.ndarray | None
    lo: int


def range_frame(syn: pl.LazyFrame, tags: pl.LazyFrame | None, plan: RangePlan, a: int, b: int) -> RangeFrame:
    """Synapses of ids [a, b) touching a cell, and their tags (the range's tags are read here)."""
    cell_roots = plan.roots.cells.implode()
    in_range = (pl.col("synapse_id") >= a) & (pl.col("synapse_id") < b)
    # synapses that touch no attributable cell contribute to no feature: drop them while reading
    touches_a_cell = pl.col("pre_root_id").is_in(cell_roots) | pl.col("post_root_id").is_in(cell_roots)
    frame = syn.filter(in_range & touches_a_cell)
    dense = None
    if tags is not None:
        frame, dense = with_tag_codes(frame, tags.filter(in_range).collect(), plan.tag_table, a, b)
    return RangeFrame(frame.collect(), dense, a)


def range_records(frame: RangeFrame, plan: RangePlan, table: sk.RootTable) -> sk.Records:
    """One range's records, grouped by bucket and direction."""
    return sk.scatter(
        frame.synapses, table, plan.bucket_shift, plan.buckets, plan.positions, frame.dense_tags, frame.lo
    )


def aggregate_batch(
    batch: dict[str, np.ndarray], plan: RangePlan, table: sk.RootTable, k: int, scratch: sa.GroupScratch
) -> pl.DataFrame | None:
    """Batch k (bucket k // 2, direction out if k is odd), aggregated per cell."""
    first, cells = plan.bucket_cells(k // 2)
    return sa.aggregate(batch, table, first, cells, k % 2 == 1, plan.flags, scratch)


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Few new objects, a large heap: 1.5% of a profile of the plan was the collector rescanning it."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def run_local(
    syn: pl.LazyFrame,
    tags: pl.LazyFrame | None,
    plan: RangePlan,
    ranges: list[tuple[int, int]],
    scratch: Path,
    tick: Any = None,
) -> pl.DataFrame:
    """Both phases in this process; returns per-(root, out) aggregates.

    1. Synapses and target tags are read one synapse-id range at a time (both tables are sorted by
       synapse id in CAVE exports, so Parquet statistics skip everything outside the range) on one
       thread, while this one scatters the previous range's records and another writes them.
    2. Each (bucket, direction) batch is read from every range file and aggregated (aggregate_local).
    """
    keep_freed_heap()
    files: list[Path] = []
    with _no_cyclic_gc(), ThreadPoolExecutor(max_workers=1) as io, ThreadPoolExecutor(max_workers=1) as ahead:
        pending: Future[None] | None = None
        # READ_AHEAD ranges read ahead: with one, a read that finished before the scatter left its core idle
        frames = deque(ahead.submit(range_frame, syn, tags, plan, *r) for r in ranges[:READ_AHEAD])
        # built while the first range is read: a process's first kernel call also loads numba (~0.6 s)
        table = sk.root_table(plan.roots)
        for i in range(len(ranges)):
            frame = frames.popleft().result()
            if i + READ_AHEAD < len(ranges):
                frames.append(ahead.submit(range_frame, syn, tags, plan, *ranges[i + READ_AHEAD]))
            records = range_records(frame, plan, table)
            del frame
            if pending is not None:
                pending.result()  # at most one range's records in flight
            files.append(scratch / f"range-{len(files):05d}.runs")
            pending = io.submit(rr.write_runs, records.columns(), records.offsets, files[-1])
            del records
            if tick:
                tick("synapse ranges", i + 1, len(ranges))
        if pending is not None:
            pending.result()

    parts = aggregate_local(files, plan, table, tick)
    return pl.concat(parts) if parts else pl.DataFrame()


def aggregate_local(files: list[Path], plan: RangePlan, table: sk.RootTable, tick: Any = None) -> list[pl.DataFrame]:
    """Phase 2 in this process: every batch read from the range files and aggregated, in order. The files
    are unlinked once open and freed on a thread of their own at the end (record_runs.consume_runs).

    The files are read around the page cache (record_runs), so a read waits for the disk instead of
    copying from memory: READERS threads read batches ahead into BATCH_BUFFERS sets of column buffers
    while AGGREGATORS threads aggregate the ones read (the kernel releases the GIL). Buffers and grouping
    scratch are made once and passed round: no allocation, no page faults after the first batches."""
    parts: list[pl.DataFrame] = []
    with (
        rr.consume_runs(files) as readers,
        _no_cyclic_gc(),
        ThreadPoolExecutor(max_workers=READERS) as reading,
        ThreadPoolExecutor(max_workers=AGGREGATORS) as aggregating,
    ):
        free: queue.SimpleQueue[dict[str, np.ndarray] | None] = queue.SimpleQueue()  # None: stop reading
        for _ in range(BATCH_BUFFERS):
            free.put(rr.column_buffers(readers))
        scratches: queue.SimpleQueue[sa.GroupScratch] = queue.SimpleQueue()
        for _ in range(AGGREGATORS):
            scratches.put(sa.GroupScratch())

        def read(k: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
            buffers = free.get()  # reads are submitted in batch order: an earlier batch frees these
            if buffers is None:
                raise RuntimeError("phase 2 stopped: another batch failed")
            try:
                return buffers, rr.read_batch(readers, k, buffers)
            except BaseException:
                free.put(buffers)
                raise

        def aggregate(k: int, batch_read: Future[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]) -> Any:
            buffers, batch = batch_read.result()
            scratch = scratches.get()
            try:
                return aggregate_batch(batch, plan, table, k, scratch)
            finally:
                scratches.put(scratch)
                free.put(buffers)

        batches = range(2 * plan.buckets)
        reads = [reading.submit(read, k) for k in batches]
        try:
            for k, part in enumerate(aggregating.map(aggregate, batches, reads)):
                if part is not None:
                    parts.append(part)
                if tick and k % 2 == 1:
                    tick("synapse buckets", k // 2 + 1, plan.buckets)
        finally:  # after a failure: no read may wait for buffers whose batch will not be aggregated
            for pending in reads:
                pending.cancel()
            for _ in range(READERS):
                free.put(None)
    return parts


# ------------------------------------------------------------------ the units as remote tasks


def spill_range_task(plan: RangePlan, a: int, b: int, target: str) -> dict[str, Any]:
    """Phase-1 task body: reopen the source, write range [a, b)'s records to `target` (temporary name, then
    rename), report what it cost. Runs on a worker; reads nothing from the client."""
    import resource

    import fsspec

    from cellfeatures.sources.factory import make_source

    started = time.perf_counter()
    keep_freed_heap()
    syn, tags = source_frames(plan, make_source(plan.source_config))
    records = range_records(range_frame(syn, tags, plan, a, b), plan, sk.root_table(plan.roots))
    fs, path = fsspec.core.url_to_fs(target)
    fs.makedirs(fs._parent(path), exist_ok=True)
    tmp = f"{path}.tmp-{time.time_ns()}"
    with fs.open(tmp, "wb") as sink:
        rr.write_runs(records.columns(), records.offsets, sink)
    fs.mv(tmp, path)
    return {
        "target": target,
        "bytes": int(fs.size(path)),
        "records": records.height,
        "seconds": time.perf_counter() - started,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def aggregate_bucket_task(files: list[str], bucket: int, plan: RangePlan) -> dict[str, Any]:
    """Phase-2 task body: bucket `bucket`'s records from every range file, aggregated, both directions."""
    import resource

    import fsspec

    started = time.perf_counter()
    table = sk.root_table(plan.roots)

    def opener(url: str) -> Any:
        fs, path = fsspec.core.url_to_fs(url)
        return lambda: fs.open(path, "rb")

    with rr.open_runs([opener(f) for f in files], names=files) as readers:
        buffers = rr.column_buffers(readers, range(2 * bucket, 2 * bucket + 2))
        scratch = sa.GroupScratch()
        parts = [
            aggregate_batch(rr.read_batch(readers, k, buffers), plan, table, k, scratch)
            for k in (2 * bucket, 2 * bucket + 1)
        ]
    return {
        "parts": [p for p in parts if p is not None],
        "seconds": time.perf_counter() - started,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def with_tag_codes(
    synapses: pl.LazyFrame, tags: pl.DataFrame, table: str, lo: int, hi: int
) -> tuple[pl.LazyFrame, np.ndarray | None]:
    """The tag codes (see canonical_synapse_tags; 0 when untagged) of synapses with ids in [lo, hi): either
    a dense array over the id range (code of id i at i - lo; the kernel reads it, synapses unchanged) or,
    when the range is too sparse for one, synapses with a tag_code column (and None).

    Duplicated predictions are refused (they would double-count). The dense array takes the tags by
    position: measured on 10M synapses, 0.09 s against 0.27 s for a sorted merge and 1.1 s for a hash
    join; it also proves uniqueness for free: n distinct ids fill n slots (a row without a tag marks its
    slot too).
    """
    refuse_unknown_tags(tags, table)
    if hi - lo <= DENSE_TAG_SPAN:
        dense = si.dense_tags(tags, lo, hi)
        if dense is not None:
            return synapses, dense
    refuse_duplicated_tags(tags, table)
    coded = tags.lazy().select("synapse_id", "tag_code")
    joined = synapses.join(coded, on="synapse_id", how="left").with_columns(pl.col("tag_code").fill_null(NO_TAG))
    return joined, None
