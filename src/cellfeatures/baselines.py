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
  resamples whole spatial blocks (cells for other splits);
- one ranking metric, `RANKING_METRIC` (balanced accuracy), orders the board and picks "best" — by
  cross-validation only. A locked test set, when the split has one, is scored once and reported apart.
Fits are small (about a thousand cells), so each runs with one BLAS/OpenMP thread (`threadpoolctl`) and
the fits of all models x seeds x folds run in worker processes sized to the cores this process may
use: on a busy machine a thread team spinning against other jobs turned 90 s into an hour.
Models are saved with joblib next to a JSON sidecar (dataset id, features, sklearn version, metrics,
SHA-256 of the file); loading refuses a file whose hash or dataset id does not match.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from cellfeatures import display
from cellfeatures.datasets import LAYER_FEATURES, Dataset, DatasetSpec, build_dataset
from cellfeatures.errors import CellFeaturesError, ConfigError
from cellfeatures.labels import LABEL_SOURCES, load_labels
from cellfeatures.store import FeatureStore

FLOOR, TRAINED, EXISTING, EXTERNAL, CUSTOM = "floor", "trained", "existing", "external", "custom"
FLOORS = ("majority", "depth_only", "depth_only_unweighted")
TRAINED_MODELS = (
    *FLOORS,
    "logistic_regression",
    "random_forest",
    "hist_gradient_boosting",
    "hist_gradient_boosting_no_layer",
)
DEPTH_FEATURE = "soma_depth_um"
RANKING_METRIC = "balanced_accuracy"
# Bumped whenever a model's definition changes: part of every cached report's key.
MODELS_VERSION = "2"
METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "log_loss")
MIN_HEADLINE_COVERAGE = 0.5  # a prediction table covering fewer test cells is listed, not headlined


class ModelIntegrityError(CellFeaturesError):
    """A saved model does not match its sidecar (tampered file, or another dataset)."""


# ------------------------------------------------------------------ evaluator


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


# ------------------------------------------------------------------ models


def make_model(name: str, features: list[str], seed: int) -> Any:
    """A scikit-learn Pipeline; preprocessing lives inside it so it is fitted on training folds only.

    `features` are the design-matrix column names (`Dataset.xy`), so column subsets (depth only, no
    layer position) are picked by name.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.dummy import DummyClassifier
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    def hgb(weight: str | None) -> Any:
        return HistGradientBoostingClassifier(
            max_iter=100, learning_rate=0.1, max_leaf_nodes=15, class_weight=weight, random_state=seed
        )

    if name == "majority":
        return Pipeline([("model", DummyClassifier(strategy="most_frequent"))])
    if name in ("depth_only", "depth_only_unweighted"):
        if DEPTH_FEATURE not in features:
            raise ConfigError(f"the depth-only floor needs {DEPTH_FEATURE} among the dataset's features")
        index = features.index(DEPTH_FEATURE)
        weight = "balanced" if name == "depth_only" else None
        return Pipeline(
            [
                ("depth", ColumnTransformer([("depth", SimpleImputer(strategy="median"), [index])])),
                ("model", HistGradientBoostingClassifier(max_depth=3, class_weight=weight, random_state=seed)),
            ]
        )
    if name == "logistic_regression":
        return Pipeline(
            [
                ("impute", SimpleImputer(strategy="median")),
                ("scale", StandardScaler()),
                ("model", LogisticRegression(max_iter=3000, class_weight="balanced", C=1.0)),
            ]
        )
    if name == "random_forest":
        forest = RandomForestClassifier(
            n_estimators=300, min_samples_leaf=2, n_jobs=1, class_weight="balanced_subsample", random_state=seed
        )
        return Pipeline([("impute", SimpleImputer(strategy="median")), ("model", forest)])
    if name == "hist_gradient_boosting":
        return Pipeline([("model", hgb("balanced"))])
    if name == "hist_gradient_boosting_no_layer":
        keep = [i for i, f in enumerate(features) if f not in LAYER_FEATURES]
        return Pipeline([("select", ColumnTransformer([("keep", "passthrough", keep)])), ("model", hgb("balanced"))])
    raise ConfigError(f"unknown model {name!r}; known: {', '.join(TRAINED_MODELS)}")


def _did_you_mean(name: str, known: Any) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _kind(model: str) -> str:
    return FLOOR if model in FLOORS else TRAINED


def _proba_for(model: Any, x: np.ndarray, classes: list[str]) -> np.ndarray:
    """Predicted probabilities aligned to the evaluator's classes (classes unseen in training get 0)."""
    proba = model.predict_proba(x)
    out = np.zeros((len(x), len(classes)))
    for j, c in enumerate(model.classes_):
        out[:, classes.index(str(c))] = proba[:, j]
    return out


