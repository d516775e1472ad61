"""Prediction tables scored like our models: the model tables that already exist and anyone's file, on the
same test cells, in two views (all test cells; only the covered cells, paired with the best trained
model by an exact McNemar test)."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from cellfeatures.benchmark.entries import (
    EntryResult,
    _intervals,
    _prediction_frame,
    differences_to,
    locked_intervals,
)
from cellfeatures.benchmark.evaluate import RANKING_METRIC, Evaluator, headline_metrics
from cellfeatures.benchmark.models import CUSTOM, EXISTING, TRAINED
from cellfeatures.datasets.dataset import Dataset
from cellfeatures.errors import CellFeaturesError
from cellfeatures.labels.sources import LABEL_SOURCES, load_labels


def evaluate_predictions(
    datasets: dict[int, Dataset],
    predicted: pl.DataFrame,
    entry: str,
    kind: str,
    origins: list[str],
    source: str = "",
) -> EntryResult:
    """Score a prediction table (nucleus_id, pred, optional p_<class>) on the same test cells as our models.

    View 1: every test cell, a cell without a prediction counts as wrong. View 2 (`covered`): only the
    cells the table predicts; `compare_paired` later adds the best trained model on those same cells.
    """
    first = next(iter(datasets.values()))
    evaluator = Evaluator(first)
    classes = evaluator.classes
    p_cols = [f"p_{c}" for c in classes]
    with_proba = all(c in predicted.columns for c in p_cols)
    per_seed, per_fold, frames = [], [], []
    for seed, ds in datasets.items():
        truth, preds = [], []
        for k in range(len(ds.folds)):
            test = ds.fold(k)[1].select("nucleus_id", ds.label).join(predicted, on="nucleus_id", how="left")
            if not test.height:
                continue
            y_true, y_pred = test[ds.label].to_numpy(), test["pred"].to_list()
            per_fold.append({"seed": seed, "fold": k, **headline_metrics(evaluator.eval(y_true, y_pred))})
            truth.append(y_true)
            preds += y_pred
            proba = test.select(p_cols).to_numpy() if with_proba else None
            frames.append(_prediction_frame(seed, k, test["nucleus_id"].to_numpy(), y_true, y_pred, proba, classes))
        per_seed.append({"seed": seed, **evaluator.eval(np.concatenate(truth), preds)})
    predictions = pl.concat(frames, how="diagonal_relaxed")
    first_seed = predictions.filter(pl.col("seed") == predictions["seed"][0])
    covered_rows = first_seed.filter(pl.col("y_pred") != "<none>")
    coverage = covered_rows.height / max(first_seed.height, 1)
    covered = {
        "n": covered_rows.height,
        "accuracy": float((covered_rows["y_true"] == covered_rows["y_pred"]).to_numpy().mean())
        if covered_rows.height
        else None,
    }
    locked, locked_predictions = None, None
    if first.has_locked:
        test = first.fold("locked")[1].select("nucleus_id", first.label).join(predicted, on="nucleus_id", how="left")
        y_locked, pred_locked = test[first.label].to_numpy(), test["pred"].to_list()
        locked = {"n": test.height, **headline_metrics(evaluator.eval(y_locked, pred_locked))}
        proba = test.select(p_cols).to_numpy() if with_proba else None
        seed0 = next(iter(datasets))
        locked_predictions = _prediction_frame(
            seed0, "locked", test["nucleus_id"].to_numpy(), y_locked, pred_locked, proba, classes
        )
        locked |= locked_intervals(locked_predictions, classes)
    intervals, clusters = _intervals(datasets, predictions, classes)
    return EntryResult(
        entry,
        kind,
        list(datasets),
        per_seed,
        per_fold,
        origins,
        predictions,
        intervals=intervals,
        clusters=clusters,
        coverage=coverage,
        covered=covered,
        locked=locked,
        source=source,
        locked_predictions=locked_predictions,
    )


def evaluate_existing(datasets: dict[int, Dataset], source: Any, label_source: str) -> EntryResult | None:
    """Score an existing model label table on the same test cells (harmonised to the dataset's level)."""
    first = next(iter(datasets.values()))
    level = first.card["label"]["level"]
    try:
        labels = load_labels(source, LABEL_SOURCES[label_source])
    except CellFeaturesError:
        return None
    predicted = labels.frame.select("nucleus_id", pl.col(level).alias("pred"))
    table = labels.tables_used[0]
    return evaluate_predictions(
        datasets, predicted, f"table:{table}", EXISTING, [source.info(table).origin], source=table
    )


def compare_paired(entries: list[EntryResult], datasets: dict[int, Dataset]) -> None:
    """In place: every entry's difference to the best model on the same test cells, with its paired
    bootstrap interval (`vs_best`); and each prediction table's covered cells, scored for the best
    trained model too (McNemar).

    Why: "the table covers 89% and scores 0.72 counting gaps as wrong" and "on the cells it labels it
    beats our model" are both true statements; readers need the second, on the same cells, with a test.
    And a ranking is not a difference: two entries whose paired interval holds zero are not ordered.
    """
    from cellfeatures.benchmark.selective import covered_comparisons, selective_comparisons
    from cellfeatures.benchmark.stats import mcnemar_exact

    best = best_entry(entries)
    if best is None:
        return
    classes = Evaluator(next(iter(datasets.values()))).classes
    others = [e for e in entries if e is not best]
    best.vs_best = None
    for e, difference in zip(others, differences_to(best, others, datasets, classes), strict=True):
        e.vs_best = difference
    ours = best.predictions.filter(pl.col("seed") == best.seeds[0]).select("nucleus_id", pl.col("y_pred").alias("ours"))
    for e in entries:
        if e.covered is None or not e.covered["n"]:
            continue
        theirs = e.predictions.filter((pl.col("seed") == e.seeds[0]) & (pl.col("y_pred") != "<none>"))
        paired = theirs.join(ours, on="nucleus_id", how="inner")
        a = (paired["y_pred"] == paired["y_true"]).to_numpy()
        b = (paired["ours"] == paired["y_true"]).to_numpy()
        test = mcnemar_exact(a, b)
        e.covered.update(
            {
                "vs": best.entry,
                "paired_n": test["n"],
                "model_accuracy": float(b.mean()) if len(b) else None,
                "table_only_right": test["a_only"],
                "model_only_right": test["b_only"],
                "p_value": test["p_value"],
            }
        )
    covered_comparisons(entries, datasets, classes)
    selective_comparisons(entries, datasets, classes)


def best_entry(entries: list[EntryResult]) -> EntryResult | None:
    """The headline trained (or custom) entry with the highest cross-validated ranking metric."""
    candidates = [e for e in entries if e.kind in (TRAINED, CUSTOM) and e.headline]
    if not candidates:
        return None
    return max(candidates, key=lambda e: e.summary(RANKING_METRIC)["mean"])
