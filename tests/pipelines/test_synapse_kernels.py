"""The phase-1 kernel: the root table finds exactly the known roots; records land in their cell's bucket.

(That they equal a brute-force recomputation, through every plan, is tests/pipelines/test_synapses.py.)"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from cellfeatures.pipelines import synapse_inputs as si
from cellfeatures.pipelines import synapse_kernels as sk
from tests.pipelines.kernel_inputs import CELLS, POSITIONS, ROOTS, in_chunks, synapses


def test_the_root_table_finds_every_root_and_nothing_else() -> None:
    table = sk.root_table(ROOTS)
    frame = pl.DataFrame({"pre_root_id": np.r_[CELLS, 1, 2, 10**17 - 1], "post_root_id": np.full(CELLS.size + 3, 5)})
    records = sk.scatter(frame.with_columns(size_vx=pl.lit(1)), table, 31, 1, None)
    assert records.height == CELLS.size, "one output record per cell root, none for the other roots"
    assert np.array_equal(np.sort(records.cell), np.arange(CELLS.size, dtype=np.int32))


def test_root_0_is_no_root_even_where_an_empty_slot_holds_0() -> None:
    table = sk.root_table(ROOTS)
    frame = pl.DataFrame({"pre_root_id": [0, 0, int(CELLS[0])], "post_root_id": [int(CELLS[1]), 0, 0]})
    records = sk.scatter(frame.with_columns(size_vx=pl.lit(1)), table, 31, 1, None)
    assert records.height == 2, "one input of CELLS[1], one output of CELLS[0]: nothing for root 0"
    assert sorted(records.cell.tolist()) == [0, 1] and sorted(records.partner.tolist()) == [0, 0]


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


@pytest.mark.parametrize("with_positions", [False, True])
@pytest.mark.parametrize("tags_by_id", [False, True])
def test_a_frame_in_chunks_scatters_to_the_same_records_as_in_one(with_positions: bool, tags_by_id: bool) -> None:
    table = sk.root_table(ROOTS)
    frame = synapses(50_000)  # sizes missing in every chunk (every 23rd row)
    dense = None
    if tags_by_id:
        tags = pl.DataFrame({"synapse_id": np.arange(50_000), "tag_code": frame["tag_code"]})
        frame = frame.drop("tag_code").with_columns(pl.int_range(50_000).alias("synapse_id"))
        dense = si.dense_tags(in_chunks(tags, 12_345), 0, 50_000)
        assert dense is not None and np.array_equal(dense, tags["tag_code"].to_numpy())
    positions = POSITIONS if with_positions else None
    whole = sk.scatter(frame, table, 5, 10, positions, dense, 0)
    chunked = in_chunks(frame, 1, 20_000, 20_001, 43_210)
    assert len(si.aligned_pieces(chunked)) == 5
    in_pieces = sk.scatter(chunked, table, 5, 10, positions, dense, 0)
    assert np.array_equal(whole.offsets, in_pieces.offsets)
    for name, column in whole.columns().items():
        assert np.array_equal(column, in_pieces.columns()[name], equal_nan=True), name