# ------------------------------------------------------------------ persistence


def save_model(model: Any, path: Path, dataset: Dataset, features: list[str], metrics: dict[str, Any]) -> Path:
    import joblib
    import sklearn

    path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, path)
    sidecar = {
        "dataset_id": dataset.id,
        "dataset": dataset.card["name"],
        "features": features,
        "sklearn_version": sklearn.__version__,
        "metrics": metrics,
        "sha256": _sha256(path),
        "file": path.name,
    }
    path.with_suffix(".json").write_text(json.dumps(sidecar, indent=2) + "\n")
    return path


def load_model(path: str | Path, dataset: Dataset) -> Any:
    """Load a saved model only if its bytes and its dataset are the ones the sidecar names."""
    import joblib

    path = Path(path)
    sidecar = json.loads(path.with_suffix(".json").read_text())
    if _sha256(path) != sidecar["sha256"]:
        raise ModelIntegrityError(
            f"{path}: SHA-256 does not match its sidecar: the file was modified; refusing to load"
        )
    if sidecar["dataset_id"] != dataset.id:
        raise ModelIntegrityError(f"{path} was trained on dataset {sidecar['dataset_id']}, not {dataset.id}")
    return joblib.load(path)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------ fitting in processes

Progress = Callable[[int, int, str], None]  # (fits done, fits total, what just finished)


FIT_CACHE = ".fits"  # under <dataset>/baselines/: finished fits, so an interrupted stage resumes


@dataclass(frozen=True)
class FitTask:
    """One fit: a model (name or estimator) on one training part, predicted on one test part."""

    key: tuple[str, int, int | str]  # (entry, seed, fold or "locked")
    model: Any  # a TRAINED_MODELS name, or an unfitted scikit-learn estimator
    names: list[str]
    seed: int
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    classes: list[str]
    keep_model: bool = False


def _fit_one(task: FitTask, threads: int | None = 1) -> tuple[tuple[str, int, int | str], np.ndarray, np.ndarray, Any]:
    """Fit and predict with one BLAS/OpenMP thread (small data: a thread team only spins).

    threads=None leaves the libraries' default thread teams (what the benchmark compares against).
    """
    from sklearn.base import clone
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads) if threads else contextlib.nullcontext():
        model = make_model(task.model, task.names, task.seed) if isinstance(task.model, str) else clone(task.model)
        model.fit(task.x_train, task.y_train)
        pred = np.asarray(model.predict(task.x_test)).astype(str).astype(object)
        proba = _proba_for(model, task.x_test, task.classes) if hasattr(model, "predict_proba") else None
    return (
        task.key,
        pred,
        proba if proba is not None else np.full((len(pred), 0), np.nan),
        (model if task.keep_model else None),
    )


def fit_fingerprint(task: FitTask) -> str:
    """What a fit's result depends on: the model (name or estimator parameters), the data, seed and classes."""
    h = hashlib.sha256()
    model = task.model if isinstance(task.model, str) else f"{type(task.model).__qualname__}:{task.model!r}"
    import sklearn

    # library versions too: a fit cached before an upgrade is refitted, not trusted
    identity = [MODELS_VERSION, sklearn.__version__, np.__version__, model, task.key, task.seed, task.names]
    identity += [task.classes, task.keep_model]
    h.update(json.dumps(identity).encode())
    for array in (task.x_train, task.y_train, task.x_test):
        h.update(str(array.dtype).encode() + str(array.shape).encode())
        h.update(np.ascontiguousarray(array.astype(str) if array.dtype == object else array).tobytes())
    return h.hexdigest()[:24]


