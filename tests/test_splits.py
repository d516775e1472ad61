"""Splits: spatial buffers hold, roots stay together, seeds reproduce, column hold-out is inside vs outside."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import cdist

from cellfeatures.datasets.splits import SplitSpec, fold_names, make_split


def cells(n: int, seed: int, shared_roots: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    roots = np.arange(1, n + 1) + 10_000
    if shared_roots:
        roots[rng.choice(n, shared_roots, replace=False)] = roots[0]  # a merge across space
    return pl.DataFrame(
        {
            "nucleus_id": np.arange(n) + 1,
            "root_id": roots,
            "pos_x_nm": rng.uniform(0, 400_000, n),
            "pos_z_nm": rng.uniform(0, 300_000, n),
            "label": rng.choice(["a", "b", "c"], n),
        }
    )


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(20, 300),
    seed=st.integers(0, 10_000),
    block=st.floats(10, 150),
    buffer=st.floats(0, 60),
    folds=st.integers(2, 6),
)
def test_spatial_split_leaves_no_train_test_pair_closer_than_the_buffer(n, seed, block, buffer, folds) -> None:
    frame = cells(n, seed, shared_roots=3)
    split = make_split(frame, "label", SplitSpec("spatial", folds=folds, seed=seed, block_um=block, buffer_um=buffer))
    points = frame.select(pl.col("pos_x_nm") / 1000, pl.col("pos_z_nm") / 1000).to_numpy()
    tested = np.zeros(n, dtype=int)
    for fold in fold_names(split):
        roles = split[fold].to_numpy()
        train, test = points[roles == "train"], points[roles == "test"]
        tested += roles == "test"
        if len(train) and len(test):
            assert cdist(train, test).min() >= buffer - 1e-9
    assert (tested == 1).all(), "every cell is tested exactly once"


def test_buffer_none_means_the_block_size() -> None:
    frame = cells(400, 1)
    split = make_split(frame, "label", SplitSpec("spatial", folds=4, seed=1, block_um=40, buffer_um=None))
    points = frame.select(pl.col("pos_x_nm") / 1000, pl.col("pos_z_nm") / 1000).to_numpy()
    for fold in fold_names(split):
        roles = split[fold].to_numpy()
        assert cdist(points[roles == "train"], points[roles == "test"]).min() >= 40


@pytest.mark.parametrize("strategy", ["stratified", "spatial", "column"])
def test_nuclei_of_one_root_are_never_on_both_sides(strategy: str) -> None:
    frame = cells(200, 5, shared_roots=12)
    spec = SplitSpec(strategy, folds=4, seed=3, block_um=60, buffer_um=5, column_box_um=(100, 250, 50, 200))
    split = make_split(frame, "label", spec).join(frame.select("nucleus_id", "root_id"), on="nucleus_id")
    merged = split.filter(pl.col("root_id") == frame["root_id"][0])
    assert merged.height == 13
    for fold in fold_names(split):
        roles = set(merged[fold].to_list()) - {"buffer"}
        assert len(roles) <= 1, (fold, roles)  # all train, all test, or buffered whole


@pytest.mark.parametrize("strategy", ["stratified", "spatial", "column"])
def test_same_spec_and_seed_give_identical_split_files(tmp_path, strategy: str) -> None:
    spec = SplitSpec(strategy, folds=5, seed=7, block_um=50, column_box_um=(100, 250, 50, 200))
    frame = cells(300, 2)
    make_split(frame, "label", spec).write_parquet(tmp_path / "a.parquet")
    make_split(frame.sample(fraction=1.0, shuffle=True, seed=9), "label", spec).write_parquet(tmp_path / "b.parquet")
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes(), "row order does not matter"
    other = make_split(
        frame, "label", SplitSpec(strategy, folds=5, seed=8, block_um=50, column_box_um=(100, 250, 50, 200))
    )
    if strategy != "column":
        assert not other.equals(pl.read_parquet(tmp_path / "a.parquet"))


def test_stratified_folds_keep_every_class_in_every_test_fold() -> None:
    split = make_split(cells(300, 4), "label", SplitSpec("stratified", folds=5, seed=0))
    joined = split.join(cells(300, 4).select("nucleus_id", "label"), on="nucleus_id")
    for fold in fold_names(split):
        assert set(joined.filter(pl.col(fold) == "test")["label"]) == {"a", "b", "c"}


def test_column_hold_out_tests_inside_then_outside() -> None:
    frame = cells(300, 6)
    box = (100.0, 250.0, 50.0, 200.0)
    split = make_split(frame, "label", SplitSpec("column", column_box_um=box)).join(frame, on="nucleus_id")
    x, z = split["pos_x_nm"] / 1000, split["pos_z_nm"] / 1000
    inside = ((x >= box[0]) & (x <= box[1]) & (z >= box[2]) & (z <= box[3])).to_numpy()
    assert (split["fold_0"].to_numpy()[inside] == "test").all() and (
        split["fold_0"].to_numpy()[~inside] == "train"
    ).all()
    assert (split["fold_1"].to_numpy()[inside] == "train").all()


def test_a_seed_redraws_the_spatial_blocks() -> None:
    frame = cells(600, 11)
    splits = [make_split(frame, "label", SplitSpec("spatial", folds=5, seed=s, block_um=50)) for s in (0, 1, 2)]
    for a, b in ((0, 1), (1, 2), (0, 2)):
        assert not splits[a]["block"].equals(splits[b]["block"])
        differ = (splits[a]["fold_0"] != splits[b]["fold_0"]).sum()
        assert differ > 60, f"seeds {a} and {b} differ in only {differ} cells"


def test_spatial_folds_balance_class_counts_better_than_cell_counts_alone() -> None:
    """Blocks of one class each: assigning by size alone could put a class in one fold only."""
    from cellfeatures.datasets.splits import assign_blocks

    block = np.repeat(np.arange(10), 10)
    labels = np.repeat(np.array(["a"] * 5 + ["b"] * 5), 10)
    fold_of_block = assign_blocks(block, labels, folds=5, seed=0)
    for k in range(5):
        members = labels[fold_of_block[block] == k]
        assert sorted(set(members)) == ["a", "b"], f"fold {k} holds {sorted(set(members))}"


def test_the_locked_slab_is_the_same_for_every_seed_and_never_in_cross_validation() -> None:
    frame = cells(500, 12)
    splits = [
        make_split(
            frame, "label", SplitSpec("spatial", folds=4, seed=s, block_um=60, buffer_um=10, locked_fraction=0.2)
        )
        for s in (0, 1)
    ]
    assert splits[0]["locked"].equals(splits[1]["locked"])
    joined = splits[0].join(frame, on="nucleus_id")
    locked = joined.filter(pl.col("locked") == "test")
    assert abs(locked.height - 100) <= 2
    assert locked["pos_x_nm"].min() >= joined.filter(pl.col("locked") == "train")["pos_x_nm"].max()
    for fold in fold_names(splits[0]):
        assert set(joined.filter(pl.col("locked") != "train")[fold].unique()) == {"locked"}
    train = joined.filter(pl.col("locked") == "train").select(pl.col("pos_x_nm") / 1000, pl.col("pos_z_nm") / 1000)
    test = locked.select(pl.col("pos_x_nm") / 1000, pl.col("pos_z_nm") / 1000)
    assert cdist(train.to_numpy(), test.to_numpy()).min() >= 10


def test_the_locked_slab_follows_a_slanted_column_and_buffers_in_3d() -> None:
    rng = np.random.default_rng(3)
    n = 800
    depth = rng.uniform(0, 800_000, n)  # nm
    frame = pl.DataFrame(
        {
            "nucleus_id": np.arange(n) + 1,
            "root_id": np.arange(n) + 10_000,
            "pos_x_nm": rng.uniform(0, 150_000, n) + 0.3 * depth,  # the column leans in x with depth
            "pos_y_nm": depth,
            "pos_z_nm": rng.uniform(0, 150_000, n),
            "label": np.where(depth < 400_000, "upper", "lower"),
        }
    )
    split = make_split(frame, "label", SplitSpec("spatial", folds=3, block_um=60, buffer_um=10, locked_fraction=0.15))
    joined = split.join(frame, on="nucleus_id")
    locked = joined.filter(pl.col("locked") == "test")
    shares = locked["label"].value_counts(normalize=True)
    assert shares["proportion"].min() > 0.3, f"both depth halves are in the slab: {shares}"
    xyz = ["pos_x_nm", "pos_y_nm", "pos_z_nm"]
    train = joined.filter(pl.col("locked") == "train").select(xyz).to_numpy() / 1000
    assert cdist(train, locked.select(xyz).to_numpy() / 1000).min() >= 10
    band = joined.filter(pl.col("locked") == "buffer").height
    assert band < locked.height, f"a 10 um band in 3-D stays thin ({band} cells)"
