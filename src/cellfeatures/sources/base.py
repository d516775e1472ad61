"""The Source interface: where tables come from, in CAVE wire format.

Every source answers three questions the rest of the system needs:
- `tables()`: which tables it has;
- `scan(table)`: a LazyFrame of that table in the common wire dialect (see normalize.coerce_wire);
- `fingerprint()`: a JSON-able description precise enough that two equal fingerprints mean equal data
  (datastack, materialization version + timestamp, per-table row counts and checksums). Feature versions
  are content-addressed on it.
`info(table)` adds provenance: origin (real / derived / synthetic) and where the rows came from.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Literal

import polars as pl

Origin = Literal["real", "derived", "synthetic"]
ORIGIN_RANK: dict[str, int] = {"real": 0, "derived": 1, "synthetic": 2}


def least_real(origins: list[str]) -> str:
    """The origin of something built from several inputs: the least real of them."""
    return max(origins, key=lambda o: ORIGIN_RANK.get(o, 3)) if origins else "real"


@dataclass(frozen=True)
class TablePart:
    """One part of a table (a file or a generated chunk) with its own origin."""

    name: str
    origin: str
    rows: int


@dataclass(frozen=True)
class TableInfo:
    """Provenance of one table as a source serves it."""

    name: str
    origin: str
    kind: str = "cave"  # "cave" (server table) or "external" (a feature table keyed by nucleus id)
    rows: int | None = None
    source: str = ""
    parts: tuple[TablePart, ...] = field(default_factory=tuple)
    #: label tables a generator looked at when it made this table (synthetic tables conditioned on a
    #: cell class); a dataset labelled from one of them must not use features computed from this table
    conditioned_on: tuple[str, ...] = ()
    #: a synapse table fetched for chosen cells only (CAVE mode "cells", static keep = "cells") holds the
    #: complete synapses of the cells of this label table and partial ones of every other cell
    cells_from: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "cells_from": self.cells_from,
            "conditioned_on": list(self.conditioned_on),
            "name": self.name,
            "origin": self.origin,
            "kind": self.kind,
            "rows": self.rows,
            "source": self.source,
            "parts": [{"name": p.name, "origin": p.origin, "rows": p.rows} for p in self.parts],
        }


class Source(ABC):
    """A provider of CAVE-shaped tables. Subclasses: snapshot, sample, synthetic, cave."""

    datastack: str = "unknown"
    materialization_version: int | None = None
    timestamp: str | None = None
    #: resolution (nm per unit) of the position columns that `scan` returns
    position_resolution_nm: tuple[float, float, float] = (4.0, 4.0, 40.0)

    @abstractmethod
    def tables(self) -> list[str]:
        """Names of the tables this source can scan."""

    @abstractmethod
    def scan(self, table: str) -> pl.LazyFrame:
        """The table in the common wire dialect; raises TableNotFoundError if absent."""

    @abstractmethod
    def fingerprint(self) -> dict[str, Any]:
        """Content description: equal fingerprints <=> equal data."""

    def info(self, table: str) -> TableInfo:
        """Provenance of one table (subclasses know more; the default claims nothing)."""
        return TableInfo(name=table, origin="real", source=type(self).__name__)

    def column_range(self, table: str, column: str) -> tuple[Any, Any] | None:
        """(min, max) of a column over every row, from file metadata, or None when that is not known cheaply.

        Why: bounding synapse-id ranges by reading 337M ids costs seconds; Parquet statistics cost nothing.
        """
        return None

    def reopen_config(self) -> dict[str, Any]:
        """A [source] block that reopens exactly this source later (no secrets), recorded in every manifest.

        Why: datasets and baselines read labels from the source a feature version was built from; a source
        that cannot say how to reopen itself cannot be labelled from later.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot be reopened from a manifest")

    def table_fingerprint(self, table: str) -> dict[str, Any]:
        """The fingerprint of one table (rows and checksums), as in `fingerprint()['tables']`."""
        tables: dict[str, Any] = self.fingerprint().get("tables", {})
        return dict(tables.get(table, {}))

    def has(self, table: str) -> bool:
        return table in self.tables()

    def describe(self) -> str:
        version = self.materialization_version if self.materialization_version is not None else "-"
        return f"{type(self).__name__}(datastack={self.datastack}, version={version})"
