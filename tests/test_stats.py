"""Bootstrap intervals and the paired test, against brute force and textbook values."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from cellfeatures.benchmark.stats import (
    bootstrap_replicates,
    confusion_codes,
    mcnemar_exact,
    metrics_from_confusion,
    metrics_of_confusions,
    percentile_interval,
)


def accuracy_interval(y_true, y_pred, classes, groups, **kwargs) -> tuple[float, float]:
    return percentile_interval(bootstrap_replicates(y_true, y_pred, classes, groups, **kwargs)["accuracy"])


def test_metrics_from_confusion_match_scikit_learn_on_present_classes() -> None:
    rng = np.random.default_rng(0)
    classes = ["a", "b", "c", "d"]
    for _ in range(20):
        t = rng.integers(0, 3, 60)  # class d never in y_true
        p = rng.integers(0, 5, 60)  # 4 = no prediction
        m = metrics_from_confusion(confusion_codes(t, p, 4))
        yt = [classes[i] for i in t]
        yp = [classes[i] if i < 4 else "<none>" for i in p]
        present = sorted(set(yt))
        assert m["accuracy"] == pytest.approx(accuracy_score(yt, yp))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # '<none>' is a prediction no true class has
            assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(yt, yp))
        assert m["macro_f1"] == pytest.approx(f1_score(yt, yp, labels=present, average="macro", zero_division=0))


def test_the_stacked_metrics_equal_the_one_matrix_metrics_replicate_by_replicate() -> None:
    rng = np.random.default_rng(3)
    stack = rng.integers(0, 4, size=(50, 4, 5)).astype(float)
    stack[0] = 0  # an empty replicate: every metric undefined
    stack[1, 2, :] = 0  # a class absent from y_true
    many = metrics_of_confusions(stack)
    for r in range(len(stack)):
        one = metrics_from_confusion(stack[r])
        for name, value in one.items():
            assert many[name][r] == pytest.approx(value, nan_ok=True), (r, name)


def test_bootstrap_resamples_whole_groups() -> None:
    """Brute force: with 3 groups there are 27 equally likely draws; the interval lies within their values."""
    y_true = np.array(["a"] * 4 + ["b"] * 4 + ["a"] * 4, dtype=object)
    y_pred = np.array(["a"] * 4 + ["a"] * 4 + ["b", "a", "a", "a"], dtype=object)
    groups = np.repeat([0, 1, 2], 4)
    values = []
    for draw in itertools.product(range(3), repeat=3):
        idx = np.concatenate([np.flatnonzero(groups == g) for g in draw])
        values.append(accuracy_score(y_true[idx], y_pred[idx]))
    lo, hi = accuracy_interval(y_true, y_pred, ["a", "b"], groups, reps=4000)
    assert min(values) <= lo <= hi <= max(values)
    assert lo == pytest.approx(np.quantile(values, 0.025, method="inverted_cdf"), abs=0.07)
    assert hi == pytest.approx(np.quantile(values, 0.975, method="inverted_cdf"), abs=0.07)


def test_block_intervals_are_wider_than_cell_intervals_when_blocks_are_correlated() -> None:
    rng = np.random.default_rng(1)
    groups = np.repeat(np.arange(20), 30)
    good = np.repeat(rng.random(20) < 0.5, 30)  # whole blocks right or wrong
    y_true = np.array(["a"] * 600, dtype=object)
    y_pred = np.where(good, "a", "b").astype(object)
    by_block = accuracy_interval(y_true, y_pred, ["a", "b"], groups)
    by_cell = accuracy_interval(y_true, y_pred, ["a", "b"], None)
    assert by_block[1] - by_block[0] > 2 * (by_cell[1] - by_cell[0])


def test_mcnemar_matches_the_exact_binomial_by_hand() -> None:
    a = np.array([True] * 10 + [False] * 2 + [True] * 50)
    b = np.array([False] * 10 + [True] * 2 + [True] * 50)
    result = mcnemar_exact(a, b)
    # 12 discordant cells, 10 for A: p = 2 * P(X >= 10), X ~ Bin(12, 1/2) = 2 * (66 + 12 + 1) / 4096
    assert (result["a_only"], result["b_only"]) == (10, 2)
    assert result["p_value"] == pytest.approx(2 * 79 / 4096)
    assert mcnemar_exact(a, a)["p_value"] == 1.0
