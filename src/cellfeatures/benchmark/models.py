"""The model zoo: floors and trained baselines as scikit-learn Pipelines, the kinds of leaderboard entry,
and saving/loading a fitted model next to a JSON sidecar that pins its bytes and its dataset.

Knows nothing about folds, seeds or leaderboards."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from cellfeatures.datasets.dataset import Dataset
from cellfeatures.datasets.selection import LAYER_FEATURES
from cellfeatures.errors import ConfigError, ModelIntegrityError

FLOOR, TRAINED, EXISTING, EXTERNAL, CUSTOM = "floor", "trained", "existing", "external", "custom"
# a trained model refitted without a group of features: measures what the group adds, never "best"
ABLATION = "ablation"
ABLATED_MODELS = ("logistic_regression", "hist_gradient_boosting")


FLOORS = ("majority", "depth_only", "depth_only_unweighted")


TRAINED_MODELS = (
    *FLOORS,
    "logistic_regression",
    "random_forest",
    "hist_gradient_boosting",
    "hist_gradient_boosting_no_layer",
)


DEPTH_FEATURE = "soma_depth_um"


# Bumped whenever a model's definition changes: part of every cached report's key.
MODELS_VERSION = "4"


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
        # 50 rounds at 0.2 instead of 100 at 0.1: the same cross-validated balanced accuracy on the sample
        # (0.744 / 0.936 against 0.744 / 0.935, benchmarks/README.md) in half the fit time. 63 bins, not
        # 255: with class weights, scikit-learn >= 1.8 bins by weighted percentiles, one Python call per
        # threshold and feature, which was most of a fit on ~600 cells (0.85 -> 0.43 s per type-level
        # fit); 63 bins still hold ~10 training cells each (before/after in benchmarks/README.md)
        return HistGradientBoostingClassifier(
            max_iter=50, learning_rate=0.2, max_leaf_nodes=15, max_bins=63, class_weight=weight, random_state=seed
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
        # 150 trees, not 300: the same cross-validated numbers on the sample within the seeds' spread
        # (benchmarks/README.md, "main_job.py") at half the fit time
        forest = RandomForestClassifier(
            n_estimators=150, min_samples_leaf=2, n_jobs=1, class_weight="balanced_subsample", random_state=seed
        )
        return Pipeline([("impute", SimpleImputer(strategy="median")), ("model", forest)])
    if name == "hist_gradient_boosting":
        return Pipeline([("model", hgb("balanced"))])
    if name == "hist_gradient_boosting_no_layer":
        keep = [i for i, f in enumerate(features) if f not in LAYER_FEATURES]
        return Pipeline([("select", ColumnTransformer([("keep", "passthrough", keep)])), ("model", hgb("balanced"))])
    raise ConfigError(f"unknown model {name!r}; known: {', '.join(TRAINED_MODELS)}")


def _kind(model: str) -> str:
    return FLOOR if model in FLOORS else TRAINED


def _proba_for(model: Any, x: np.ndarray, classes: list[str]) -> np.ndarray:
    """Predicted probabilities aligned to the evaluator's classes (classes unseen in training get 0)."""
    proba = model.predict_proba(x)
    out = np.zeros((len(x), len(classes)))
    for j, c in enumerate(model.classes_):
        out[:, classes.index(str(c))] = proba[:, j]
    return out


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


def load_estimator(spec: str) -> tuple[str, Any]:
    """`module:callable` -> (callable name, the estimator it returns); clear errors for each way it can fail."""
    import importlib
    import sys

    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"--model needs module:callable (e.g. mylab.models:make_knn), got {spec!r}")
    if "" not in sys.path:
        sys.path.insert(0, "")  # the working directory, as `python -m` would
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"--model {spec}: cannot import {module_name!r} ({exc})") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ConfigError(f"--model {spec}: {module_name} has no callable {attr!r}")
    estimator = factory()
    if not (hasattr(estimator, "fit") and hasattr(estimator, "predict")):
        raise ConfigError(f"--model {spec}: {attr}() returned {type(estimator).__name__}, not an estimator")
    return attr, estimator
