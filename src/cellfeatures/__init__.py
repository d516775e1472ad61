"""cellfeatures: versioned per-cell feature matrices for CAVE connectome datastacks (MICrONS minnie65).

In a notebook::

    import cellfeatures as cf
    store = cf.FeatureStore()            # the store your project's config names
    version = store.build()              # build (or find) the config's feature version
    features = store.load()              # the latest matrix as a Polars DataFrame
    ds = cf.build_dataset(store, cf.DatasetSpec("column_types"))
    x, y, names = ds.xy(0, "train")
    board = cf.run_baselines(store, ds, seeds=(0,), models={"mine": my_estimator})

Names are imported on first use, so `import cellfeatures` stays cheap for the command line.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from cellfeatures.runtime import tune_allocator

tune_allocator()  # before anything imports polars (see runtime.py)

__version__ = "0.1.0"

# Bumped whenever a pipeline's output for the same inputs changes; part of every feature-version hash.
PIPELINE_CODE_VERSION = "2"

# public name -> module that defines it
_EXPORTS = {
    "FeatureStore": "cellfeatures.store",
    "FeatureVersion": "cellfeatures.feature_version",
    "VersionDiff": "cellfeatures.store",
    "Config": "cellfeatures.config",
    "load_config": "cellfeatures.config",
    "default_config": "cellfeatures.config",
    "Dataset": "cellfeatures.datasets",
    "DatasetSpec": "cellfeatures.datasets",
    "build_dataset": "cellfeatures.datasets",
    "SplitSpec": "cellfeatures.splits",
    "Leaderboard": "cellfeatures.baselines",
    "run_baselines": "cellfeatures.baselines",
    "SavedReport": "cellfeatures.saved_report",
    "write_html_report": "cellfeatures.html_report",
    "label_sources": "cellfeatures.labels",
    "load_labels": "cellfeatures.labels",
    "CellFeaturesError": "cellfeatures.errors",
}
__all__ = [
    "CellFeaturesError",
    "Config",
    "Dataset",
    "DatasetSpec",
    "FeatureStore",
    "FeatureVersion",
    "Leaderboard",
    "SavedReport",
    "SplitSpec",
    "VersionDiff",
    "build_dataset",
    "default_config",
    "label_sources",
    "load_config",
    "load_labels",
    "run_baselines",
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
    from cellfeatures.baselines import Leaderboard, run_baselines
    from cellfeatures.config import Config, default_config, load_config
    from cellfeatures.datasets import Dataset, DatasetSpec, build_dataset
    from cellfeatures.errors import CellFeaturesError
    from cellfeatures.feature_version import FeatureVersion
    from cellfeatures.html_report import write_html_report
    from cellfeatures.labels import label_sources, load_labels
    from cellfeatures.saved_report import SavedReport
    from cellfeatures.splits import SplitSpec
    from cellfeatures.store import FeatureStore, VersionDiff
