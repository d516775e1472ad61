"""The standard evaluator (OGB-style): one Evaluator scores every entry on the same cells and classes.

Metrics from a confusion matrix, calibration; no fitting, no files."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import numpy as np

from cellfeatures.datasets.dataset import Dataset
from cellfeatures.errors import ConfigError

RANKING_METRIC = "balanced_accuracy"


METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "log_loss")


class Evaluator:
    """OGB-style: one evaluator per dataset, `eval(y_true, y_pred, y_proba=None)` -> metrics dict."""

    def __init__(self, dataset: Dataset | None = None, classes: list[str] | None = None) -> None:
        if classes is None:
            if dataset is None:
                raise ConfigError("Evaluator needs a dataset or the list of classes")
            classes = sorted(str(c) for c in dataset.card["class_counts"])
        self.classes = list(classes)

    def eval(self, y_true: Any, y_pred: Any, y_proba: np.ndarray | None = None) -> dict[str, Any]:
        """Metrics of one set of predictions; a missing prediction (None or "<none>") counts as wrong.

        Computed from one integer confusion matrix (numpy): the same numbers as scikit-learn's
        accuracy / balanced accuracy / macro-F1 over present classes / log-loss (tested against them),
        at a fraction of the cost: a run scores a few hundred prediction sets.
        """
        from cellfeatures.benchmark.stats import class_scores, confusion_codes, metrics_from_confusion

        labels = self.classes
        k = len(labels)
        index = {c: i for i, c in enumerate(labels)}
        truth = np.asarray(y_true, dtype=object)
        t = np.fromiter((index.get(str(v), -1) for v in truth), dtype=np.int64, count=len(truth))
        if (t < 0).any():
            unknown = sorted({str(v) for v in truth[t < 0]})
            raise ConfigError(f"true labels {unknown[:5]} are not among the evaluator's classes {labels}")
        p = np.fromiter((k if v is None else index.get(str(v), k) for v in y_pred), dtype=np.int64, count=len(t))
        cm = confusion_codes(t, p, k)  # k x (k+1): the last column is 'predicted something else / nothing'
        scores = class_scores(cm)
        summary = metrics_from_confusion(cm)
        out: dict[str, Any] = {
            "n": len(t),
            "accuracy": summary["accuracy"],
            "balanced_accuracy": summary["balanced_accuracy"],
            "macro_f1": summary["macro_f1"],
            "per_class": {
                c: {
                    "precision": float(scores["precision"][i]),
                    "recall": float(scores["recall"][i]),
                    "f1": float(scores["f1"][i]),
                    "support": int(scores["support"][i]),
                }
                for i, c in enumerate(labels)
            },
            "confusion": cm[:, :k].astype(int).tolist(),
            "labels": labels,
        }
        if y_proba is not None:
            proba = np.clip(np.asarray(y_proba, dtype=float), 1e-15, 1)
            proba = proba / proba.sum(axis=1, keepdims=True)
            out["log_loss"] = log_loss(t, proba)
            out["calibration"] = calibration_summary(truth, proba, labels)
        return out


def log_loss(codes: np.ndarray, proba: np.ndarray) -> float:
    """Mean negative log-probability of the true class (rows already normalised, clipped away from 0 and 1)."""
    if not len(codes):
        return float("nan")
    eps = np.finfo(proba.dtype).eps
    true_p = np.clip(proba[np.arange(len(codes)), codes], eps, 1 - eps)
    return float(-np.log(true_p).mean())


def calibration_summary(y_true: np.ndarray, proba: np.ndarray, labels: list[str], bins: int = 10) -> dict[str, Any]:
    """Expected calibration error of the top-class probability, with the per-bin table."""
    top = proba.argmax(axis=1)
    confidence = proba.max(axis=1)
    correct = np.array([labels[i] == t for i, t in zip(top, y_true, strict=True)], dtype=float)
    edges = np.linspace(0, 1, bins + 1)
    rows, ece = [], 0.0
    for lo, hi in pairwise(edges):
        mask = (confidence > lo) & (confidence <= hi)
        if mask.any():
            gap = abs(correct[mask].mean() - confidence[mask].mean())
            ece += mask.mean() * gap
            rows.append(
                {
                    "bin": f"({lo:.1f}, {hi:.1f}]",
                    "n": int(mask.sum()),
                    "confidence": float(confidence[mask].mean()),
                    "accuracy": float(correct[mask].mean()),
                }
            )
    return {"ece": float(ece), "mean_confidence": float(confidence.mean()), "bins": rows}


def headline_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        k: metrics[k] for k in ("n", "accuracy", "balanced_accuracy", "macro_f1", "log_loss") if k in metrics
    }
    if "calibration" in metrics:
        out["ece"] = metrics["calibration"]["ece"]
    return out