def run_fits(
    tasks: list[FitTask],
    progress: Progress | None = None,
    n_jobs: int | None = None,
    threads: int | None = 1,
    cache_dir: Path | None = None,
) -> dict[Any, Any]:
    """Every fit, in worker processes sized to the cores available (`os.sched_getaffinity`), one thread each.

    With `cache_dir`, each finished fit is saved as it arrives and found again by its fingerprint: an
    interrupted baseline stage (Ctrl-C, a killed job) resumes where it stopped instead of starting over.
    """
    from joblib import Parallel, delayed

    from cellfeatures.runtime import available_cores

    results: dict[Any, Any] = {}
    todo = []
    for task in tasks:
        cached = _load_fit(cache_dir, task)
        if cached is None:
            todo.append(task)
        else:
            results[task.key] = cached
    if progress and results:
        progress(len(results), len(tasks), f"{len(results)} fits found in the cache (resumed)")
    jobs = max(1, min(n_jobs or available_cores(), len(todo) or 1))
    if jobs == 1:
        stream: Any = (_fit_one(t, threads) for t in todo)
    else:
        stream = Parallel(n_jobs=jobs, backend="loky", return_as="generator_unordered")(
            delayed(_fit_one)(t, threads) for t in todo
        )
    by_key = {t.key: t for t in todo}
    for done, (key, pred, proba, model) in enumerate(stream, start=len(results) + 1):
        results[key] = (pred, proba, model)
        _save_fit(cache_dir, by_key[key], results[key])
        if progress:
            progress(done, len(tasks), f"{key[0]} seed {key[1]} fold {key[2]}")
    return results


def _load_fit(cache_dir: Path | None, task: FitTask) -> Any:
    if cache_dir is None:
        return None
    path = cache_dir / f"{fit_fingerprint(task)}.joblib"
    if not path.exists():
        return None
    import joblib

    try:
        return joblib.load(path)
    except Exception:  # a damaged cache entry is refitted, never trusted
        return None


def _save_fit(cache_dir: Path | None, task: FitTask, result: Any) -> None:
    if cache_dir is None:
        return
    import joblib

    from cellfeatures.atomic import write_file_atomically

    write_file_atomically(cache_dir / f"{fit_fingerprint(task)}.joblib", lambda tmp: joblib.dump(result, tmp))


# ------------------------------------------------------------------ results


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
    coverage: float | None = None
    covered: dict[str, Any] | None = None  # accuracy on the covered cells + paired test vs the best model
    locked: dict[str, Any] | None = None  # metrics on the locked test set
    importances: list[dict[str, Any]] = field(default_factory=list)
    source: str = ""  # a prediction file's SHA-256, a table name

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
        """No synthetic feature, and (for prediction tables) enough coverage to speak for the test cells."""
        if "synthetic" in self.origins:
            return False
        return self.coverage is None or self.coverage >= MIN_HEADLINE_COVERAGE


def _blocks(ds: Dataset) -> dict[int, int]:
    if "block" not in ds.splits.columns:
        return {}
    return dict(zip(ds.splits["nucleus_id"].to_list(), ds.splits["block"].to_list(), strict=True))


def _intervals(
    datasets: dict[int, Dataset], predictions: pl.DataFrame, classes: list[str]
) -> dict[str, tuple[float, float]]:
    """95% bootstrap intervals of the seed-averaged pooled metrics (the numbers the leaderboard reports).

    Each replicate resamples the spatial blocks of every seed's split independently (cells when the
    split has no blocks) and averages the seeds' metrics, so the interval describes the same quantity as
    the mean beside it.
    """
    from cellfeatures.stats import bootstrap_replicates, percentile_interval

    per_seed = []
    for seed, ds in datasets.items():
        part = predictions.filter(pl.col("seed") == seed)
        if not part.height:
            continue
        blocks = _blocks(ds)
        groups = np.array([blocks.get(n, -1) for n in part["nucleus_id"].to_list()])
        use_groups = groups if blocks and (groups >= 0).all() else None
        y_pred = np.array([None if p == "<none>" else p for p in part["y_pred"].to_list()], dtype=object)
        per_seed.append(bootstrap_replicates(part["y_true"].to_numpy(), y_pred, classes, use_groups, seed=seed))
    if not per_seed:
        return {}
    return {m: percentile_interval(np.mean([r[m] for r in per_seed], axis=0)) for m in per_seed[0]}


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


