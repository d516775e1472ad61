"""How far each predicted cell is from what the model was trained on: in space and in feature space.

Why: the manual labels come from one column of cortex, and `predict` scores the whole volume; on the
sample 94% of the predicted cells lie outside the labelled column's x/z extent while a per-feature
min/max test (`out_of_range`) flags 2.6% of them, because a cell far away can have ordinary values one
feature at a time. Two measures per cell, each with a threshold learned from the training cells
themselves (their leave-one-out nearest-neighbour distances, 99th percentile), so "outside" means
"farther than 99% of training cells are from their nearest training neighbour":

- `distance_to_labelled_um`: distance in space (µm) to the nearest training cell; over the threshold:
  `outside_labelled_region`.
- `feature_distance`: distance in standardised feature space (training median imputes a missing value,
  training median / IQR scale each feature) to the nearest training cell; over the threshold:
  `feature_shift`.

For a training cell both are distances to its nearest *other* training cell.
"""

from __future__ import annotations

from typing import Any

import numpy as np

QUANTILE = 0.99


def _distances(reference: np.ndarray, query: np.ndarray, is_reference: np.ndarray) -> tuple[np.ndarray, float]:
    """Distance from each query row to its nearest reference row (rows flagged `is_reference` are reference
    rows themselves and get the distance to their nearest other reference row), and the threshold: the
    QUANTILE of the reference rows' own leave-one-out nearest-neighbour distances. One tree for both."""
    from scipy.spatial import cKDTree

    if len(reference) < 2:
        return np.full(len(query), np.nan), float("nan")
    tree = cKDTree(reference)
    own = tree.query(reference, k=2)[0][:, 1]
    distances, _ = tree.query(query, k=2)
    limit = float(np.quantile(own, QUANTILE)) if np.isfinite(own).all() else float("nan")
    return np.where(is_reference, distances[:, 1], distances[:, 0]), limit


def standardise(x_train: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Training-median imputation and median / IQR scaling (robust to the heavy tails of synapse counts)."""
    with np.errstate(all="ignore"):
        median = np.nanmedian(x_train, axis=0)
        q75, q25 = np.nanpercentile(x_train, [75, 25], axis=0)
    median = np.where(np.isfinite(median), median, 0.0)
    scale = q75 - q25
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
    filled = np.where(np.isnan(x), median, x)
    return (filled - median) / scale


def shift_measures(
    train_positions_um: np.ndarray,
    positions_um: np.ndarray,
    x_train: np.ndarray,
    x: np.ndarray,
    is_training: np.ndarray,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Per cell: distance_to_labelled_um, outside_labelled_region, feature_distance, feature_shift; and the
    thresholds used (for the model card). `is_training[i]`: row i of `positions_um` / `x` is a training
    cell (its own row in the training arrays is then excluded as its neighbour)."""
    distance, space_limit = _distances(train_positions_um, positions_um, is_training)
    feature_distance, feature_limit = _distances(standardise(x_train, x_train), standardise(x_train, x), is_training)
    columns = {
        "distance_to_labelled_um": distance,
        "outside_labelled_region": distance > space_limit,
        "feature_distance": feature_distance,
        "feature_shift": feature_distance > feature_limit,
    }
    limits = {
        "quantile": QUANTILE,
        "distance_to_labelled_um": space_limit,
        "feature_distance": feature_limit,
        "training_cells": len(train_positions_um),
    }
    return columns, limits
