"""The versioned feature store: build, list, verify, load and diff content-addressed feature versions.

Modules, top to bottom: store (FeatureStore, the API) -> build (one version from a source), diff (two
versions compared) -> version (FeatureVersion, one published version) -> manifest (file names, ids,
manifest reading and verification). Knows nothing of datasets, benchmarks or reports.
"""

from cellfeatures.store.diff import VersionDiff
from cellfeatures.store.store import FeatureStore
from cellfeatures.store.version import FeatureVersion

__all__ = ["FeatureStore", "FeatureVersion", "VersionDiff"]