def trained_tasks(datasets: dict[int, Dataset], name: str, model: Any) -> list[FitTask]:
    """One FitTask per (seed, fold), plus one for the locked test set of the first seed's dataset."""
    first = next(iter(datasets.values()))
    classes = Evaluator(first).classes
    tasks = []
    for seed, ds in datasets.items():
        for k in range(len(ds.folds)):
            x_train, y_train, names = ds.xy(k, "train")
            x_test, y_test, _ = ds.xy(k, "test")
            if len(y_test):
                keep = name == "hist_gradient_boosting" and seed == next(iter(datasets)) and k == 0
                tasks.append(FitTask((name, seed, k), model, names, seed, x_train, y_train, x_test, classes, keep))
    if first.has_locked:
        x_train, y_train, names = first.xy("locked", "train")
        x_test, _y, _ = first.xy("locked", "test")
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
    per_seed, per_fold, frames, importances = [], [], [], []
    for seed, ds in datasets.items():
        truth, preds, probas = [], [], []
        for k in range(len(ds.folds)):
            if (name, seed, k) not in fits:
                continue
            pred, proba, fitted = fits[(name, seed, k)]
            test = ds.fold(k)[1]
            y_test = test[ds.label].to_numpy()
            has_proba = proba.shape[1] == len(classes)
            metrics = evaluator.eval(y_test, pred, proba if has_proba else None)
            per_fold.append({"seed": seed, "fold": k, **_headline(metrics)})
            truth.append(y_test)
            preds.append(pred)
            probas.append(proba if has_proba else None)
            frames.append(_prediction_frame(seed, k, test["nucleus_id"].to_numpy(), y_test, pred, proba, classes))
            if fitted is not None:
                x_test, _y, names = ds.xy(k, "test")
                importances = permutation_importances(fitted, x_test, y_test, names, seed)
        complete = [p for p in probas if p is not None]
        pooled_proba: np.ndarray | None = np.concatenate(complete) if probas and len(complete) == len(probas) else None
        per_seed.append({"seed": seed, **evaluator.eval(np.concatenate(truth), np.concatenate(preds), pooled_proba)})
    predictions = pl.concat(frames, how="diagonal_relaxed")
    locked = None
    if (name, next(iter(datasets)), "locked") in fits:
        pred, proba, _ = fits[(name, next(iter(datasets)), "locked")]
        test = first.fold("locked")[1]
        locked = {"n": test.height, **_headline(evaluator.eval(test[first.label].to_numpy(), pred))}
    return EntryResult(
        name,
        kind,
        list(datasets),
        per_seed,
        per_fold,
        _entry_origins(first, model),
        predictions,
        intervals=_intervals(datasets, predictions, classes),
        locked=locked,
        importances=importances,
    )


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


