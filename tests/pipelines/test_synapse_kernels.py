"""The synapse kernels: records land in their cell's bucket, aggregates ignore the records' order.

(That they equal a brute-force recomputation, through every plan, is tests/pipelines/test_synapses.py.)"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from cellfeatures.pipelines import synapse_kernels as sk
from cellfeatures.pipelines.synapse_records import RootSets

RNG = np.random.default_rng(7)
CELLS = np.sort(RNG.choice(np.arange(10**17, 10**17 + 5000), 300, replace=False)).astype(np.int64)
NUCLEUS = np.union1d(CELLS, RNG.choice(np.arange(10**17, 10**17 + 6000), 200)).astype(np.int64)
EXC = np.sort(RNG.choice(NUCLEUS, 80, replace=False))
INH = np.sort(np.setdiff1d(RNG.choice(NUCLEUS, 80, replace=False), EXC))
ROOTS = RootSets(*(pl.Series(v) for v in (CELLS, NUCLEUS, EXC, INH)))
FLAGS = (True, True, True)


def synapses(n: int) -> pl.DataFrame:
    pool = np.arange(10**17, 10**17 + 7000)
    frame = pl.DataFrame(
        {
            "pre_root_id": RNG.choice(pool, n),
            "post_root_id": RNG.choice(pool, n),
            "size_vx": RNG.integers(0, 400, n),
            "tag_code": RNG.integers(0, 4, n).astype(np.uint8),
            **{f"ctr_{a}_nm": RNG.uniform(0, 1e5, n) for a in "xyz"},
        }
    )
    missing = pl.int_range(n) % 23 == 0
    return frame.with_columns(pl.when(missing).then(None).otherwise(pl.col("size_vx")).alias("size_vx"))


POSITIONS = RNG.uniform(0, 1e5, (CELLS.size, 3))


def test_the_root_table_finds_every_root_and_nothing_else() -> None:
    table = sk.root_table(ROOTS)
    frame = pl.DataFrame({"pre_root_id": np.r_[CELLS, 1, 2, 10**17 - 1], "post_root_id": np.full(CELLS.size + 3, 5)})
    records = sk.scatter(frame.with_columns(size_vx=pl.lit(1)), table, 31, 1, None)
    assert records.height == CELLS.size, "one output record per cell root, none for the other roots"
    assert np.array_equal(np.sort(records.cell), np.arange(CELLS.size, dtype=np.int32))


def test_every_record_lands_in_its_cells_bucket_and_direction() -> None:
    table = sk.root_table(ROOTS)
    frame = synapses(20_000)
    records = sk.scatter(frame, table, 5, 10, POSITIONS)  # buckets of 32 cells
    is_cell = {int(r): i for i, r in enumerate(CELLS)}
    expected = sum(int(r) in is_cell for r in frame["post_root_id"]) + sum(
        int(r) in is_cell for r in frame["pre_root_id"]
    )
    assert records.height == expected
    for k in range(20):
        cells = records.batch(k)["cell"]
        assert np.all(cells // 32 == k // 2), f"batch {k} holds only bucket {k // 2}'s cells"


def test_aggregates_do_not_depend_on_the_order_of_records() -> None:
    table = sk.root_table(ROOTS)
    batch = sk.scatter(synapses(30_000), table, 31, 1, POSITIONS).batch(0)
    order = RNG.permutation(batch["cell"].size)
    shuffled = {name: column[order] for name, column in batch.items()}
    a = sk.aggregate(batch, table, 0, CELLS.size, False, FLAGS)
    b = sk.aggregate(shuffled, table, 0, CELLS.size, False, FLAGS)
    assert a is not None and b is not None and a.equals(b), "bit for bit, distance means included"


def test_an_even_count_of_sizes_has_the_mean_of_the_middle_two_as_median() -> None:
    table = sk.root_table(ROOTS)
    batch = {
        "cell": np.zeros(5, np.int32),
        "partner": np.array([1, 1, 2, 3, 3]),
        "size": np.array([7, 1, 4, 100, 0]),
        "flags": np.array([0, 0, 0, 0, sk.SIZE_MISSING], np.uint8),
    }
    row = sk.aggregate(batch, table, 0, 1, True, (False, False, False)).row(0, named=True)  # type: ignore[union-attr]
    assert row["count"] == 5 and row["_sized"] == 4 and row["size_sum_vx"] == 112
    assert row["size_median_vx"] == pytest.approx((4 + 7) / 2) and row["partners"] == 3
