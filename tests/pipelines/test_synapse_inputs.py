"""The kernels' inputs: frames cut where any column's chunk ends give arrays without a copy; tag codes by
id are placed in one pass when in id order, and an id predicted twice is refused in any order."""

from __future__ import annotations

import numpy as np
import polars as pl

from cellfeatures.pipelines import synapse_inputs as si
from tests.pipelines.kernel_inputs import in_chunks, synapses


def test_aligned_pieces_follow_the_chunks_and_hand_out_arrays_without_a_copy() -> None:
    frame = in_chunks(synapses(30_000).drop("size_vx"), 9_000, 21_000)
    pieces = si.aligned_pieces(frame)
    assert [p.height for p in pieces] == [9_000, 12_000, 9_000]
    assert all(p.n_chunks("all") == [1] * p.width for p in pieces)
    assert pl.concat(pieces).equals(frame)
    pre = si.column_array(pieces[1], "pre_root_id", pl.Int64)
    assert not pre.flags.writeable and not pre.flags.owndata, "a view of polars' own memory"


def test_aligned_pieces_cut_where_any_column_changes_chunk() -> None:
    frame = synapses(20_000).drop("size_vx")  # a filtered scan: the root columns cut once more than the others
    pre = pl.concat([frame["pre_root_id"].head(8_000), frame["pre_root_id"].tail(12_000)], rechunk=False)
    mixed = in_chunks(frame.with_columns(pre), 10_000)
    assert mixed["pre_root_id"].n_chunks() == 3 and mixed["post_root_id"].n_chunks() == 2
    pieces = si.aligned_pieces(mixed)
    assert [p.height for p in pieces] == [8_000, 2_000, 10_000]
    assert all(p.n_chunks("all") == [1] * p.width for p in pieces)
    assert pl.concat(pieces).equals(mixed)


def test_aligned_pieces_rechunk_a_frame_of_tiny_chunks_and_skip_empty_ones() -> None:
    frame = synapses(9_000).drop("size_vx")
    assert [p.height for p in si.aligned_pieces(in_chunks(frame, 0, 4_500, 4_500))] == [4_500, 4_500]
    tiny = in_chunks(frame, *range(100, 9_000, 100))  # 90 chunks of 100 rows
    assert [p.height for p in si.aligned_pieces(tiny)] == [9_000]
    assert si.aligned_pieces(frame.head(0)) == []


def test_dense_tags_refuse_an_id_predicted_twice_across_chunks() -> None:
    ids = np.r_[np.arange(0, 20_000, 2), np.arange(1, 20_000, 2)]  # two chunks: evens, then odds
    tags = pl.DataFrame({"synapse_id": ids, "tag_code": (ids % 4).astype(np.uint8)})
    dense = si.dense_tags(in_chunks(tags, 10_000), 0, 20_000)
    assert dense is not None and dense.tolist() == (np.arange(20_000) % 4).tolist()
    twice = tags.with_columns(tags["synapse_id"].scatter(15_000, 4))  # 4 again, in the second chunk
    assert len(si.aligned_pieces(in_chunks(twice, 10_000))) == 2
    assert si.dense_tags(in_chunks(twice, 10_000), 0, 20_000) is None
    few = pl.DataFrame({"synapse_id": [3, 5, 7], "tag_code": [1, 2, 3]}, schema_overrides={"tag_code": pl.UInt8})
    sparse = si.dense_tags(few, 2, 10)
    assert sparse is not None and sparse.tolist() == [0, 1, 0, 2, 0, 3, 0, 0], "by id - lo, 0 where no prediction"


def test_dense_tags_in_id_order_take_one_pass_and_still_refuse_an_id_twice() -> None:
    ids = np.arange(100, 20_100)
    tags = pl.DataFrame({"synapse_id": ids, "tag_code": (ids % 4).astype(np.uint8)})
    dense = si.dense_tags(in_chunks(tags, 10_000), 100, 20_100)
    assert dense is not None and dense.tolist() == (ids % 4).tolist()
    repeated = tags.with_columns(tags["synapse_id"].scatter(10_000, 10_099))  # the first of chunk 2 repeats the last
    assert si.dense_tags(in_chunks(repeated, 10_000), 100, 20_100) is None
    swapped = tags.with_columns(tags["synapse_id"].scatter([5, 6], [106, 105]))  # out of order, still unique
    again = si.dense_tags(in_chunks(swapped, 10_000), 100, 20_100)
    assert again is not None and again.tolist() == swapped.sort("synapse_id")["tag_code"].to_list()


def test_aligned_pieces_of_chosen_columns_keep_their_chunks() -> None:
    frame = synapses(20_000).drop("size_vx")
    pre = pl.concat([frame["pre_root_id"].head(8_000), frame["pre_root_id"].tail(12_000)], rechunk=False)
    mixed = in_chunks(frame.with_columns(pre), 10_000)  # columns chunked differently, as a filtered scan's
    assert mixed.select("pre_root_id", "post_root_id")["pre_root_id"].n_chunks() == 1, "why select is not used"
    pieces = si.aligned_pieces(mixed, ["pre_root_id", "post_root_id"])
    assert [p.height for p in pieces] == [8_000, 2_000, 10_000]
    assert all(p.columns == ["pre_root_id", "post_root_id"] for p in pieces)
