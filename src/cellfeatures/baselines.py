"""Baseline classifiers, a standard evaluator, existing model tables scored the same way, a leaderboard.

Fair by construction:
- every entry is scored by one `Evaluator` on the same test cells of the same folds;
- trained baselines are scikit-learn Pipelines: imputation and scaling are fitted inside each training
  fold, so nothing of the test cells leaks into preprocessing;
- model label tables that already exist (the early soma/nucleus model, the metamodel, ...) are harmonised
  to the dataset's level and scored on the same test cells; a cell they did not label counts as wrong and
  their coverage is reported;
- several seeds re-draw the split (sibling datasets with other split seeds) and the models' randomness;
  the leaderboard reports mean ± std over seeds of cross-validated metrics (each cell tested once per seed).
Models are saved with joblib next to a JSON sidecar (dataset id, features, sklearn version, metrics,
SHA-256 of the file); loading refuses a file whose hash or dataset id does not match.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from cellfeatures.datasets import Dataset, DatasetSpec, build_dataset
from cellfeatures.errors import CellFeaturesError, ConfigError
from cellfeatures.labels import LABEL_SOURCES, load_labels
from cellfeatures.store import FeatureStore

FLOOR, TRAINED, EXISTING = "floor", "trained", "existing"
TRAINED_MODELS = ("majority", "depth_only", "logistic_regression", "random_forest", "hist_gradient_boosting")
DEPTH_FEATURE = "soma_depth_um"


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
        out: dict[str, Any] = {
            "n": len(y_true),
            "accuracy": float(accuracy_score(y_true, y_pred)),
            "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)) if len(y_true) else float("nan"),
            "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
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
    """A scikit-learn Pipeline; preprocessing lives inside it so it is fitted on training folds only."""
    from sklearn.compose import ColumnTransformer
    from sklearn.dummy import DummyClassifier
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    if name == "majority":
        return Pipeline([("model", DummyClassifier(strategy="most_frequent"))])
    if name == "depth_only":
        if DEPTH_FEATURE not in features:
            raise ConfigError(f"the depth-only floor needs {DEPTH_FEATURE} among the dataset's features")
        index = features.index(DEPTH_FEATURE)
        return Pipeline(
            [
                ("depth", ColumnTransformer([("depth", SimpleImputer(strategy="median"), [index])])),
                ("model", HistGradientBoostingClassifier(max_depth=3, class_weight="balanced", random_state=seed)),
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
        return Pipeline(
            [
                ("impute", SimpleImputer(strategy="median")),
                (
                    "model",
                    RandomForestClassifier(
                        n_estimators=300,
                        min_samples_leaf=2,
                        n_jobs=2,
                        class_weight="balanced_subsample",
                        random_state=seed,
                    ),
                ),
            ]
        )
    if name == "hist_gradient_boosting":
        return Pipeline(
            [
                (
                    "model",
                    HistGradientBoostingClassifier(
                        max_iter=200, learning_rate=0.05, max_leaf_nodes=15, class_weight="balanced", random_state=seed
                    ),
                )
            ]
        )
    raise ConfigError(f"unknown model {name!r}; known: {', '.join(TRAINED_MODELS)}")


def _kind(model: str) -> str:
    return FLOOR if model in ("majority", "depth_only") else TRAINED


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


# ------------------------------------------------------------------ running


@dataclass
class EntryResult:
    entry: str
    kind: str
    seeds: list[int]
    per_seed: list[dict[str, Any]]  # pooled cross-validated metrics per seed
    per_fold: list[dict[str, Any]]  # {seed, fold, metrics}
    origins: list[str]
    coverage: float | None = None
    predictions: pl.DataFrame | None = None  # seed 0: nucleus_id, y_true, y_pred (pooled over folds)
    importances: list[dict[str, Any]] = field(default_factory=list)

    def summary(self, metric: str) -> tuple[float, float]:
        values = np.array([m[metric] for m in self.per_seed if metric in m], dtype=float)
        if not len(values):
            return float("nan"), float("nan")
        return float(values.mean()), float(values.std(ddof=0))


def _sibling(store: FeatureStore, dataset: Dataset, seed: int, root: Path) -> Dataset:
    """The same dataset with another split seed, pinned to the same (resolved) feature version."""
    card_spec = dataset.card["spec"]
    if seed == card_spec["split"]["seed"]:
        return dataset
    block = {k: v for k, v in card_spec.items() if k not in ("name", "split")}
    block["feature_version"] = dataset.card["feature_version"]
    spec = DatasetSpec.from_dict(dataset.card["name"], {**block, "split": {**card_spec["split"], "seed": seed}})
    return build_dataset(store, spec, root)


def evaluate_trained(datasets: dict[int, Dataset], model_name: str, *, importances: bool = False) -> EntryResult:
    features = datasets[next(iter(datasets))].features
    evaluator = Evaluator(next(iter(datasets.values())))
    per_seed, per_fold, predictions, imps = [], [], None, []
    for seed, ds in datasets.items():
        truth, preds, probas, ids = [], [], [], []
        for k in range(len(ds.folds)):
            x_train, y_train, _ = ds.xy(k, "train")
            x_test, y_test, names = ds.xy(k, "test")
            if not len(y_test):
                continue
            model = make_model(model_name, features, seed).fit(x_train, y_train)
            pred = model.predict(x_test)
            proba = _proba_for(model, x_test, evaluator.classes)
            per_fold.append({"seed": seed, "fold": k, **_headline(evaluator.eval(y_test, pred, proba))})
            truth.append(y_test)
            preds.append(pred)
            probas.append(proba)
            ids.append(ds.fold(k)[1]["nucleus_id"].to_numpy())
            if importances and seed == next(iter(datasets)) and k == 0:
                imps = permutation_importances(model, x_test, y_test, names, seed)
        y, p = np.concatenate(truth), np.concatenate(preds)
        per_seed.append({"seed": seed, **evaluator.eval(y, p, np.concatenate(probas))})
        if predictions is None:
            predictions = pl.DataFrame(
                {"nucleus_id": np.concatenate(ids), "y_true": y.astype(str), "y_pred": p.astype(str)}
            )
    origins = sorted(set(next(iter(datasets.values())).card["feature_origins"].values()))
    if model_name == "majority":
        origins = []
    elif model_name == "depth_only":
        origins = [next(iter(datasets.values())).card["feature_origins"][DEPTH_FEATURE]]
    return EntryResult(
        model_name,
        _kind(model_name),
        list(datasets),
        per_seed,
        per_fold,
        origins,
        predictions=predictions,
        importances=imps,
    )


def permutation_importances(
    model: Any, x: np.ndarray, y: np.ndarray, names: list[str], seed: int
) -> list[dict[str, Any]]:
    """Permutation importance on the test split (balanced accuracy drop), most important first."""
    from sklearn.inspection import permutation_importance

    result = permutation_importance(model, x, y, n_repeats=5, random_state=seed, scoring="balanced_accuracy", n_jobs=1)
    rows = [
        {"feature": n, "mean": float(m), "std": float(s)}
        for n, m, s in zip(names, result.importances_mean, result.importances_std, strict=True)
    ]
    return sorted(rows, key=lambda r: -r["mean"])


def evaluate_existing(datasets: dict[int, Dataset], source: Any, label_source: str) -> EntryResult | None:
    """Score an existing model label table on the same test cells (harmonised to the dataset's level)."""
    first = next(iter(datasets.values()))
    level = first.card["label"]["level"]
    try:
        labels = load_labels(source, LABEL_SOURCES[label_source])
    except CellFeaturesError:
        return None
    predicted = labels.frame.select("nucleus_id", pl.col(level).alias("pred"))
    evaluator = Evaluator(first)
    per_seed, per_fold, predictions, coverage = [], [], None, None
    for seed, ds in datasets.items():
        truth, preds, ids = [], [], []
        for k in range(len(ds.folds)):
            test = ds.fold(k)[1].select("nucleus_id", ds.label).join(predicted, on="nucleus_id", how="left")
            if not test.height:
                continue
            per_fold.append(
                {
                    "seed": seed,
                    "fold": k,
                    **_headline(evaluator.eval(test[ds.label].to_numpy(), test["pred"].to_list())),
                }
            )
            truth.append(test[ds.label].to_numpy())
            preds.append(np.array(test["pred"].to_list(), dtype=object))
            ids.append(test["nucleus_id"].to_numpy())
        y, p = np.concatenate(truth), np.concatenate(preds)
        per_seed.append({"seed": seed, **evaluator.eval(y, list(p))})
        if predictions is None:
            covered = np.array([v is not None for v in p])
            coverage = float(covered.mean())
            predictions = pl.DataFrame(
                {
                    "nucleus_id": np.concatenate(ids),
                    "y_true": y.astype(str),
                    "y_pred": [str(v) if v is not None else "<none>" for v in p],
                }
            )
    origin = source.info(labels.tables_used[0]).origin
    return EntryResult(
        f"table:{labels.tables_used[0]}",
        EXISTING,
        list(datasets),
        per_seed,
        per_fold,
        [origin],
        coverage=coverage,
        predictions=predictions,
    )


def _headline(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: metrics[k] for k in ("n", "accuracy", "balanced_accuracy", "macro_f1", "log_loss") if k in metrics}


@dataclass
class Leaderboard:
    dataset: Dataset
    entries: list[EntryResult]

    def frame(self) -> pl.DataFrame:
        rows = []
        for e in self.entries:
            row: dict[str, Any] = {
                "entry": e.entry,
                "kind": e.kind,
                "level": self.dataset.card["label"]["level"],
                "feature_origins": "+".join(e.origins) or "none",
                "headline": "synthetic" not in e.origins,
                "seeds": len(e.seeds),
            }
            for metric in ("accuracy", "balanced_accuracy", "macro_f1", "log_loss"):
                mean, std = e.summary(metric)
                row[f"{metric}_mean"], row[f"{metric}_std"] = round(mean, 6), round(std, 6)
            row["coverage"] = round(e.coverage, 6) if e.coverage is not None else None
            row["n_test"] = e.per_seed[0]["n"] if e.per_seed else 0
            rows.append(row)
        return pl.DataFrame(rows).sort(["headline", "balanced_accuracy_mean"], descending=[True, True])


def run_baselines(
    store: FeatureStore,
    dataset: Dataset,
    *,
    seeds: tuple[int, ...] = (0, 1, 2),
    models: tuple[str, ...] = TRAINED_MODELS,
    existing: tuple[str, ...] | None = None,
    root: str | Path = "datasets",
    source: Any = None,
) -> Leaderboard:
    """Every baseline and every existing model table present, on the dataset and its seed siblings."""
    datasets = {seed: _sibling(store, dataset, seed, Path(root)) for seed in seeds}
    entries = []
    best_trained = [m for m in models if _kind(m) == TRAINED]
    for name in models:
        entries.append(
            evaluate_trained(datasets, name, importances=name == (best_trained[-1] if best_trained else None))
        )
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
    return Leaderboard(dataset, entries)
