"""cellfeatures: versioned per-cell feature matrices for CAVE connectome datastacks (MICrONS minnie65).

In a notebook::

    import cellfeatures as cf
    store = cf.FeatureStore()            # the store your project's config names
    version = store.build()              # build (or find) the config's feature version -> FeatureVersion
    features = version.load()            # its matrix as a Polars DataFrame
    ds = cf.build_dataset(store, cf.DatasetSpec("column_types"))
    x, y, names = ds.xy(0, "train")
    board = cf.run_baselines(store, ds, seeds=(0,), models={"mine": my_estimator})
    board.save("my_report")              # later: cf.Leaderboard.load("my_report")

Names are imported on first use, so `import cellfeatures` stays cheap for the command line. Nothing in
the package imports this module (it re-exports the upper layers; see README "Development").
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from cellfeatures._util.runtime import tune_allocator
from cellfeatures._version import PIPELINE_CODE_VERSION, __version__

tune_allocator()  # before anything imports polars (see _util/runtime.py)

# public name -> module that defines it
_EXPORTS = {
    "FeatureStore": "cellfeatures.store.store",
    "FeatureVersion": "cellfeatures.store.version",
    "VersionDiff": "cellfeatures.store.diff",
    "Config": "cellfeatures.config.model",
    "load_config": "cellfeatures.config.model",
    "default_config": "cellfeatures.config.model",
    "Dataset": "cellfeatures.datasets.dataset",
    "DatasetSpec": "cellfeatures.datasets.spec",
    "build_dataset": "cellfeatures.datasets.build",
    "SplitSpec": "cellfeatures.datasets.splits",
    "Evaluator": "cellfeatures.benchmark.evaluate",
    "Leaderboard": "cellfeatures.benchmark.leaderboard",
    "run_baselines": "cellfeatures.benchmark.run",
    "baseline_report": "cellfeatures.workflows",
    "run_main_job": "cellfeatures.workflows",
    "score_predictions": "cellfeatures.workflows",
    "write_html_report": "cellfeatures.report.html",
    "label_sources": "cellfeatures.labels.sources",
    "load_labels": "cellfeatures.labels.sources",
    "agreement": "cellfeatures.labels.agreement",
    "CellFeaturesError": "cellfeatures.errors",
    "ConfigError": "cellfeatures.errors",
    "SourceError": "cellfeatures.errors",
    "TableNotFoundError": "cellfeatures.errors",
    "SchemaError": "cellfeatures.errors",
    "IdentityError": "cellfeatures.errors",
    "StoreError": "cellfeatures.errors",
    "VersionNotFoundError": "cellfeatures.errors",
    "DamagedVersionError": "cellfeatures.errors",
    "LeakageError": "cellfeatures.errors",
    "ExecutionError": "cellfeatures.errors",
    "ModelIntegrityError": "cellfeatures.errors",
}
__all__ = [
    "PIPELINE_CODE_VERSION",
    "CellFeaturesError",
    "Config",
    "ConfigError",
    "DamagedVersionError",
    "Dataset",
    "DatasetSpec",
    "Evaluator",
    "ExecutionError",
    "FeatureStore",
    "FeatureVersion",
    "IdentityError",
    "Leaderboard",
    "LeakageError",
    "ModelIntegrityError",
    "SchemaError",
    "SourceError",
    "SplitSpec",
    "StoreError",
    "TableNotFoundError",
    "VersionDiff",
    "VersionNotFoundError",
    "__version__",
    "agreement",
    "baseline_report",
    "build_dataset",
    "default_config",
    "label_sources",
    "load_config",
    "load_labels",
    "run_baselines",
    "run_main_job",
    "score_predictions",
    "write_html_report",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cellfeatures' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:
    from cellfeatures.benchmark.evaluate import Evaluator
    from cellfeatures.benchmark.leaderboard import Leaderboard
    from cellfeatures.benchmark.run import run_baselines
    from cellfeatures.config.model import Config, default_config, load_config
    from cellfeatures.datasets.build import build_dataset
    from cellfeatures.datasets.dataset import Dataset
    from cellfeatures.datasets.spec import DatasetSpec
    from cellfeatures.datasets.splits import SplitSpec
    from cellfeatures.errors import (
        CellFeaturesError,
        ConfigError,
        DamagedVersionError,
        ExecutionError,
        IdentityError,
        LeakageError,
        ModelIntegrityError,
        SchemaError,
        SourceError,
        StoreError,
        TableNotFoundError,
        VersionNotFoundError,
    )
    from cellfeatures.labels.agreement import agreement
    from cellfeatures.labels.sources import label_sources, load_labels
    from cellfeatures.report.html import write_html_report
    from cellfeatures.store.diff import VersionDiff
    from cellfeatures.store.store import FeatureStore
    from cellfeatures.store.version import FeatureVersion
    from cellfeatures.workflows import baseline_report, run_main_job, score_predictions
