"""What every feature family shares: feature specs (the catalogue) and the build context.

A family is a module with FAMILY (its name), `features(cfg)` (the FeatureSpecs it produces, with units),
`inputs(cfg)` (the source tables it reads) and `build(ctx, cfg) -> LazyFrame` keyed by nucleus_id
holding exactly the declared feature columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import polars as pl

from cellfeatures.errors import ConfigError
from cellfeatures.sources.base import Source


@dataclass(frozen=True)
class FeatureSpec:
    """One column of the feature matrix, as the catalogue documents it."""

    name: str
    dtype: str  # polars dtype name: Float64, Int64, Boolean, String
    unit: str  # nm, um, um3, vx (voxels), count, fraction, deg, bool, category, ...
    description: str
    family: str = ""
    #: source tables this feature is computed from, when narrower than its family's inputs; the
    #: feature's origin (real / derived / synthetic) is the least real of them. IDENTITY_TABLE stands
    #: for the configured nucleus table.
    inputs: tuple[str, ...] = ()
    #: declared origin for inputs that are not source tables (an external file); None: from the inputs
    origin: str | None = None
    #: what a modeller must know before using it (e.g. how it was measured depends on the cell's class):
    #: a dataset card lists it as a leakage risk when the feature is in, and as a reason when it is left out
    caveat: str = ""


IDENTITY_TABLE = "@identity"


@dataclass
class BuildContext:
    """Everything a family needs: the source, the identity map of this version, resolved tables."""

    source: Source
    identity: pl.DataFrame
    used_tables: set[str] = field(default_factory=set)
    scratch: Path | None = None  # where a family may spill intermediate files (inside the build's temp dir)
    engine: Any = None  # a distributed engine (cellfeatures.pipelines.execution.DaskEngine) for the big plans, or None
    tick: Any = None  # tick(what, done, total): progress of long steps, for a status line

    def scan(self, table: str) -> pl.LazyFrame:
        self.used_tables.add(table)
        return self.source.scan(table)

    def collect(self, table: str) -> pl.DataFrame:
        return self.scan(table).collect()


def stable_mean(expr: pl.Expr) -> pl.Expr:
    """Mean with a fixed summation order (values sorted within the group).

    Why: a parallel group-by adds partial float sums in whatever order threads finish, so plain
    `.mean()` can differ in the last bit between two runs on the same data. Feature versions must be
    bit-for-bit reproducible (a rebuild or a diff must not report phantom drift). `sort().mean()` is
    not enough: the optimizer drops a sort before an order-insensitive aggregation; imploding the
    sorted values into a list pins the order (measured: 0 differences over shuffled inputs).
    """
    return expr.sort().implode().list.mean()


def option(cfg: dict[str, Any], key: str, default: Any, family: str) -> Any:
    """A family option with a default; a wrong type is a ConfigError naming the key."""
    value = cfg.get(key, default)
    if default is not None and value is not None and not isinstance(value, type(default)):
        raise ConfigError(f"[features.{family}] {key} must be {type(default).__name__}, got {value!r}")
    return value


def with_family(specs: list[FeatureSpec], family: str) -> list[FeatureSpec]:
    return [replace(s, family=family) for s in specs]
