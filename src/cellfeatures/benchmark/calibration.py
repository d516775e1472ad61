"""Calibrating a model's probabilities on its own cross-validated predictions: temperature scaling or
per-class isotonic regression, chosen by a grouped cross-validation of the calibrators themselves.

Why: gradient boosting's median top probability on the sample is 1.0 while its cross-validated accuracy
is 0.84, and `predict` hands those probabilities to people who threshold them. The out-of-fold
predictions of the baseline run are exactly the held-out data a calibrator needs; fitting and scoring
the calibrator on the same predictions would flatter it, so the choice (none, temperature, isotonic) is
made on held-out groups of those predictions (the spatial blocks: neighbouring cells share errors), and
the reported "ECE after" is that held-out value, not an in-sample one.

A calibrator is plain data (a temperature, or per-class isotonic knots) so it travels in entries.json
and `predict` applies it without refitting anything.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from cellfeatures.benchmark.evaluate import calibration_summary, log_loss

METHODS = ("none", "temperature", "isotonic")
_EPS = 1e-12


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_calibrator(proba: np.ndarray, codes: np.ndarray, method: str) -> dict[str, Any]:
    """Fit `method` on probabilities `proba` (cells x classes) whose true class indices are `codes`."""
    if method == "none":
        return {"method": "none"}
    if method == "temperature":
        from scipy.optimize import minimize_scalar

        logits = np.log(np.clip(proba, _EPS, 1.0))
        # log T in [-3, 3]: T from 0.05 to 20, far wider than any model here needs
        found = minimize_scalar(
            lambda t: log_loss(codes, _softmax(logits / np.exp(t))), bounds=(-3, 3), method="bounded"
        )
        return {"method": "temperature", "temperature": float(np.exp(found.x))}
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        knots = []
        for j in range(proba.shape[1]):
            iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(proba[:, j], codes == j)
            knots.append([iso.X_thresholds_.tolist(), iso.y_thresholds_.tolist()])
        return {"method": "isotonic", "knots": knots}
    raise ValueError(f"unknown calibration method {method!r}; known: {', '.join(METHODS)}")


def apply_calibrator(calibrator: dict[str, Any], proba: np.ndarray) -> np.ndarray:
    """The calibrated probabilities (rows sum to 1)."""
    method = calibrator["method"]
    if method == "none":
        return proba
    if method == "temperature":
        return _softmax(np.log(np.clip(proba, _EPS, 1.0)) / calibrator["temperature"])
    if method == "isotonic":
        out = np.column_stack(
            [np.interp(proba[:, j], x, y) if len(x) else proba[:, j] for j, (x, y) in enumerate(calibrator["knots"])]
        )
        total = out.sum(axis=1, keepdims=True)
        # a row every class calibrated to 0 keeps its raw probabilities rather than dividing by zero
        return np.where(total > 0, out / np.where(total > 0, total, 1.0), proba)
    raise ValueError(f"unknown calibration method {method!r}")


def _group_folds(groups: np.ndarray, k: int) -> list[np.ndarray]:
    """k held-out index sets with every group whole; groups dealt largest first to the lightest fold."""
    names, counts = np.unique(groups, return_counts=True)
    load = np.zeros(k, dtype=int)
    fold_of: dict[Any, int] = {}
    for i in np.argsort(-counts, kind="stable"):
        f = int(load.argmin())
        fold_of[names[i]] = f
        load[f] += counts[i]
    assignment = np.array([fold_of[g] for g in groups])
    return [np.flatnonzero(assignment == f) for f in range(k) if (assignment == f).any()]


def choose_calibration(
    proba: np.ndarray, y_true: np.ndarray, classes: list[str], groups: np.ndarray, folds: int = 5
) -> dict[str, Any]:
    """Pick the calibration with the lowest held-out ECE (ties: the simpler one), fitted on all rows.

    Returns method, the fitted calibrator, and per method the ECE and log-loss on held-out groups, so the
    report can show "ECE 0.118 before, 0.031 after (held out)" and a reader can see the runner-up.
    """
    index = {c: i for i, c in enumerate(classes)}
    codes = np.array([index[str(t)] for t in y_true])
    held_out = _group_folds(np.asarray(groups), folds)
    scores: dict[str, dict[str, float]] = {}
    for method in METHODS:
        calibrated = np.empty_like(proba, dtype=float)
        for test in held_out:
            train = np.setdiff1d(np.arange(len(codes)), test)
            calibrated[test] = apply_calibrator(fit_calibrator(proba[train], codes[train], method), proba[test])
        scores[method] = {
            "ece": calibration_summary(y_true, calibrated, classes)["ece"],
            "log_loss": log_loss(codes, calibrated),
        }
    best = min(METHODS, key=lambda m: (round(scores[m]["ece"], 6), METHODS.index(m)))
    return {
        "method": best,
        "calibrator": fit_calibrator(proba, codes, best),
        "held_out": scores,
        "ece_before": scores["none"]["ece"],
        "ece_after": scores[best]["ece"],
        "groups": len(held_out),
        "cells": len(codes),
        "classes": list(classes),  # the column order the calibrator expects
    }


def calibrate_entry(entry: Any, datasets: dict[int, Any], classes: list[str]) -> dict[str, Any]:
    """`choose_calibration` on an entry's cross-validated probabilities of the first seed (every test cell
    once), held out by the first seed's spatial blocks."""
    from cellfeatures.benchmark.entries import cell_clusters

    first = entry.predictions.filter(pl.col("seed") == entry.seeds[0])
    groups = cell_clusters(next(iter(datasets.values())), first["nucleus_id"].to_list())
    proba = first.select(f"p_{c}" for c in classes).to_numpy()
    return choose_calibration(proba, first["y_true"].to_numpy(), classes, groups)
