"""Tables that abstain, compared fairly: every table against every trained model on the cells the table
covers (both metrics, paired), and accuracy–coverage curves where our models abstain as much.

Why: a prediction table that leaves its hardest cells unlabelled (the early model says "6P" where IT vs CT
is undecided) scores high on what it does label. Two fair questions follow. (1) On exactly the cells it
labels, is it better than our model? (`covered_comparisons`: paired difference, joint block bootstrap.)
(2) If our model may also abstain on as many cells, choosing by its own confidence (`max_p`), is it
better? (`selective_curve` and `selective_comparisons`.) Both use the same cluster draws for the two sides,
so the interval is that of the difference, not of two separate numbers.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl

from cellfeatures.benchmark.entries import DIFFERENCE_METRICS, EntryResult, _replicates
from cellfeatures.benchmark.evaluate import Evaluator
from cellfeatures.benchmark.models import CUSTOM, EXISTING, EXTERNAL, TRAINED
from cellfeatures.benchmark.stats import percentile_interval
from cellfeatures.datasets.dataset import Dataset

CURVE_COVERAGES = (1.0, 0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5)
TABLE_KINDS = (EXISTING, EXTERNAL)


def _seed_means(frame: pl.DataFrame, classes: list[str]) -> dict[str, float]:
    """Mean over seeds of each pooled metric of `frame` (seed, y_true, y_pred)."""
    evaluator = Evaluator(classes=classes)
    values: dict[str, list[float]] = {m: [] for m in DIFFERENCE_METRICS}
    for seed in frame["seed"].unique(maintain_order=True).to_list():
        part = frame.filter(pl.col("seed") == seed)
        if part.height:
            scored = evaluator.eval(part["y_true"].to_numpy(), part["y_pred"].to_list())
            for m in DIFFERENCE_METRICS:
                values[m].append(scored[m])
    return {m: float(np.mean(v)) if v else float("nan") for m, v in values.items()}


Side = tuple[dict[str, np.ndarray], dict[str, float], int]  # bootstrap replicates, seed means, clusters


def _side(datasets: dict[int, Dataset], frame: pl.DataFrame, universe: pl.DataFrame, classes: list[str]) -> Side:
    """One side of a paired comparison: `frame`'s replicates drawn over `universe`'s clusters, its means."""
    replicates, clusters = _replicates(datasets, frame, classes, universe=universe)
    return replicates, _seed_means(frame, classes), clusters


class _TableSide:
    """A prediction table's side, computed once per set of test cells rather than once per model: every
    model of a board is scored on the same cells, so the clusters (and the table's draws) are the same."""

    def __init__(self, datasets: dict[int, Dataset], frame: pl.DataFrame, classes: list[str]) -> None:
        self.datasets, self.frame, self.classes = datasets, frame, classes
        self.cells: pl.Series | None = None
        self.side: Side | None = None

    def over(self, universe: pl.DataFrame) -> Side:
        cells = universe["nucleus_id"].unique().sort()
        if self.side is None or self.cells is None or not self.cells.equals(cells):
            self.cells, self.side = cells, _side(self.datasets, self.frame, universe, self.classes)
        return self.side


def paired_subsets(
    datasets: dict[int, Dataset],
    a: pl.DataFrame,
    b: pl.DataFrame,
    universe: pl.DataFrame,
    classes: list[str],
    a_side: Side | None = None,
) -> dict[str, Any]:
    """b minus a, each a subset of the test predictions `universe`, per metric: the difference of the seed
    means and its 95% paired interval (the same cluster draws for both sides). `a_side`: a's side already
    computed over the same universe (see _TableSide)."""
    ra, ma, clusters = a_side if a_side is not None else _side(datasets, a, universe, classes)
    rb, mb, _ = _side(datasets, b, universe, classes)
    out: dict[str, Any] = {"clusters": clusters}
    for m in DIFFERENCE_METRICS:
        low, high = percentile_interval(rb[m] - ra[m]) if m in ra and m in rb else (float("nan"), float("nan"))
        out[m] = {
            "a": ma[m],
            "b": mb[m],
            "diff": mb[m] - ma[m],
            "low": low,
            "high": high,
            "distinguishable": not (low <= 0 <= high) if low == low else False,
        }
    return out


def _covered_ids(table: EntryResult) -> pl.DataFrame:
    return table.predictions.filter(pl.col("y_pred") != "<none>").select("seed", "nucleus_id")


def covered_comparisons(entries: list[EntryResult], datasets: dict[int, Dataset], classes: list[str]) -> None:
    """In place: each prediction table's `covered["models"]`, one row per trained headline model scored on
    the cells the table covers (every seed): both metrics for both sides, the model minus the table."""
    models = [e for e in entries if e.kind in (TRAINED, CUSTOM) and e.headline]
    for table in (e for e in entries if e.kind in TABLE_KINDS and e.covered is not None):
        cells = _covered_ids(table)
        if not cells.height:
            continue
        theirs = table.predictions.join(cells, on=["seed", "nucleus_id"], how="semi")
        side = _TableSide(datasets, theirs, classes)
        rows = []
        for model in models:
            if model.seeds != table.seeds:
                continue
            ours = model.predictions.join(cells, on=["seed", "nucleus_id"], how="semi")
            if ours.height != theirs.height:
                continue  # not scored on the same cells: no paired difference exists
            rows.append(
                {
                    "model": model.entry,
                    "cells": int(cells.height / len(table.seeds)),
                    **paired_subsets(datasets, theirs, ours, model.predictions, classes, side.over(model.predictions)),
                }
            )
        table.covered = {**(table.covered or {}), "models": rows}


def _kept(predictions: pl.DataFrame, classes: list[str], coverage: float) -> pl.DataFrame:
    """Per seed, the ceil(coverage x n) cells with the highest top-class probability (ties: by nucleus id)."""
    p_cols = [f"p_{c}" for c in classes]
    ranked = predictions.with_columns(pl.max_horizontal(p_cols).alias("_max_p")).sort(
        ["seed", "_max_p", "nucleus_id"], descending=[False, True, False]
    )
    return (
        ranked.with_columns(pl.int_range(pl.len()).over("seed").alias("_rank"), pl.len().over("seed").alias("_n"))
        .filter(pl.col("_rank") < (pl.col("_n") * coverage).ceil())
        .drop("_max_p", "_rank", "_n")
    )


def has_probabilities(entry: EntryResult, classes: list[str]) -> bool:
    return (
        all(f"p_{c}" in entry.predictions.columns for c in classes)
        and not entry.predictions.select(pl.any_horizontal(pl.col(f"p_{c}").is_null() for c in classes).any()).item()
    )


def selective_curve(
    entry: EntryResult, classes: list[str], coverages: tuple[float, ...] = CURVE_COVERAGES
) -> list[dict[str, float]]:
    """Accuracy and balanced accuracy (mean over seeds) of the cells the model keeps at each coverage,
    keeping its most confident cells; one row per coverage."""
    rows = []
    for c in coverages:
        kept = _kept(entry.predictions, classes, c)
        rows.append(
            {
                "coverage": c,
                "cells": math.ceil(entry.predictions.height / len(entry.seeds) * c),
                **_seed_means(kept, classes),
            }
        )
    return rows


def selective_comparisons(entries: list[EntryResult], datasets: dict[int, Dataset], classes: list[str]) -> None:
    """In place: each prediction table's `covered["at_equal_coverage"]`, one row per trained headline model
    abstaining on as many cells (it keeps its most confident share equal to the table's coverage), the
    model minus the table, paired."""
    models = [e for e in entries if e.kind in (TRAINED, CUSTOM) and e.headline and has_probabilities(e, classes)]
    for table in (e for e in entries if e.kind in TABLE_KINDS and e.coverage and e.covered is not None):
        theirs = table.predictions.filter(pl.col("y_pred") != "<none>")
        side = _TableSide(datasets, theirs, classes)
        rows = []
        for model in models:
            if model.seeds != table.seeds:
                continue
            kept = _kept(model.predictions, classes, float(table.coverage or 0))
            universe = model.predictions
            rows.append(
                {"model": model.entry, **paired_subsets(datasets, theirs, kept, universe, classes, side.over(universe))}
            )
        table.covered = {**(table.covered or {}), "at_equal_coverage": rows}
