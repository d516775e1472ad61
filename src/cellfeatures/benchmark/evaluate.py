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
        import warnings

        from sklearn.metrics import (
            accuracy_score,
            balanced_accuracy_score,
            confusion_matrix,
            f1_score,
            log_loss,
            precision_recall_fscore_support,
        )

        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")  # '<none>' predictions
        y_true = np.asarray(y_true, dtype=object)
        y_pred = np.asarray([p if p is not None else "<none>" for p in y_pred], dtype=object)
        labels = self.classes
        precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
        present = [c for c in labels if c in set(y_true.tolist())]  # macro-F1 over classes with test cells
        out: dict[str, Any] = {
            "n": len(y_true),
            "accuracy": float(accuracy_score(y_true, y_pred)),
            "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)) if len(y_true) else float("nan"),
            "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0))
            if present
            else float("nan"),
            "per_class": {
                c: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
                for c, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
            },
            "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
            "labels": labels,
        }
        if y_proba is not None:
            proba = np.clip(np.asarray(y_proba, dtype=float), 1e-15, 1)
            proba = proba / proba.sum(axis=1, keepdims=True)
            out["log_loss"] = float(log_loss(y_true, proba, labels=labels))
            out["calibration"] = calibration_summary(y_true, proba, labels)
        return out


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
