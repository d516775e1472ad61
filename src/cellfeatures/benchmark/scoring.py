"""Anyone's predictions, scored like ours: read a prediction file, key it by nucleus, harmonise, evaluate.

A prediction file is Parquet / CSV / Feather with one row per cell:
- a key: `nucleus_id`; or `target_id` (a CAVE cell-type table); or `pt_root_id` / `root_id` together
  with the materialization version it was made on, resolved through that version's nucleus <-> root map
  (root ids are valid for one version only, so a root-keyed file without its version is refused);
- a label: `cell_type`, `pred`, `prediction` or `label`, in any spelling the vocabulary knows
  (harmonised to the dataset's level; unknown spellings are refused, naming them);
- optionally `p_<class>` probabilities for the dataset's classes (then log-loss and calibration too).
Duplicate keys are refused. The file's SHA-256 goes with the entry wherever it is reported.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import polars as pl

from cellfeatures._util.checksums import file_sha256
from cellfeatures.benchmark.leaderboard import Leaderboard, entry_row
from cellfeatures.datasets.build import seed_sibling
from cellfeatures.errors import ConfigError, SchemaError
from cellfeatures.identity import attributable_expr, integer_key
from cellfeatures.sources.snapshot import read_table_file
from cellfeatures.vocab import harmonise_expr, unmapped_values

LABEL_COLUMNS = ("cell_type", "pred", "prediction", "label")
ROOT_COLUMNS = ("pt_root_id", "root_id")


def read_predictions(
    path: str | os.PathLike[str],
    dataset: Any,
    store: Any,
    *,
    materialization_version: int | None = None,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """(nucleus_id, pred at the dataset's level, p_<class>...) and what was done to get there."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"prediction file {path} does not exist")
    frame = read_table_file(path).collect()
    name = str(path)
    label = next((c for c in LABEL_COLUMNS if c in frame.columns), None)
    if label is None:
        raise SchemaError(name, f"- no label column: expected one of {list(LABEL_COLUMNS)} (has {frame.columns})")
    if frame.height == 0 or frame[label].null_count() == frame.height:
        what = "has a header and no rows" if frame.height == 0 else f"has no label in any row (column {label!r})"
        raise SchemaError(name, f"- {what}: an empty prediction file would enter the leaderboard at 0% coverage")
    classes = {str(c) for c in dataset.card.get("class_counts", {})}
    stray = [c for c in frame.columns if c.startswith("p_") and c[2:] not in classes]
    if stray:
        raise SchemaError(
            name, f"- probability column(s) {stray} name classes the dataset does not have (it has {sorted(classes)})"
        )
    info: dict[str, Any] = {"file": str(path), "sha256": file_sha256(path), "rows": frame.height}
    keyed = _key_by_nucleus(frame, name, dataset, store, materialization_version, info)
    duplicated = keyed.filter(pl.col("nucleus_id").is_duplicated())["nucleus_id"].unique().sort()
    if duplicated.len():
        raise SchemaError(
            name, f"- {duplicated.len()} nucleus id(s) predicted more than once, e.g. {duplicated.head(5).to_list()}"
        )
    unknown = unmapped_values(keyed[label].cast(pl.String))
    if unknown:
        raise SchemaError(name, f"- column {label!r}: spellings the vocabulary does not know: {unknown[:8]}")
    level = dataset.card["label"]["level"]
    pred = harmonise_expr(pl.col(label).cast(pl.String), level) if level != "raw" else pl.col(label)
    p_cols = [c for c in keyed.columns if c.startswith("p_")]
    out = keyed.select("nucleus_id", pred.alias("pred"), *p_cols)
    info.update({"label_column": label, "level": level, "probabilities": p_cols})
    return out, info


def _key_by_nucleus(
    frame: pl.DataFrame,
    name: str,
    dataset: Any,
    store: Any,
    version: int | None,
    info: dict[str, Any],
) -> pl.DataFrame:
    if "nucleus_id" in frame.columns:
        info["key"] = "nucleus_id"
        return frame.with_columns(integer_key(frame, "nucleus_id", name, exact_floats_ok=True))
    if "target_id" in frame.columns:
        info["key"] = "target_id (CAVE reference table)"
        key = integer_key(frame, "target_id", name, exact_floats_ok=True).alias("nucleus_id")
        return frame.with_columns(key).drop("target_id")
    root = next((c for c in ROOT_COLUMNS if c in frame.columns), None)
    if root is None:
        raise SchemaError(name, f"- no key column: expected nucleus_id, target_id or pt_root_id (has {frame.columns})")
    frame = frame.with_columns(integer_key(frame, root, name, exact_floats_ok=False))
    manifest = store.manifest(dataset.card["feature_version"])
    features_version = manifest["source"].get("materialization_version")
    if version is not None and features_version is None:
        raise ConfigError(
            f"{name}: --materialization-version {version} cannot be checked: feature version "
            f"{dataset.card['feature_version'][:8]} records no materialization version (its source is "
            f"{manifest['source'].get('kind')}), so its root ids belong to no known version; key the file by nucleus_id"
        )
    if version is None:
        raise ConfigError(
            f"{name} is keyed by root id ({root}): say which materialization version it was made on "
            f"(--materialization-version); root ids are valid for one version only"
        )
    if features_version is not None and int(version) != int(features_version):
        raise ConfigError(
            f"{name} uses root ids of version {version}, but the dataset's features are of version "
            f"{features_version}: root ids cannot be compared across versions; key the file by nucleus_id"
        )
    attributable = store.load(dataset.card["feature_version"], columns=["root_id"]).filter(attributable_expr())
    keyed = frame.with_columns(pl.col(root).cast(pl.Int64)).join(
        attributable, left_on=root, right_on="root_id", how="inner"
    )
    info["key"] = f"{root} at materialization {version} (via the version's nucleus <-> root map)"
    info["roots_unmatched"] = frame.height - keyed.height
    return keyed


def score_file(
    store: Any,
    dataset: Any,
    path: str | os.PathLike[str],
    name: str,
    *,
    board: Leaderboard | None = None,
    materialization_version: int | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Score a prediction file on the dataset's test cells: (its leaderboard row, what was read).

    With `board` (the dataset's board of a saved report), the entry joins it, scored on the same seeds'
    splits and paired with its best model; the caller saves the board. Without, it is scored on the
    dataset's own split alone.
    """
    frame, info = read_predictions(path, dataset, store, materialization_version=materialization_version)
    if board is None:
        board = Leaderboard(dataset, [], {dataset.card["spec"]["split"]["seed"]: dataset})
    if not board.datasets:
        seeds = sorted({int(s) for e in board.entries for s in e.seeds}) or [dataset.card["spec"]["split"]["seed"]]
        board.datasets = {s: seed_sibling(store, dataset, s) for s in seeds}
    entry = board.add_predictions(frame, name, source=info["sha256"])
    row = {**entry_row(entry, dataset), "file_sha256": info["sha256"], "key": info["key"]}
    return row, info
