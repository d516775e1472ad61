"""The phase-1 kernel: the root table finds exactly the known roots; records land in their cell's bucket.

(That they equal a brute-force recomputation, through every plan, is tests/pipelines/test_synapses.py.)"""

from __future__ import annotations

from itertools import pairwise

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


def _in_chunks(frame: pl.DataFrame, *cuts: int) -> pl.DataFrame:
    """`frame` as polars hands out a scan of several row groups: every column in the same chunks."""
    edges = [0, *cuts, frame.height]
    parts = [frame.slice(a, b - a) for a, b in pairwise(edges)]
    return pl.concat(parts, rechunk=False)


def test_aligned_pieces_follow_the_chunks_and_hand_out_arrays_without_a_copy() -> None:
    frame = _in_chunks(synapses(30_000).drop("size_vx"), 9_000, 21_000)
    pieces = sk.aligned_pieces(frame)
    assert [p.height for p in pieces] == [9_000, 12_000, 9_000]
    assert all(p.n_chunks("all") == [1] * p.width for p in pieces)
    assert pl.concat(pieces).equals(frame)
    pre = sk.column_array(pieces[1], "pre_root_id", pl.Int64)
    assert not pre.flags.writeable and not pre.flags.owndata, "a view of polars' own memory"


def test_aligned_pieces_cut_where_any_column_changes_chunk() -> None:
    frame = synapses(20_000).drop("size_vx")  # a filtered scan: the root columns cut once more than the others
    pre = pl.concat([frame["pre_root_id"].head(8_000), frame["pre_root_id"].tail(12_000)], rechunk=False)
    mixed = _in_chunks(frame.with_columns(pre), 10_000)
    assert mixed["pre_root_id"].n_chunks() == 3 and mixed["post_root_id"].n_chunks() == 2
    pieces = sk.aligned_pieces(mixed)
    assert [p.height for p in pieces] == [8_000, 2_000, 10_000]
    assert all(p.n_chunks("all") == [1] * p.width for p in pieces)
    assert pl.concat(pieces).equals(mixed)


def test_aligned_pieces_rechunk_a_frame_of_tiny_chunks_and_skip_empty_ones() -> None:
    frame = synapses(9_000).drop("size_vx")
    assert [p.height for p in sk.aligned_pieces(_in_chunks(frame, 0, 4_500, 4_500))] == [4_500, 4_500]
    tiny = _in_chunks(frame, *range(100, 9_000, 100))  # 90 chunks of 100 rows
    assert [p.height for p in sk.aligned_pieces(tiny)] == [9_000]
    assert sk.aligned_pieces(frame.head(0)) == []


@pytest.mark.parametrize("with_positions", [False, True])
@pytest.mark.parametrize("tags_by_id", [False, True])
def test_a_frame_in_chunks_scatters_to_the_same_records_as_in_one(with_positions: bool, tags_by_id: bool) -> None:
    table = sk.root_table(ROOTS)
    frame = synapses(50_000)  # sizes missing in every chunk (every 23rd row)
    dense = None
    if tags_by_id:
        tags = pl.DataFrame({"synapse_id": np.arange(50_000), "tag_code": frame["tag_code"]})
        frame = frame.drop("tag_code").with_columns(pl.int_range(50_000).alias("synapse_id"))
        dense = sk.dense_tags(_in_chunks(tags, 12_345), 0, 50_000)
        assert dense is not None and np.array_equal(dense, tags["tag_code"].to_numpy())
    positions = POSITIONS if with_positions else None
    whole = sk.scatter(frame, table, 5, 10, positions, dense, 0)
    chunked = _in_chunks(frame, 1, 20_000, 20_001, 43_210)
    assert len(sk.aligned_pieces(chunked)) == 5
    in_pieces = sk.scatter(chunked, table, 5, 10, positions, dense, 0)
    assert np.array_equal(whole.offsets, in_pieces.offsets)
    for name, column in whole.columns().items():
        assert np.array_equal(column, in_pieces.columns()[name], equal_nan=True), name


def test_dense_tags_refuse_an_id_predicted_twice_across_chunks() -> None:
    ids = np.r_[np.arange(0, 20_000, 2), np.arange(1, 20_000, 2)]  # two chunks: evens, then odds
    tags = pl.DataFrame({"synapse_id": ids, "tag_code": (ids % 4).astype(np.uint8)})
    dense = sk.dense_tags(_in_chunks(tags, 10_000), 0, 20_000)
    assert dense is not None and dense.tolist() == (np.arange(20_000) % 4).tolist()
    twice = tags.with_columns(tags["synapse_id"].scatter(15_000, 4))  # 4 again, in the second chunk
    assert len(sk.aligned_pieces(_in_chunks(twice, 10_000))) == 2
    assert sk.dense_tags(_in_chunks(twice, 10_000), 0, 20_000) is None
    few = pl.DataFrame({"synapse_id": [3, 5, 7], "tag_code": [1, 2, 3]}, schema_overrides={"tag_code": pl.UInt8})
    sparse = sk.dense_tags(few, 2, 10)
    assert sparse is not None and sparse.tolist() == [0, 1, 0, 2, 0, 3, 0, 0], "by id - lo, 0 where no prediction"


def test_dense_tags_in_id_order_take_one_pass_and_still_refuse_an_id_twice() -> None:
    ids = np.arange(100, 20_100)
    tags = pl.DataFrame({"synapse_id": ids, "tag_code": (ids % 4).astype(np.uint8)})
    dense = sk.dense_tags(_in_chunks(tags, 10_000), 100, 20_100)
    assert dense is not None and dense.tolist() == (ids % 4).tolist()
    repeated = tags.with_columns(tags["synapse_id"].scatter(10_000, 10_099))  # the first of chunk 2 repeats the last
    assert sk.dense_tags(_in_chunks(repeated, 10_000), 100, 20_100) is None
    swapped = tags.with_columns(tags["synapse_id"].scatter([5, 6], [106, 105]))  # out of order, still unique
    again = sk.dense_tags(_in_chunks(swapped, 10_000), 100, 20_100)
    assert again is not None and again.tolist() == swapped.sort("synapse_id")["tag_code"].to_list()
