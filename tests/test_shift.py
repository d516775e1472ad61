"""Shift measures of `predict`: distance to the labelled region in space and in feature space."""

from __future__ import annotations

import numpy as np

from cellfeatures.benchmark.shift import shift_measures


def grid(lo: float, hi: float, step: float) -> np.ndarray:
    axis = np.arange(lo, hi + 1e-9, step)
    return np.array(np.meshgrid(axis, axis, axis)).reshape(3, -1).T


def test_cells_outside_the_labelled_region_are_flagged_and_cells_inside_are_not() -> None:
    rng = np.random.default_rng(0)
    train = grid(0, 100, 10) + rng.normal(0, 1, (11**3, 3))  # a labelled cube, cells ~10 um apart
    inside = np.array([[55.0, 45.0, 35.0], [5.0, 95.0, 50.0], [50.0, 50.0, 50.0]])
    outside = np.array([[300.0, 50.0, 50.0], [50.0, 50.0, 180.0], [-60.0, 10.0, 10.0]])
    positions = np.vstack([train, inside, outside])
    is_training = np.r_[np.ones(len(train), bool), np.zeros(6, bool)]
    x_train = rng.normal(0, 1, (len(train), 4))
    x = np.vstack([x_train, rng.normal(0, 1, (3, 4)) * 0.5, rng.normal(0, 1, (3, 4)) * 0.5])
    columns, limits = shift_measures(train, positions, x_train, x, is_training)
    flagged = columns["outside_labelled_region"]
    assert not flagged[len(train) : len(train) + 3].any()
    assert flagged[len(train) + 3 :].all()
    assert 8 < limits["distance_to_labelled_um"] < 20  # the 99th percentile of ~10 um neighbour distances
    # the far cell at x = 300 is about 200 um from the nearest labelled cell
    assert abs(columns["distance_to_labelled_um"][len(train) + 3] - 200) < 5
    # at most about 1% of training cells are beyond the threshold learned from them
    assert flagged[: len(train)].mean() <= 0.011


def test_a_cell_with_unusual_features_is_flagged_in_feature_space_even_with_each_value_in_range() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(0, 1, 2000)
    x_train = np.column_stack([a, a + rng.normal(0, 0.05, 2000)])  # two features that move together
    odd = np.array([[1.5, -1.5]])  # each value inside the training range, the pair never seen
    usual = np.array([[1.0, 1.0]])
    positions = np.zeros((2002, 3))
    x = np.vstack([x_train, usual, odd])
    is_training = np.r_[np.ones(2000, bool), False, False]
    columns, _limits = shift_measures(
        positions[:2000] + rng.normal(0, 1, (2000, 3)), positions, x_train, x, is_training
    )
    assert ((x_train.min(axis=0) < odd) & (odd < x_train.max(axis=0))).all()
    assert not columns["feature_shift"][-2]
    assert columns["feature_shift"][-1]


def test_missing_feature_values_take_the_training_median() -> None:
    rng = np.random.default_rng(2)
    x_train = rng.normal(5, 1, (500, 3))
    x = np.vstack([x_train, [[np.nan, np.nan, np.nan]]])
    positions = rng.normal(0, 1, (501, 3))
    columns, _ = shift_measures(positions[:500], positions, x_train, x, np.r_[np.ones(500, bool), False])
    assert not columns["feature_shift"][-1]  # all-median: the centre of the training cloud
