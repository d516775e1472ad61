"""Building one dataset from a feature version: labels, filters, split, card; published atomically.

The id is a content hash of (feature version, spec): the same spec and seed give the same files."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import polars as pl

from cellfeatures._util.atomic import publish_directory
from cellfeatures._util.checksums import file_sha256
from cellfeatures.config.model import datasets_root
from cellfeatures.datasets.card import _card, render_card
from cellfeatures.datasets.dataset import DATA_FILES, Dataset
from cellfeatures.datasets.interop import write_croissant
from cellfeatures.datasets.layout import datasets_root_of
from cellfeatures.datasets.selection import _select_features, leakage_check, proofread_expr
from cellfeatures.datasets.spec import FILTERS, DatasetSpec
from cellfeatures.datasets.splits import fold_names, make_split
from cellfeatures.errors import ConfigError, StoreError
from cellfeatures.identity import attributable_expr
from cellfeatures.labels.sources import label_sources, load_labels
from cellfeatures.store.store import FeatureStore
from cellfeatures.vocab import EXC, INH


def _dataset_id(version: str, spec: DatasetSpec) -> str:
    blob = json.dumps({"version": version, "spec": spec.as_dict(), "format": 1}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def build_dataset(
    store: FeatureStore,
    spec: DatasetSpec,
    root: str | os.PathLike[str] | None = None,
    source: Any = None,
    label_blocks: dict[str, Any] | None = None,
) -> Dataset:
    """Build (or find) a dataset; atomic like feature versions.

    `root` defaults to the datasets root of the store's config (or of the project's config).
    """
    root = datasets_root(root, store.config)
    version = store.resolve(spec.feature_version)
    # resolved before hashing: "latest" and the id it names are the same dataset (the same id)
    spec = replace(spec, feature_version=version)
    manifest = store.manifest(version)
    dataset_id = _dataset_id(version, spec)
    final = Path(root) / spec.name / dataset_id
    if (final / "card.json").exists():
        return Dataset(final)
    if label_blocks is None and store.config is not None:
        label_blocks = store.config.raw.get("labels")
    sources = label_sources(label_blocks)
    if spec.label not in sources:
        raise ConfigError(f"unknown label source {spec.label!r}; known: {', '.join(sources)}")
    if source is None:
        source = store.source_of(version, sources[spec.label].tables)
    labels = load_labels(source, sources[spec.label], strict=True)
    label_col = labels.column(spec.level)
    features = _select_features(manifest, spec)
    leaks = leakage_check(features, manifest, labels, spec.allow_leaky)

    matrix = store.load(version)
    attributable = matrix.filter(attributable_expr())["nucleus_id"]
    frame = matrix.join(labels.at(spec.level), on="nucleus_id", how="inner")
    classes = labels.frame.select("nucleus_id", pl.col("class").alias("_class"))
    frame = frame.join(classes, on="nucleus_id", how="left")
    steps = [{"step": f"cells with a {spec.label} label at level {spec.level}", "cells": frame.height}]
    for name in spec.filters:
        if name == "neurons":
            frame = frame.filter(pl.col("_class").is_in([EXC, INH]))
        elif name == "attributable":  # from the matrix itself: every nucleus of the version is in it
            frame = frame.filter(pl.col("nucleus_id").is_in(attributable.implode()))
        elif name in ("proofread_dendrite", "proofread_axon"):
            frame = frame.filter(proofread_expr(name, frame.columns, version))
        else:
            raise ConfigError(f"unknown filter {name!r}; known: {', '.join(FILTERS)}")
        steps.append({"step": f"filter {name}: {FILTERS[name]}", "cells": frame.height})
    counts = frame.group_by(label_col).len()
    rare = sorted(counts.filter(pl.col("len") < spec.min_class_size)[label_col].to_list())
    frame = frame.filter(~pl.col(label_col).is_in(rare))
    dropped = f"classes with fewer than {spec.min_class_size} cells dropped: {rare}"
    steps.append({"step": dropped, "cells": frame.height})
    if frame.height == 0:
        raise StoreError(f"dataset {spec.name!r} has no cells left after filtering: {steps}")

    position = [c for c in ("pos_x_nm", "pos_y_nm", "pos_z_nm") if c in frame.columns]
    split = make_split(frame.select("nucleus_id", "root_id", *position, label_col), label_col, spec.split)
    for fold in fold_names(split):
        roles = split[fold].value_counts()
        count = dict(zip(roles[fold].to_list(), roles["count"].to_list(), strict=True))
        if not count.get("train") or not count.get("test"):
            raise ConfigError(
                f"dataset {spec.name!r}: {fold} has {count.get('train', 0)} training and {count.get('test', 0)} "
                f"test cells ({count.get('buffer', 0)} buffered) — {frame.height:,} cells cannot fill "
                f"{spec.split.folds} folds of {spec.split.block_um:g} um blocks with a "
                f"{spec.split.buffer_um if spec.split.buffer_um is not None else spec.split.block_um:g} um buffer; "
                f"use smaller blocks, a smaller buffer or fewer folds"
            )
    data = frame.select("nucleus_id", "root_id", label_col, *features).sort("nucleus_id")
    categories = {f: sorted(data[f].drop_nulls().unique().to_list()) for f in features if data[f].dtype == pl.String}
    card = _card(
        spec, dataset_id, version, manifest, labels, label_col, features, leaks, steps, data, split, categories
    )

    def write(tmp: Path) -> None:
        data.write_parquet(tmp / "data.parquet", compression="zstd")
        split.write_parquet(tmp / "splits.parquet", compression="zstd")
        card["files"] = {n: {"bytes": (tmp / n).stat().st_size, "sha256": file_sha256(tmp / n)} for n in DATA_FILES}
        (tmp / "card.json").write_text(json.dumps(card, indent=2, default=str) + "\n")
        write_croissant(card, manifest, tmp)
        (tmp / "CARD.md").write_text(render_card(card))

    publish_directory(final, write, ready="card.json")
    return Dataset(final)


def seed_sibling(
    store: FeatureStore, dataset: Dataset, seed: int, root: str | os.PathLike[str] | None = None
) -> Dataset:
    """The same dataset with another split seed, pinned to the same (resolved) feature version.

    Named `<name>.seed<N>` so that asking for the dataset by name never returns a seed sibling.
    """
    card_spec = dataset.card["spec"]
    if seed == card_spec["split"]["seed"]:
        return dataset
    block = {k: v for k, v in card_spec.items() if k not in ("name", "split")}
    block["feature_version"] = dataset.card["feature_version"]
    name = f"{dataset.card['name'].split('.seed')[0]}.seed{seed}"
    spec = DatasetSpec.from_dict(name, {**block, "split": {**card_spec["split"], "seed": seed}})
    return build_dataset(store, spec, root if root is not None else datasets_root_of(dataset.path))
