"""The statistics behind every number a report prints: bootstrap intervals and paired tests.

Why here, small and separate: a reviewer recomputes these by hand, so each is a short function tested
against a brute-force or textbook value.
"""

from __future__ import annotations

import warnings

import numpy as np


def mcnemar_exact(a_correct: np.ndarray, b_correct: np.ndarray) -> dict[str, float | int]:
    """Exact two-sided McNemar test on paired correctness of two classifiers on the same cells.

    b01: A wrong and B right; b10: A right and B wrong. Under H0 (equal accuracy) the discordant pairs
    split 50/50, so p = two-sided binomial test of b10 out of b01 + b10.
    """
    from scipy.stats import binomtest

    a, b = np.asarray(a_correct, dtype=bool), np.asarray(b_correct, dtype=bool)
    b10 = int((a & ~b).sum())
    b01 = int((~a & b).sum())
    p = 1.0 if b01 + b10 == 0 else float(binomtest(b10, b01 + b10, 0.5, alternative="two-sided").pvalue)
    return {"n": len(a), "a_only": b10, "b_only": b01, "p_value": p}


def confusion_codes(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    """k x (k+1) confusion of integer codes; prediction code k means 'no prediction' (always wrong)."""
    return np.bincount(y_true * (k + 1) + y_pred, minlength=k * (k + 1)).reshape(k, k + 1).astype(float)


def class_scores(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Per class of a k x (k+1) confusion: support, true positives, precision, recall and F1 (0 where
    undefined, as scikit-learn's zero_division=0)."""
    k = cm.shape[0]
    support = cm.sum(axis=1)
    tp = np.diag(cm[:, :k])
    predicted = cm[:, :k].sum(axis=0)
    recall = np.divide(tp, support, out=np.zeros(k), where=support > 0)
    precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(k), where=denom > 0)
    return {"support": support, "tp": tp, "precision": precision, "recall": recall, "f1": f1}


def metrics_from_confusion(cm: np.ndarray) -> dict[str, float]:
    """Accuracy, balanced accuracy and macro-F1 over the classes present in y_true (rows with support).

    Why only present classes: a class absent from a fold's test cells has no recall; counting its F1 as 0
    (because a model predicted it once) would punish the fold for the split, not for the model.
    """
    scores = class_scores(cm)
    support, recall, f1 = scores["support"], scores["recall"], scores["f1"]
    present = support > 0
    total = support.sum()
    if total == 0:
        return {"accuracy": float("nan"), "balanced_accuracy": float("nan"), "macro_f1": float("nan")}
    return {
        "accuracy": float(scores["tp"].sum() / total),
        "balanced_accuracy": float(recall[present].mean()),
        "macro_f1": float(f1[present].mean()),
    }


def bootstrap_replicates(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    classes: list[str],
    groups: np.ndarray | None = None,
    *,
    reps: int = 1000,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """`reps` bootstrap values of accuracy, balanced accuracy and macro-F1, resampling groups or cells.

    Resamples whole groups (spatial blocks) when given, else cells: one part of
    `joint_bootstrap_replicates`; each replicate's confusion matrix is the weighted sum of the groups'
    matrices, so a thousand replicates cost milliseconds.
    """
    if groups is None or len(np.unique(groups)) < 2:
        groups = np.arange(len(y_true))
    values, _clusters = joint_bootstrap_replicates(
        [(y_true, y_pred, np.asarray(groups))], classes, reps=reps, seed=seed
    )
    return values


def joint_bootstrap_replicates(
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    classes: list[str],
    *,
    reps: int = 1000,
    seed: int = 0,
    per_class: bool = False,
    units: np.ndarray | None = None,
) -> tuple[dict[str, np.ndarray], int]:
    """Seed-averaged metrics of `reps` replicates that draw the SAME clusters for every part; and the
    number of clusters. With `per_class`, also `recall:<class>` (NaN in a replicate that drew no cell of
    the class).

    `parts` holds one (y_true, y_pred, cluster) triple per seed; a cluster label means the same spatial
    unit (or cell) in every part. Why jointly: every seed scores the same cells, so resampling each seed's
    blocks independently and averaging shrinks the spread by about the square root of the seed count,
    a precision the data do not have. Here one draw of the clusters weights every seed's cells, each seed's
    metrics come from its weighted confusion matrix, and the replicate is their mean over seeds.
    `units` fixes the clusters drawn from (a superset of the parts' clusters): two subsets of the same
    test cells (the cells a table covers, the cells a model keeps) then get the same draws, a paired
    bootstrap of their difference.
    """
    names = ("accuracy", "balanced_accuracy", "macro_f1")
    labelled = [cluster for _t, _p, cluster in parts if len(cluster)]
    if not labelled:
        return {m: np.full(reps, np.nan) for m in names}, 0
    units = np.unique(np.concatenate(labelled)) if units is None else np.unique(units)
    n_units = len(units)
    rng = np.random.default_rng([seed, 13])
    weights = np.stack([np.bincount(rng.integers(0, n_units, size=n_units), minlength=n_units) for _ in range(reps)])
    index = {c: i for i, c in enumerate(classes)}
    k = len(classes)
    per_part = []
    for y_true, y_pred, cluster in parts:
        if not len(y_true):
            continue
        t = np.array([index[str(v)] for v in y_true], dtype=np.int64)
        p = np.array([index.get(str(v), k) if v is not None else k for v in y_pred], dtype=np.int64)
        per_unit = np.zeros((n_units, k * (k + 1)))
        np.add.at(per_unit, (np.searchsorted(units, cluster), t * (k + 1) + p), 1)
        cms = (weights @ per_unit).reshape(reps, k, k + 1)
        values = metrics_of_confusions(cms)
        if per_class:
            support = cms.sum(axis=2)
            with np.errstate(invalid="ignore", divide="ignore"):
                recall = np.where(support > 0, cms[:, np.arange(k), np.arange(k)] / support, np.nan)
            values |= {f"recall:{c}": recall[:, i] for i, c in enumerate(classes)}
        per_part.append(values)
    # every part with clusters has cells, so per_part is not empty here
    with warnings.catch_warnings():  # a class no replicate of any seed drew stays NaN, quietly
        warnings.simplefilter("ignore", RuntimeWarning)
        return {m: np.nanmean([values[m] for values in per_part], axis=0) for m in per_part[0]}, n_units


def metrics_of_confusions(cms: np.ndarray) -> dict[str, np.ndarray]:
    """`metrics_from_confusion` of a stack of r x k x (k+1) matrices at once (bootstrap replicates)."""
    k = cms.shape[1]
    support = cms.sum(axis=2)
    tp = cms[:, np.arange(k), np.arange(k)]
    predicted = cms[:, :, :k].sum(axis=1)
    present = support > 0
    total = support.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(present, tp / np.where(present, support, 1), 0.0)
        precision = np.where(predicted > 0, tp / np.where(predicted > 0, predicted, 1), 0.0)
        denom = precision + recall
        f1 = np.where(denom > 0, 2 * precision * recall / np.where(denom > 0, denom, 1), 0.0)
        n_present = present.sum(axis=1)
        empty = total == 0
        return {
            "accuracy": np.where(empty, np.nan, tp.sum(axis=1) / np.where(empty, 1, total)),
            "balanced_accuracy": np.where(empty, np.nan, (recall * present).sum(axis=1) / np.maximum(n_present, 1)),
            "macro_f1": np.where(empty, np.nan, (f1 * present).sum(axis=1) / np.maximum(n_present, 1)),
        }


def percentile_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    alpha = (1 - level) / 2
    if not np.isfinite(values).any():
        return float("nan"), float("nan")
    return float(np.nanquantile(values, alpha)), float(np.nanquantile(values, 1 - alpha))
