"""The phase-2 kernel: aggregates ignore the records' order; medians of even counts average the middle two; the
warm-up compiles what builds use.

(That they equal a brute-force recomputation, through every plan, is tests/pipelines/test_synapses.py.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cellfeatures.pipelines import synapse_aggregates as sa
from cellfeatures.pipelines import synapse_kernels as sk
from tests.pipelines.kernel_inputs import CELLS, POSITIONS, RNG, ROOTS, synapses

FLAGS = (True, True, True)


def test_aggregates_do_not_depend_on_the_order_of_records() -> None:
    table = sk.root_table(ROOTS)
    batch = sk.scatter(synapses(30_000), table, 31, 1, POSITIONS).batch(0)
    order = RNG.permutation(batch["cell"].size)
    shuffled = {name: column[order] for name, column in batch.items()}
    a = sa.aggregate(batch, table, 0, CELLS.size, False, FLAGS)
    b = sa.aggregate(shuffled, table, 0, CELLS.size, False, FLAGS)
    assert a is not None and b is not None and a.equals(b), "bit for bit, distance means included"


def test_a_scratch_kept_between_batches_gives_what_a_fresh_one_gives() -> None:
    """Grouping writes over the scratch's arrays: left-overs of a larger batch, or of other dtypes, must not leak."""
    table = sk.root_table(ROOTS)
    kept = sa.GroupScratch()
    big = sk.scatter(synapses(30_000), table, 31, 1, POSITIONS).batch(1)
    small = sk.scatter(synapses(2_000), table, 31, 1, None).batch(0)
    wide = {**small, "size": small["size"].astype(np.int64) + 2**40}  # a range whose sizes need Int64
    for batch in (big, small, wide, big):
        fresh = sa.aggregate(batch, table, 0, CELLS.size, False, FLAGS)
        reused = sa.aggregate(batch, table, 0, CELLS.size, False, FLAGS, kept)
        assert fresh is not None and reused is not None and reused.equals(fresh)


def test_an_even_count_of_sizes_has_the_mean_of_the_middle_two_as_median() -> None:
    table = sk.root_table(ROOTS)
    batch = {
        "cell": np.zeros(5, np.int32),
        "partner": np.array([1, 1, 2, 3, 3]),
        "size": np.array([7, 1, 4, 100, 0]),
        "flags": np.array([0, 0, 0, 0, sk.SIZE_MISSING], np.uint8),
    }
    row = sa.aggregate(batch, table, 0, 1, True, (False, False, False)).row(0, named=True)  # type: ignore[union-attr]
    assert row["count"] == 5 and row["_sized"] == 4 and row["size_sum_vx"] == 112
    assert row["size_median_vx"] == pytest.approx((4 + 7) / 2) and row["partners"] == 3


def _sizes(kind: str, n: int) -> np.ndarray:
    rng = np.random.default_rng(n)
    if kind == "uniform":
        return rng.integers(0, 5_000, n)
    if kind == "log-normal":  # cleft sizes look like this
        return np.exp(rng.normal(6, 1.2, n)).astype(np.int64)
    if kind == "outliers":  # a few huge values stretch the histogram: most values share one bucket
        return np.where(rng.random(n) < 0.01, 10**11, rng.integers(1, 50, n))
    if kind == "few values":  # buckets one value wide
        return rng.integers(3, 6, n)
    return np.full(n, 42)  # all equal


@pytest.mark.parametrize("kind", ["uniform", "log-normal", "outliers", "few values", "equal"])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 17, 64, 65, 1_000, 20_001, 40_000])
def test_the_histogram_median_is_the_exact_median(kind: str, n: int) -> None:
    values = _sizes(kind, n)
    histogram, chosen = np.zeros(sa.MEDIAN_BUCKETS, np.int64), np.empty(n, np.int64)
    got = sa._median(values.copy(), histogram, chosen)
    assert got == np.median(values), "bit for bit: the mean of two integers as float64, like numpy's"
    assert not histogram.any(), "the histogram is left zeroed for the next cell"


WARM_UP_THEN_BUILD = """
from cellfeatures.pipelines import synapse_aggregates as sa, synapse_inputs as si, synapse_kernels as sk
from tests.pipelines.kernel_inputs import POSITIONS, ROOTS, synapses
sa.warm_up(("aggregates",))
aggregates = set(sa._aggregate.signatures)
sa.warm_up(("records",))
def kernels():
    return [set(k.signatures) for k in (sk._look_up, sk._place, si._dense_tags, si._dense_tags_ascending)]
scatters = kernels()
import numpy as np
import polars as pl
table = sk.root_table(ROOTS)
coded = synapses(2_000)  # tag codes in a column: the one-frame plan
chunked = pl.concat([coded.head(900), coded.tail(1_100)], rechunk=False)  # scattered chunk by chunk
untagged = coded.drop("tag_code")
by_id = coded.with_columns(pl.int_range(2_000).alias("synapse_id")).drop("tag_code")  # dense tags: big tables
tags = pl.DataFrame({"synapse_id": np.arange(2_000), "tag_code": coded["tag_code"]})
assert si.dense_tags(tags.reverse(), 0, 2_000) is not None  # out of id order: the marking pass
dense = si.dense_tags(tags, 0, 2_000)
for frame, tags in ((coded, None), (chunked, None), (untagged, None), (by_id, dense)):
    for positions in (None, POSITIONS):
        records = sk.scatter(frame, table, 31, 1, positions, tags, 0)
        for out in (0, 1):
            batch = records.batch(out)
            sa.aggregate(batch, table, 0, table.cells, out == 1, (True, True, positions is not None))
assert set(sa._aggregate.signatures) == aggregates, (aggregates, sa._aggregate.signatures)
assert kernels() == scatters, scatters
print("no new signature")
"""


def test_each_warm_up_part_compiles_the_signatures_real_synapses_use() -> None:
    """Each part alone (two processes may compile one each at once) leaves nothing for a build to compile.

    In a fresh interpreter: here, earlier tests may already have compiled the signatures."""
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", WARM_UP_THEN_BUILD], cwd=root, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 and "no new signature" in done.stdout, done.stdout + done.stderr


def test_an_unknown_warm_up_part_is_named() -> None:
    with pytest.raises(ValueError, match=r"warm_up parts are \('records', 'aggregates'\), got \['scatter'\]"):
        sa.warm_up(("scatter",))
