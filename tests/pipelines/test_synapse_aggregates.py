"""The phase-2 kernel: aggregates ignore the records' order; medians of even counts average the middle two.

(That they equal a brute-force recomputation, through every plan, is tests/pipelines/test_synapses.py.)"""

from __future__ import annotations

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
