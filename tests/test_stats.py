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
    joint_bootstrap_replicates,
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


def test_the_joint_seed_bootstrap_has_the_analytic_width_of_one_draw_of_clusters() -> None:
    """Planted: 40 spatial clusters of 10 cells, each wholly right or wrong, the same in 3 seeds (every seed
    scores the same cells). The accuracy of a replicate is then Binomial(40, 1/2) / 40 whatever the seed
    count; resampling each seed independently and averaging would narrow it by about sqrt(3)."""
    from scipy.stats import binom

    clusters = np.repeat(np.arange(40), 10)
    right = np.repeat(np.arange(40) % 2 == 0, 10)
    y_true = np.array(["a"] * 400, dtype=object)
    y_pred = np.where(right, "a", "b").astype(object)
    parts = [(y_true, y_pred, clusters) for _seed in range(3)]
    values, n_clusters = joint_bootstrap_replicates(parts, ["a", "b"], reps=4000)
    assert n_clusters == 40
    lo, hi = percentile_interval(values["accuracy"])
    assert lo == pytest.approx(binom.ppf(0.025, 40, 0.5) / 40, abs=1 / 40)
    assert hi == pytest.approx(binom.ppf(0.975, 40, 0.5) / 40, abs=1 / 40)
    independent = np.mean(
        [bootstrap_replicates(y_true, y_pred, ["a", "b"], clusters, seed=s)["accuracy"] for s in range(3)], axis=0
    )
    lo_i, hi_i = percentile_interval(independent)
    assert (hi - lo) > 1.5 * (hi_i - lo_i), "the old per-seed resampling was too narrow by about sqrt(3)"


def test_the_joint_bootstrap_of_one_part_is_the_plain_bootstrap() -> None:
    rng = np.random.default_rng(4)
    y_true = rng.choice(["a", "b", "c"], size=300).astype(object)
    y_pred = rng.choice(["a", "b", "c", None], size=300).astype(object)
    groups = rng.integers(0, 25, size=300)
    plain = bootstrap_replicates(y_true, y_pred, ["a", "b", "c"], groups, seed=3)
    joint, n = joint_bootstrap_replicates([(y_true, y_pred, groups)], ["a", "b", "c"], seed=3)
    assert n == len(np.unique(groups))
    for name in plain:
        np.testing.assert_allclose(joint[name], plain[name])


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
