"""One published feature version as an object: what a notebook user holds after `store.latest()`.

The store answers questions about many versions; a FeatureVersion answers them about one (its cells,
families, feature catalogue with origins, inputs, source) and loads its matrix as Polars or pandas.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import polars as pl

from cellfeatures import display
from cellfeatures.labels.sources import LabelSet, check_label_source, label_sources, load_labels
from cellfeatures.sources.base import Source


class VersionReader(Protocol):
    """What a FeatureVersion needs of its store (FeatureStore): its root and checked reads."""

    root: Path

    def load(self, version: str = ..., columns: list[str] | None = ...) -> pl.DataFrame: ...

    def scan(self, version: str = ...) -> pl.LazyFrame: ...

    def source_of(self, version: str, tables: list[str] | tuple[str, ...] = ...) -> Source: ...


@dataclass(frozen=True)
class FeatureVersion:
    """A published version of the store. Example (on the sample)::

    >>> v = store.latest()
    >>> v.cells > 1000 and "nucleus" in v.families
    True
    >>> v.catalogue().filter(pl.col("origin") == "real").height > 0
    True
    """

    store: VersionReader
    id: str
    manifest: dict[str, Any] = field(repr=False)
    created: bool | None = field(default=None, compare=False)  # set by store.build(): published by this call?

    @property
    def path(self) -> Path:
        return self.store.root / self.id

    @property
    def cells(self) -> int:
        return int(self.manifest["rows"])

    @property
    def families(self) -> list[str]:
        return list(self.manifest["families"])

    @property
    def features(self) -> list[str]:
        return list(self.manifest["features"])

    def catalogue(self) -> pl.DataFrame:
        """One row per feature: family, origin (real / derived / synthetic), unit, dtype, null rate, description."""
        return pl.DataFrame(
            [
                {
                    "feature": name,
                    "family": f["family"],
                    "origin": f["origin"],
                    "unit": f.get("unit", ""),
                    "dtype": f.get("dtype", ""),
                    "null_rate": f.get("null_rate"),
                    "description": f.get("description", ""),
                }
                for name, f in self.manifest["features"].items()
            ]
        )

    def load(self, columns: list[str] | None = None) -> pl.DataFrame:
        """The matrix (checked against the manifest first), optionally only some columns."""
        return self.store.load(self.id, columns)

    def scan(self) -> pl.LazyFrame:
        return self.store.scan(self.id)

    def labels(self, name: str = "manual", extra: dict[str, Any] | None = None) -> LabelSet:
        """A label source (`manual`, `early_model`, ... or one of `extra`, a config's [labels] blocks), read
        from this version's own source and harmonised; refused if its tables changed since the build."""
        sources = label_sources(extra)
        check_label_source(name, sources)
        return load_labels(self.store.source_of(self.id, sources[name].tables), sources[name])

    def to_pandas(self, columns: list[str] | None = None) -> Any:
        """The matrix as a pandas DataFrame indexed by nucleus_id."""
        return self.load(columns).to_pandas().set_index("nucleus_id")

    def __repr__(self) -> str:
        return display.version_text(self.manifest, self.path)

    def _repr_html_(self) -> str:
        return display.version_html(self.manifest, self.path)
