"""Which cells and which features a dataset takes: feature selection by origin and glob, the proofread filter,
and the leakage check that refuses features revealing the label."""

from __future__ import annotations

import fnmatch
from typing import Any

import polars as pl

from cellfeatures.datasets.spec import DatasetSpec
from cellfeatures.errors import ConfigError, LeakageError
from cellfeatures.labels.sources import LabelSet


def proofread_expr(name: str, columns: list[str], version: str) -> pl.Expr:
    """The `proofread_dendrite` / `proofread_axon` filter; a version without the proofreading family is refused."""
    column = "proof_status_" + name.split("_")[1]
    if column not in columns:
        raise ConfigError(f"filter {name!r} needs the proofreading family in feature version {version}")
    return pl.col(column).fill_null(False)


def _select_features(manifest: dict[str, Any], spec: DatasetSpec) -> list[str]:
    chosen = []
    for name, info in manifest["features"].items():
        if info["origin"] not in spec.origins:
            continue
        if spec.families and info["family"] not in spec.families:
            continue
        if spec.include and not any(fnmatch.fnmatch(name, p) for p in spec.include):
            continue
        if any(fnmatch.fnmatch(name, p) for p in spec.exclude):
            continue
        chosen.append(name)
    if not chosen:
        raise ConfigError(
            f"dataset {spec.name!r}: the feature selection is empty (origins {spec.origins}, "
            f"families {spec.families}, include {spec.include}, exclude {spec.exclude})"
        )
    return chosen


def leakage_check(features: list[str], manifest: dict[str, Any], labels: LabelSet, allow: tuple[str, ...]) -> list[str]:
    """Features that reveal the label: label columns, computed from the label source's tables, or computed
    from tables a generator made by looking at the label's tables (`conditioned_on` in their provenance)."""
    label_tables = set(labels.tables_used) | set(labels.spec.tables)
    leaks, why = [], {}
    for name in features:
        inputs = set(manifest["features"][name].get("inputs", []))
        seen = {t for i in inputs for t in manifest.get("inputs", {}).get(i, {}).get("conditioned_on", [])}
        if name.startswith("label_"):
            why[name] = "a label column"
        elif inputs & label_tables:
            why[name] = f"computed from the label's table(s) {sorted(inputs & label_tables)}"
        elif seen & label_tables:
            why[name] = (
                f"computed from generated tables whose generator saw the label's table(s) {sorted(seen & label_tables)}"
            )
        else:
            continue
        leaks.append(name)
    unallowed = [f for f in leaks if f not in allow]
    if unallowed:
        shown = "; ".join(f"{f}: {why[f]}" for f in unallowed[:8]) + (" ..." if len(unallowed) > 8 else "")
        raise LeakageError(
            f"{len(unallowed)} feature(s) would let a model read the answer ({shown}). Exclude them "
            f"(exclude = [...], or origins without 'synthetic') or, if you know why it is fine, list them in "
            f"allow_leaky."
        )
    return leaks


# Features that carry the cell's laminar position: a model using them can "learn the layer" rather than
# the type. Reports name them and train one model without them.
LAYER_FEATURES = ("soma_depth_um", "pos_y_nm")
