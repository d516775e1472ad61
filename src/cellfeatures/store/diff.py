"""What changed between two published versions: cells, features, values, config, input tables.

Reads two versions through the store; writes nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl

from cellfeatures import display
from cellfeatures.store.manifest import flatten
from cellfeatures.store.version import FeatureVersion


@dataclass
class VersionDiff:
    a: str
    b: str
    cells_added: int
    cells_removed: int
    cells_rerooted: int
    features_added: list[str]
    features_removed: list[str]
    drift: list[dict[str, Any]]  # per common feature: changed count, max abs change
    config_changes: list[dict[str, Any]]  # dotted key, value in a, value in b
    tables_changed: list[str]  # source tables whose rows or checksums differ
    examples: dict[str, list[int]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()

    @property
    def changed_features(self) -> list[dict[str, Any]]:
        return [d for d in self.drift if d["changed"]]

    def __repr__(self) -> str:
        return display.diff_text(self)

    def _repr_html_(self) -> str:
        return display.diff_html(self)


def diff_versions(a: FeatureVersion, b: FeatureVersion, examples: int = 5) -> VersionDiff:
    """What changed from version a to version b: cells, features, values, config, inputs."""
    va, vb = a.id, b.id
    ma, mb = a.manifest, b.manifest
    fa, fb = a.load(), b.load()
    ids_a, ids_b = set(fa["nucleus_id"].to_list()), set(fb["nucleus_id"].to_list())
    both = fa.join(fb, on="nucleus_id", how="inner", suffix="__b")
    rerooted = both.filter(pl.col("root_id") != pl.col("root_id__b"))
    cols_a = [c for c in fa.columns if c not in ("nucleus_id", "root_id")]
    cols_b = [c for c in fb.columns if c not in ("nucleus_id", "root_id")]
    drift = []
    for col in [c for c in cols_a if c in cols_b]:
        x, y = pl.col(col), pl.col(f"{col}__b")
        same = (x == y).fill_null(False) | (x.is_null() & y.is_null())
        changed = both.filter(~same)
        entry: dict[str, Any] = {"feature": col, "changed": changed.height}
        if both[col].dtype.is_numeric() and both[f"{col}__b"].dtype.is_numeric():
            delta = both.select((x.cast(pl.Float64) - y.cast(pl.Float64)).abs().max()).item()
            entry["max_abs_change"] = delta
        entry["examples"] = changed["nucleus_id"].head(examples).to_list()
        drift.append(entry)
    flat_a, flat_b = flatten(ma["config"]), flatten(mb["config"])
    config_changes = [
        {"key": k, "a": flat_a.get(k), "b": flat_b.get(k)}
        for k in sorted(set(flat_a) | set(flat_b))
        if flat_a.get(k) != flat_b.get(k) and k != "path"
    ]
    ta, tb = ma.get("source_tables", {}), mb.get("source_tables", {})
    tables_changed = sorted(t for t in set(ta) | set(tb) if ta.get(t) != tb.get(t))
    return VersionDiff(
        a=va,
        b=vb,
        cells_added=len(ids_b - ids_a),
        cells_removed=len(ids_a - ids_b),
        cells_rerooted=rerooted.height,
        features_added=[c for c in cols_b if c not in cols_a],
        features_removed=[c for c in cols_a if c not in cols_b],
        drift=drift,
        config_changes=config_changes,
        tables_changed=tables_changed,
        examples={
            "added": sorted(ids_b - ids_a)[:examples],
            "removed": sorted(ids_a - ids_b)[:examples],
            "rerooted": rerooted["nucleus_id"].head(examples).to_list(),
        },
    )
