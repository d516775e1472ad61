"""The phase-1 kernel: the root table finds exactly the known roots; records land in their cell's bucket.

(That they equal a brute-force recomputation, through every plan, is tests/pipelines/test_synapses.py.)"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from cellfeatures.pipelines import synapse_kernels as sk
from tests.pipelines.kernel_inputs import CELLS, POSITIONS, ROOTS, synapses


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


def test_more_cells_than_the_packed_lookup_holds_is_refused_not_wrapped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sk, "MAX_CELLS", CELLS.size)
    from cellfeatures.errors import IdentityError

    with pytest.raises(IdentityError, match="attributable cells"):
        sk.root_table(ROOTS)


def test_input_arrays_concatenate_chunks_into_memory_reused_from_one_range_to_the_next() -> None:
    inputs = sk.InputArrays()
    first = pl.concat([pl.Series("x", [1, 2, 3]), pl.Series("x", [4, 5])], rechunk=False)
    assert first.n_chunks() == 2
    a = inputs.of("x", first, pl.Int64)
    assert a.dtype == np.int64 and a.tolist() == [1, 2, 3, 4, 5]
    second = pl.concat([pl.Series("x", [7]), pl.Series("x", [8, 9])], rechunk=False)
    b = inputs.of("x", second, pl.Int64)
    assert b.tolist() == [7, 8, 9] and np.shares_memory(a, b), "the second range reuses the first's array"
    larger = pl.concat([pl.Series("x", list(range(10))), pl.Series("x", [10])], rechunk=False)
    assert inputs.of("x", larger, pl.Int64).tolist() == list(range(11)), "grows when a range is larger"
    assert inputs.of("y", second, pl.UInt8).dtype == np.uint8


def test_input_arrays_leave_one_chunk_and_null_holding_columns_to_polars() -> None:
    inputs = sk.InputArrays()
    one = pl.Series("x", [1, 2, 3])
    assert inputs.of("x", one, pl.Int64).tolist() == [1, 2, 3]
    with_null = pl.concat([pl.Series("x", [1, None]), pl.Series("x", [3])], rechunk=False)
    got = inputs.of("x", with_null, pl.Int64)
    assert np.isnan(got[1]) and got[2] == 3, "nulls as polars hands them out (the caller fills them first)"
    assert sk.as_array(with_null.fill_null(0), pl.Int64, None, "x").tolist() == [1, 0, 3]