# ------------------------------------------------------------------ prediction tables


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
            per_fold.append({"seed": seed, "fold": k, **_headline(evaluator.eval(y_true, y_pred))})
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
    locked = None
    if first.has_locked:
        test = first.fold("locked")[1].select("nucleus_id", first.label).join(predicted, on="nucleus_id", how="left")
        locked = {"n": test.height, **_headline(evaluator.eval(test[first.label].to_numpy(), test["pred"].to_list()))}
    return EntryResult(
        entry,
        kind,
        list(datasets),
        per_seed,
        per_fold,
        origins,
        predictions,
        intervals=_intervals(datasets, predictions, classes),
        coverage=coverage,
        covered=covered,
        locked=locked,
        source=source,
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


def compare_paired(entries: list[EntryResult]) -> None:
    """In place: each prediction table's covered cells, scored for the best trained model too (McNemar).

    Why: "the table covers 89% and scores 0.72 counting gaps as wrong" and "on the cells it labels it
    beats our model" are both true statements; readers need the second, on the same cells, with a test.
    """
    from cellfeatures.stats import mcnemar_exact

    best = best_entry(entries)
    if best is None:
        return
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


def best_entry(entries: list[EntryResult]) -> EntryResult | None:
    """The headline trained (or custom) entry with the highest cross-validated ranking metric."""
    candidates = [e for e in entries if e.kind in (TRAINED, CUSTOM) and e.headline]
    if not candidates:
        return None
    return max(candidates, key=lambda e: e.summary(RANKING_METRIC)["mean"])


def _headline(metrics: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        k: metrics[k] for k in ("n", "accuracy", "balanced_accuracy", "macro_f1", "log_loss") if k in metrics
    }
    if "calibration" in metrics:
        out["ece"] = metrics["calibration"]["ece"]
    return out


def entry_row(e: EntryResult, dataset: Dataset) -> dict[str, Any]:
    """One leaderboard row: summaries of every metric, calibration, both coverage views, the locked set."""
    row: dict[str, Any] = {
        "entry": e.entry,
        "kind": e.kind,
        "level": dataset.card["label"]["level"],
        "feature_origins": "+".join(e.origins) or "none",
        "headline": e.headline,
        "seeds": len(e.seeds),
        "folds": len(dataset.folds),
        "n_test": e.per_seed[0]["n"] if e.per_seed else 0,
    }
    for metric in METRICS:
        for stat, value in e.summary(metric).items():
            row[f"{metric}_{stat}"] = round(value, 6) if value == value else None
    eces = [m["calibration"]["ece"] for m in e.per_seed if "calibration" in m]
    row["ece"] = round(float(np.mean(eces)), 6) if eces else None
    row["coverage"] = round(e.coverage, 6) if e.coverage is not None else None
    covered = e.covered or {}
    row["covered_n"] = covered.get("n")
    row["covered_accuracy"] = covered.get("accuracy")
    row["paired_vs"] = covered.get("vs")
    row["paired_model_accuracy"] = covered.get("model_accuracy")
    row["paired_p_value"] = covered.get("p_value")
    locked = e.locked or {}
    row["locked_n"] = locked.get("n")
    row["locked_accuracy"] = locked.get("accuracy")
    row["locked_balanced_accuracy"] = locked.get("balanced_accuracy")
    row["source"] = e.source or None
    return row


@dataclass
class Leaderboard:
    dataset: Dataset
    entries: list[EntryResult]

    def frame(self) -> pl.DataFrame:
        """One row per entry: headline rows first, then by the ranking metric (mean over seeds)."""
        rows = [entry_row(e, self.dataset) for e in self.entries]
        return pl.DataFrame(rows, infer_schema_length=None).sort(
            ["headline", f"{RANKING_METRIC}_mean"], descending=[True, True], nulls_last=True
        )

    def per_fold(self) -> pl.DataFrame:
        """Every (entry, seed, fold) metric row: the spread behind each mean."""
        return pl.DataFrame(
            [{"entry": e.entry, "kind": e.kind, **r} for e in self.entries for r in e.per_fold],
            infer_schema_length=None,
        )

    def predictions(self) -> pl.DataFrame:
        """Every test prediction of every entry (seed, fold, nucleus_id, y_true, y_pred, p_<class>)."""
        return pl.concat(
            [e.predictions.with_columns(pl.lit(e.entry).alias("entry")) for e in self.entries],
            how="diagonal_relaxed",
        )

    def best(self) -> EntryResult | None:
        return best_entry(self.entries)

    @staticmethod
    def load(dataset: str | Dataset, root: str | Path | None = None) -> Any:
        """The newest written report covering a dataset, as a `SavedReport` (same frame()/per_fold()/predictions())."""
        from cellfeatures.saved_report import SavedReport

        return SavedReport.load(dataset, root)

    def _rows(self) -> list[dict[str, Any]]:
        return list(self.frame().iter_rows(named=True))

    def __repr__(self) -> str:
        return display.leaderboard_text(
            self._rows(), f"Leaderboard {self.dataset.card['name']} ({len(self.entries)} entries)"
        )

    def _repr_html_(self) -> str:
        return display.leaderboard_html(self._rows(), f"Leaderboard {self.dataset.card['name']}/{self.dataset.id}")

    def add_predictions(self, frame: pl.DataFrame, name: str, *, source: str = "") -> EntryResult:
        """Score anyone's predictions (nucleus_id, pred, optional p_<class>) on this board's test cells."""
        datasets = self._datasets or {0: self.dataset}
        entry = evaluate_predictions(datasets, frame, name, EXTERNAL, ["external"], source=source)
        self.entries.append(entry)
        compare_paired(self.entries)
        return entry

    _datasets: dict[int, Dataset] = field(default_factory=dict, repr=False)


def _sibling(store: FeatureStore, dataset: Dataset, seed: int, root: Path) -> Dataset:
    """The same dataset with another split seed, pinned to the same (resolved) feature version.

    Named `<name>.seed<N>` so that asking for the dataset by name never returns a seed sibling.
    """
    card_spec = dataset.card["spec"]
    if seed == card_spec["split"]["seed"]:
        return dataset
    block = {k: v for k, v in card_spec.items() if k not in ("name", "split")}
    block["feature_version"] = dataset.card["feature_version"]
    name = f"{dataset.card['name'].split('.seed')[0]}.seed{seed}"
    spec = DatasetSpec.from_dict(name, {**block, "split": {**card_spec["split"], "seed": seed}})
    return build_dataset(store, spec, root)


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
) -> Leaderboard:
    """Every baseline (and `custom` estimators) and every existing model table, on the dataset and its seeds.

    `models` may also be a dict of name -> estimator or built-in model name, e.g.
    `models={"mine": make_pipeline(...), "hist_gradient_boosting": "hist_gradient_boosting"}`: any
    scikit-learn-compatible estimator is trained and scored on the same folds as ours.
    All fits of all models run together in worker processes (see the module doc); `progress` hears
    (fits done, fits total, the fit that finished).
    """
    if isinstance(models, dict):
        custom = {**(custom or {}), **{k: v for k, v in models.items() if not isinstance(v, str)}}
        models = tuple(v for v in models.values() if isinstance(v, str))
    unknown = [m for m in models if m not in TRAINED_MODELS]
    if unknown:
        raise ConfigError(
            f"unknown model(s) {unknown}{_did_you_mean(unknown[0], TRAINED_MODELS)}; known: {', '.join(TRAINED_MODELS)}"
        )
    root = Path(root) if root is not None else dataset.path.parent.parent  # seed siblings beside the dataset
    datasets = {seed: _sibling(store, dataset, seed, root) for seed in seeds}
    chosen: list[tuple[str, Any, str]] = [(m, m, _kind(m)) for m in models]
    chosen += [(name, est, CUSTOM) for name, est in (custom or {}).items()]
    tasks = [t for name, model, _kind_ in chosen for t in trained_tasks(datasets, name, model)]
    fits = run_fits(tasks, progress, n_jobs, cache_dir=dataset.path / "baselines" / FIT_CACHE)
    entries = [collect_trained(datasets, name, model, kind, fits) for name, model, kind in chosen]
    label_source = dataset.card["label"]["source"]
    candidates = (
        existing
        if existing is not None
        else tuple(name for name, spec in LABEL_SOURCES.items() if spec.kind == "model" and name != label_source)
    )
    if source is None:
        tables = [t for name in candidates if name in LABEL_SOURCES for t in LABEL_SOURCES[name].tables]
        source = store.source_of(dataset.card["feature_version"], tables)
    for name in candidates:
        result = evaluate_existing(datasets, source, name)
        if result is not None:
            entries.append(result)
    compare_paired(entries)
    return Leaderboard(dataset, entries, datasets)
