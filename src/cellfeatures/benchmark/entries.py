"""One leaderboard entry (EntryResult) from trained fits: pooled metrics per seed, per-fold spread, every
prediction, bootstrap intervals over spatial blocks, permutation importances."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from cellfeatures.benchmark.evaluate import Evaluator, headline_metrics
from cellfeatures.benchmark.fits import FitTask
from cellfeatures.benchmark.models import DEPTH_FEATURE, EXTERNAL
from cellfeatures.datasets.dataset import Dataset
from cellfeatures.datasets.selection import LAYER_FEATURES

IMPORTANCE_MODELS = ("logistic_regression", "random_forest", "hist_gradient_boosting")  # seed-0 fold-0 fit kept
ALWAYS_EXPLAINED = "hist_gradient_boosting"  # importances beside the best model's, whichever that is
MIN_HEADLINE_COVERAGE = 0.5  # a prediction table covering fewer test cells is listed, not headlined


@dataclass
class EntryResult:
    """One leaderboard entry: pooled metrics per seed, per-fold metrics, every prediction, intervals."""

    entry: str
    kind: str
    seeds: list[int]
    per_seed: list[dict[str, Any]]  # pooled cross-validated metrics per seed (Evaluator output + seed)
    per_fold: list[dict[str, Any]]  # {seed, fold, n, accuracy, ...}
    origins: list[str]
    predictions: pl.DataFrame  # seed, fold, nucleus_id, y_true, y_pred, p_<class>...
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)  # of the seed mean, bootstrap 95%
    clusters: int | None = None  # spatial units (or cells) the bootstrap resampled, jointly across seeds
    vs_best: dict[str, Any] | None = None  # difference_to(the best model): paired, with its interval
    coverage: float | None = None
    covered: dict[str, Any] | None = None  # accuracy on the covered cells + paired test vs the best model
    locked: dict[str, Any] | None = None  # metrics on the locked test set
    importances: list[dict[str, Any]] = field(default_factory=list)
    source: str = ""  # a prediction file's SHA-256, a table name
    selective: list[dict[str, Any]] = field(default_factory=list)  # accuracy-coverage curve (selective.py)
    calibration: dict[str, Any] | None = None  # the held-out choice of calibration (calibration.py)
    locked_predictions: pl.DataFrame | None = None  # nucleus_id, y_true, y_pred (+ p_<class>) on the slab
    gain: dict[str, Any] | None = None  # an ablation: what the left-out features add to the full model

    def summary(self, metric: str) -> dict[str, float]:
        """mean over seeds, std over seeds, std over all (seed, fold) pairs, and the bootstrap interval."""
        seeds = np.array([m.get(metric, np.nan) for m in self.per_seed], dtype=float)
        folds = np.array([m.get(metric, np.nan) for m in self.per_fold], dtype=float)
        lo, hi = self.intervals.get(metric, (float("nan"), float("nan")))
        finite = folds[np.isfinite(folds)]
        return {
            "mean": float(np.nanmean(seeds)) if np.isfinite(seeds).any() else float("nan"),
            "seed_std": float(np.nanstd(seeds)) if np.isfinite(seeds).any() else float("nan"),
            "fold_std": float(finite.std(ddof=1)) if len(finite) > 1 else float("nan"),
            "ci_low": lo,
            "ci_high": hi,
        }

    @property
    def headline(self) -> bool:
        """No synthetic feature, not an external file (its training data is unknown), and (for prediction
        tables) enough coverage to speak for the test cells."""
        if "synthetic" in self.origins or self.kind == EXTERNAL:
            return False
        return self.coverage is None or self.coverage >= MIN_HEADLINE_COVERAGE


def _blocks(ds: Dataset) -> dict[int, int]:
    if "block" not in ds.splits.columns:
        return {}
    return dict(zip(ds.splits["nucleus_id"].to_list(), ds.splits["block"].to_list(), strict=True))


def cell_clusters(ds: Dataset, ids: list[int]) -> np.ndarray:
    """The resampling unit of each cell: its spatial block in `ds`'s split, or the cell itself when the split
    has no blocks or any of these cells lacks one (the bootstrap and the calibration's held-out folds)."""
    blocks = _blocks(ds)
    by_block = bool(blocks) and all(blocks.get(n, -1) >= 0 for n in ids)
    return np.array([blocks[n] for n in ids] if by_block else ids, dtype=np.int64)


def _replicates(
    datasets: dict[int, Dataset],
    predictions: pl.DataFrame,
    classes: list[str],
    per_class: bool = False,
    universe: pl.DataFrame | None = None,
) -> tuple[dict[str, np.ndarray], int]:
    """Bootstrap replicates of the seed-averaged pooled metrics, and the number of clusters resampled.

    The clusters are the first seed's spatial blocks, the same units for every seed (each seed re-draws
    its own blocks for the split, but a cell's place in space does not move): one replicate draws them
    once and weights every seed's predictions of their cells (stats.joint_bootstrap_replicates). Cells
    are the clusters when the split has no blocks. The draws depend only on the clusters and the first
    seed, so two entries scored on the same cells get the same draws: their replicate-by-replicate
    difference is a paired bootstrap of the difference (`difference_to`). `universe` (predictions of every
    test cell) fixes the clusters when `predictions` holds a subset of them (selective.py).
    """
    from cellfeatures.benchmark.stats import joint_bootstrap_replicates

    parts = []
    for seed in datasets:
        part = predictions.filter(pl.col("seed") == seed)
        if not part.height:
            continue
        ids = part["nucleus_id"].to_list()
        y_pred = np.array([None if p == "<none>" else p for p in part["y_pred"].to_list()], dtype=object)
        parts.append((part["y_true"].to_numpy(), y_pred, ids))
    if not parts:
        return {}, 0
    every = universe["nucleus_id"].to_list() if universe is not None else [n for _t, _p, ids in parts for n in ids]
    unit_of = dict(zip(every, cell_clusters(next(iter(datasets.values())), every).tolist(), strict=True))
    clustered = [(t, p, np.array([unit_of[n] for n in ids], dtype=np.int64)) for t, p, ids in parts]
    units = np.array(list(unit_of.values()), dtype=np.int64) if universe is not None else None
    return joint_bootstrap_replicates(clustered, classes, seed=next(iter(datasets)), per_class=per_class, units=units)


def _intervals(
    datasets: dict[int, Dataset], predictions: pl.DataFrame, classes: list[str]
) -> tuple[dict[str, tuple[float, float]], int]:
    """95% bootstrap intervals of the seed-averaged pooled metrics (see `_replicates`) and the cluster count."""
    from cellfeatures.benchmark.stats import percentile_interval

    replicates, n_clusters = _replicates(datasets, predictions, classes)
    return {m: percentile_interval(values) for m, values in replicates.items()}, n_clusters


def class_recalls(entry: EntryResult, datasets: dict[int, Dataset], classes: list[str]) -> dict[str, dict[str, Any]]:
    """Per class: the mean over seeds of the pooled recall, its 95% interval (the same joint block
    bootstrap as the headline metrics) and the class's test cells per seed. Why: a balanced accuracy
    averages recalls, and a class with a handful of cells can carry a lead by itself."""
    from cellfeatures.benchmark.stats import percentile_interval

    replicates, _n = _replicates(datasets, entry.predictions, classes, per_class=True)
    out = {}
    for c in classes:
        recalls = [m["per_class"][c]["recall"] for m in entry.per_seed if m["per_class"][c]["support"]]
        low, high = percentile_interval(replicates[f"recall:{c}"])
        support = entry.per_seed[0]["per_class"][c]["support"] if entry.per_seed else 0
        mean = float(np.mean(recalls)) if recalls else float("nan")
        out[c] = {"mean": mean, "low": low, "high": high, "test_cells": support}
    return out


DIFFERENCE_METRICS = ("balanced_accuracy", "accuracy")
MIN_LOCKED_CLASS_CELLS = 5  # a class with fewer cells on the slab is listed apart from its locked scores


def locked_intervals(frame: pl.DataFrame, classes: list[str]) -> dict[str, Any]:
    """95% intervals of the locked-slab metrics, resampling its cells (the slab is one spatial region, so
    its blocks are too few to resample), the classes with under MIN_LOCKED_CLASS_CELLS cells there, and
    balanced accuracy over the other classes only (those few cells cannot carry a per-class recall)."""
    from cellfeatures.benchmark.stats import bootstrap_replicates, percentile_interval

    y_true = frame["y_true"].to_numpy()
    y_pred = np.array([None if p == "<none>" else p for p in frame["y_pred"].to_list()], dtype=object)
    replicates = bootstrap_replicates(y_true, y_pred, classes, seed=0)
    counts = dict(zip(*np.unique(y_true, return_counts=True), strict=True))
    sparse = sorted(c for c in classes if 0 < counts.get(c, 0) < MIN_LOCKED_CLASS_CELLS)
    out: dict[str, Any] = {
        "intervals": {m: list(percentile_interval(replicates[m])) for m in DIFFERENCE_METRICS},
        "sparse_classes": {c: int(counts[c]) for c in sparse},
    }
    if sparse:
        keep = ~np.isin(y_true, sparse)
        recalls = [
            float(np.mean(y_pred[keep & (y_true == c)] == c)) for c in classes if c in counts and c not in sparse
        ]
        out["balanced_accuracy_without_sparse"] = float(np.mean(recalls)) if recalls else None
    return out


def difference_to(
    reference: EntryResult, other: EntryResult, datasets: dict[int, Dataset], classes: list[str]
) -> dict[str, Any] | None:
    """`other` minus `reference` on the same test cells (see `differences_to`)."""
    return differences_to(reference, [other], datasets, classes)[0]


def differences_to(
    reference: EntryResult, others: list[EntryResult], datasets: dict[int, Dataset], classes: list[str]
) -> list[dict[str, Any] | None]:
    """Each of `others` minus `reference` on the same test cells, per metric: the difference of the seed
    means and its 95% paired bootstrap interval (the same cluster draws for both, `_replicates`); the
    reference's replicates are drawn once for all.

    "distinguishable" is False when the interval holds zero: the data cannot order the two entries.
    None for an entry not scored on the same cells (then no paired difference exists).
    """
    from cellfeatures.benchmark.stats import percentile_interval

    def cells(e: EntryResult) -> pl.DataFrame:
        return e.predictions.select("seed", "nucleus_id").sort("seed", "nucleus_id")

    reference_cells = cells(reference)
    ours: dict[str, np.ndarray] | None = None
    out: list[dict[str, Any] | None] = []
    for other in others:
        if reference.seeds != other.seeds or not reference_cells.equals(cells(other)):
            out.append(None)
            continue
        if ours is None:
            ours, _n = _replicates(datasets, reference.predictions, classes)
        theirs, n_clusters = _replicates(datasets, other.predictions, classes)
        result: dict[str, Any] = {"vs": reference.entry, "clusters": n_clusters}
        for metric in DIFFERENCE_METRICS:
            low, high = percentile_interval(theirs[metric] - ours[metric])
            diff = other.summary(metric)["mean"] - reference.summary(metric)["mean"]
            result[metric] = {"diff": diff, "low": low, "high": high, "distinguishable": not (low <= 0 <= high)}
        out.append(result)
    return out


def _prediction_frame(
    seed: int,
    fold: int | str,
    ids: np.ndarray,
    y_true: np.ndarray,
    y_pred: Any,
    proba: np.ndarray | None,
    classes: list[str],
) -> pl.DataFrame:
    columns: dict[str, Any] = {
        "seed": np.full(len(ids), seed, dtype=np.int64),
        "fold": [str(fold)] * len(ids),
        "nucleus_id": np.asarray(ids, dtype=np.int64),
        "y_true": np.asarray(y_true).astype(str),
        "y_pred": ["<none>" if v is None else str(v) for v in y_pred],
    }
    if proba is not None and proba.shape[1] == len(classes):
        for j, c in enumerate(classes):
            columns[f"p_{c}"] = proba[:, j]
    return pl.DataFrame(columns)


def _entry_origins(first: Dataset, model: Any) -> list[str]:
    origins = first.card["feature_origins"]
    if model == "majority":
        return []
    if model in ("depth_only", "depth_only_unweighted"):
        return [origins[DEPTH_FEATURE]]
    if model == "hist_gradient_boosting_no_layer":
        return sorted({o for f, o in origins.items() if f not in LAYER_FEATURES})
    return sorted(set(origins.values()))


def trained_tasks(datasets: dict[int, Dataset], name: str, model: Any, drop: tuple[str, ...] = ()) -> list[FitTask]:
    """One FitTask per (seed, fold), plus one for the locked test set of the first seed's dataset; `drop`:
    design-matrix columns left out (an ablation)."""
    first = next(iter(datasets.values()))
    classes = Evaluator(first).classes

    def xy(ds: Dataset, k: int | str, part: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
        x, y, names = ds.xy(k, part)
        keep = [i for i, n in enumerate(names) if n not in drop]
        return (x[:, keep], y, [names[i] for i in keep]) if drop else (x, y, names)

    tasks = []
    for seed, ds in datasets.items():
        for k in range(len(ds.folds)):
            x_train, y_train, names = xy(ds, k, "train")
            x_test, y_test, _ = xy(ds, k, "test")
            if len(y_test):
                # the fitted model of seed 0 fold 0 is kept for these: the report shows the permutation
                # importances of the best model (not known before the fits) and of gradient boosting
                keep = name in IMPORTANCE_MODELS and seed == next(iter(datasets)) and k == 0
                tasks.append(FitTask((name, seed, k), model, names, seed, x_train, y_train, x_test, classes, keep))
    if first.has_locked:
        x_train, y_train, names = xy(first, "locked", "train")
        x_test, _y, _ = xy(first, "locked", "test")
        seed = next(iter(datasets))
        tasks.append(FitTask((name, seed, "locked"), model, names, seed, x_train, y_train, x_test, classes))
    return tasks


def collect_trained(
    datasets: dict[int, Dataset], name: str, model: Any, kind: str, fits: dict[Any, Any]
) -> EntryResult:
    """An EntryResult from the fits of one model (see trained_tasks)."""
    first = next(iter(datasets.values()))
    evaluator = Evaluator(first)
    classes = evaluator.classes
    per_seed, per_fold, frames = [], [], []
    locked_predictions = None
    for seed, ds in datasets.items():
        truth, preds, probas = [], [], []
        for k in range(len(ds.folds)):
            if (name, seed, k) not in fits:
                continue
            pred, proba, _fitted = fits[(name, seed, k)]
            test = ds.fold(k)[1]
            y_test = test[ds.label].to_numpy()
            has_proba = proba.shape[1] == len(classes)
            metrics = evaluator.eval(y_test, pred, proba if has_proba else None)
            per_fold.append({"seed": seed, "fold": k, **headline_metrics(metrics)})
            truth.append(y_test)
            preds.append(pred)
            probas.append(proba if has_proba else None)
            frames.append(_prediction_frame(seed, k, test["nucleus_id"].to_numpy(), y_test, pred, proba, classes))
        complete = [p for p in probas if p is not None]
        pooled_proba: np.ndarray | None = np.concatenate(complete) if probas and len(complete) == len(probas) else None
        per_seed.append({"seed": seed, **evaluator.eval(np.concatenate(truth), np.concatenate(preds), pooled_proba)})
    predictions = pl.concat(frames, how="diagonal_relaxed")
    locked = None
    if (name, next(iter(datasets)), "locked") in fits:
        pred, proba, _ = fits[(name, next(iter(datasets)), "locked")]
        test = first.fold("locked")[1]
        y_locked = test[first.label].to_numpy()
        locked = {"n": test.height, **headline_metrics(evaluator.eval(y_locked, pred))}
        locked_predictions = _prediction_frame(
            next(iter(datasets)), "locked", test["nucleus_id"].to_numpy(), y_locked, pred, proba, classes
        )
        locked |= locked_intervals(locked_predictions, classes)
    intervals, clusters = _intervals(datasets, predictions, classes)
    return EntryResult(
        name,
        kind,
        list(datasets),
        per_seed,
        per_fold,
        _entry_origins(first, model),
        predictions,
        intervals=intervals,
        clusters=clusters,
        locked=locked,
        locked_predictions=locked_predictions,
    )


def importances_of(datasets: dict[int, Dataset], name: str, fits: dict[Any, Any]) -> list[dict[str, Any]]:
    """Permutation importances of `name`'s kept fit (first seed, fold 0; see trained_tasks), or []."""
    seed = next(iter(datasets))
    found = fits.get((name, seed, 0))
    if found is None or found[2] is None:
        return []
    ds = datasets[seed]
    x_test, y_test, names = ds.xy(0, "test")
    return permutation_importances(found[2], x_test, y_test, names, seed)


def permutation_importances(
    model: Any, x: np.ndarray, y: np.ndarray, names: list[str], seed: int
) -> list[dict[str, Any]]:
    """Permutation importance on the test split (balanced accuracy drop), most important first."""
    from sklearn.inspection import permutation_importance
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        result = permutation_importance(
            model, x, y, n_repeats=5, random_state=seed, scoring="balanced_accuracy", n_jobs=1
        )
    rows = [
        {"feature": n, "mean": float(m), "std": float(s)}
        for n, m, s in zip(names, result.importances_mean, result.importances_std, strict=True)
    ]
    return sorted(rows, key=lambda r: -r["mean"])
