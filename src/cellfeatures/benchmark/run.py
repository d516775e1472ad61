"""Baseline classifiers, a standard evaluator, existing model tables scored the same way, a leaderboard.

Fair by construction:
- every entry is scored by one `Evaluator` on the same test cells of the same folds;
- trained baselines are scikit-learn Pipelines: imputation and scaling are fitted inside each training
  fold, so nothing of the test cells leaks into preprocessing;
- prediction tables (the model tables that already exist, or anyone's file) are harmonised to the
  dataset's level and scored on the same test cells in two views: all test cells (a cell without a
  prediction counts as wrong, coverage reported) and only the cells the table covers, where the best
  trained model is scored on the very same cells and compared with an exact McNemar test;
- each seed re-draws the spatial split (a seeded grid offset and block-to-fold assignment) and the
  models' randomness. The leaderboard reports, per metric, the mean over seeds of the pooled
  cross-validated value, its spread over folds and over seeds, and a 95% bootstrap interval that
  resamples the first seed's spatial blocks (cells for other splits) with one draw for every seed, since
  all seeds score the same cells; every entry also carries its paired difference to the best model;
- one ranking metric, `RANKING_METRIC` (balanced accuracy), orders the board and picks "best" — by
  cross-validation only. A locked test set, when the split has one, is scored once and reported apart.
Fits are small (about a thousand cells), so each runs with one BLAS/OpenMP thread (`threadpoolctl`) and
the fits of all models x seeds x folds run in worker processes sized to the cores this process may
use: on a busy machine a thread team spinning against other jobs turned 90 s into an hour.
Models are saved with joblib next to a JSON sidecar (dataset id, features, sklearn version, metrics,
SHA-256 of the file); loading refuses a file whose hash or dataset id does not match.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from cellfeatures._util.names import did_you_mean
from cellfeatures._util.timing import Stages, stage
from cellfeatures.benchmark.ablation import ablation_gains, planned
from cellfeatures.benchmark.entries import ALWAYS_EXPLAINED, collect_trained, importances_of, trained_tasks
from cellfeatures.benchmark.evaluate import RANKING_METRIC, Evaluator
from cellfeatures.benchmark.fits import Progress, run_fits
from cellfeatures.benchmark.leaderboard import Leaderboard
from cellfeatures.benchmark.model_tables import best_entry, compare_paired, evaluate_existing
from cellfeatures.benchmark.models import ABLATION, CUSTOM, TRAINED, TRAINED_MODELS, _kind, save_model
from cellfeatures.datasets.build import seed_sibling
from cellfeatures.datasets.dataset import Dataset
from cellfeatures.datasets.layout import fit_cache_dir
from cellfeatures.errors import ConfigError
from cellfeatures.labels.sources import LABEL_SOURCES
from cellfeatures.store.store import FeatureStore

# ------------------------------------------------------------------ evaluator


# ------------------------------------------------------------------ models


# ------------------------------------------------------------------ persistence


# ------------------------------------------------------------------ fitting in processes


# ------------------------------------------------------------------ results


# ------------------------------------------------------------------ prediction tables


def run_baselines(
    store: FeatureStore,
    dataset: Dataset,
    *,
    seeds: tuple[int, ...] = (0, 1, 2),
    models: tuple[str, ...] | dict[str, Any] = TRAINED_MODELS,
    custom: dict[str, Any] | None = None,
    existing: tuple[str, ...] | None = None,
    root: str | Path | None = None,
    source: Any = None,
    progress: Progress | None = None,
    n_jobs: int | None = None,
    stages: Stages | None = None,
    ablations: dict[str, str] | None = None,
) -> Leaderboard:
    """Every baseline (and `custom` estimators) and every existing model table, on the dataset and its seeds.

    `models` may also be a dict of name -> estimator or built-in model name, e.g.
    `models={"mine": make_pipeline(...), "hist_gradient_boosting": "hist_gradient_boosting"}`: any
    scikit-learn-compatible estimator is trained and scored on the same folds as ours.
    All fits of all models run together in worker processes (see the module doc); `progress` hears
    (fits done, fits total, the fit that finished); `stages` hears the wall time of fits, scoring and
    the prediction tables. `ablations` (group name -> feature name pattern): logistic regression and
    gradient boosting are refitted without the matching features, and the report shows the paired gain.
    """
    if isinstance(models, dict):
        custom = {**(custom or {}), **{k: v for k, v in models.items() if not isinstance(v, str)}}
        models = tuple(v for v in models.values() if isinstance(v, str))
    unknown = [m for m in models if m not in TRAINED_MODELS]
    if unknown:
        raise ConfigError(
            f"unknown model(s) {unknown}{did_you_mean(unknown[0], TRAINED_MODELS)}; known: {', '.join(TRAINED_MODELS)}"
        )
    with stage(stages, "datasets"):  # one per seed, beside the dataset by default
        datasets = {seed: seed_sibling(store, dataset, seed, root) for seed in seeds}
    chosen: list[tuple[str, Any, str]] = [(m, m, _kind(m)) for m in models]
    chosen += [(name, est, CUSTOM) for name, est in (custom or {}).items()]
    plans = planned(tuple(models), dataset.xy()[2], ablations or {})
    chosen += [(name, base, ABLATION) for name, base, _dropped, _group in plans]
    drops = {name: dropped for name, _base, dropped, _group in plans}
    with stage(stages, "fits"):
        tasks = [t for name, model, _kind_ in chosen for t in trained_tasks(datasets, name, model, drops.get(name, ()))]
        fits = run_fits(tasks, progress, n_jobs, cache_dir=fit_cache_dir(dataset.path))
    with stage(stages, "scoring"):
        entries = [collect_trained(datasets, name, model, kind, fits) for name, model, kind in chosen]
    label_source = dataset.card["label"]["source"]
    candidates = (
        existing
        if existing is not None
        else tuple(name for name, spec in LABEL_SOURCES.items() if spec.kind == "model" and name != label_source)
    )
    with stage(stages, "model tables"):
        if source is None:
            tables = [t for name in candidates if name in LABEL_SOURCES for t in LABEL_SOURCES[name].tables]
            source = store.source_of(dataset.card["feature_version"], tables)
        for name in candidates:
            result = evaluate_existing(datasets, source, name)
            if result is not None:
                entries.append(result)
        compare_paired(entries, datasets)
        best = best_entry(entries)
        for e in entries:  # permutation importances only where the report shows them (~1 s each for a forest)
            if e.entry in {best.entry if best else "", ALWAYS_EXPLAINED}:
                e.importances = importances_of(datasets, e.entry, fits)
        calibrate_and_curve(entries, datasets)
        ablation_gains(entries, datasets, Evaluator(dataset).classes, plans)
    return Leaderboard(dataset, entries, datasets)


def calibrate_and_curve(entries: list[Any], datasets: dict[int, Dataset]) -> None:
    """In place: each trained entry with probabilities gets its accuracy-coverage curve and its held-out
    choice of calibration (which `predict` applies)."""
    from cellfeatures.benchmark.calibration import calibrate_entry
    from cellfeatures.benchmark.selective import has_probabilities, selective_curve

    classes = Evaluator(next(iter(datasets.values()))).classes
    for e in entries:
        if e.kind in (TRAINED, CUSTOM) and has_probabilities(e, classes):
            e.selective = selective_curve(e, classes)
            e.calibration = calibrate_entry(e, datasets, classes)


def report_key(
    dataset_id: str, seeds: tuple[int, ...], models: tuple[str, ...], existing: tuple[str, ...] | None
) -> str:
    from cellfeatures.benchmark.models import MODELS_VERSION

    blob = json.dumps(
        {"dataset": dataset_id, "seeds": seeds, "models": models, "existing": existing, "v": 8, "m": MODELS_VERSION}
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def save_best_model(board: Leaderboard, out: Path) -> Path | None:
    """Refit the best entry (by cross-validated ranking metric) on all cells and save it with its sidecar."""
    from cellfeatures.benchmark.models import make_model
    from cellfeatures.benchmark.run import TRAINED_MODELS

    best = best_entry(board.entries)
    if best is None or best.entry not in TRAINED_MODELS:
        return None
    ds = board.dataset
    x, y, names = ds.xy()
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        model = make_model(best.entry, names, seed=0).fit(x, y)
    metrics = {f"{m}_{k}": v for m in ("accuracy", RANKING_METRIC, "macro_f1") for k, v in best.summary(m).items()}
    return save_model(model, out / "models" / f"{best.entry}.joblib", ds, names, metrics)
