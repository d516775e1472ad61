"""Datasets take their labels from the source their feature version was built from, never elsewhere.

The regression this guards (issue #11, item 0): every dataset used to read labels from the embedded
sample, whatever the store was built from, with exit 0 and a card naming the wrong source.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest

from cellfeatures.config.model import from_dict
from cellfeatures.datasets.build import build_dataset
from cellfeatures.datasets.spec import DatasetSpec
from cellfeatures.datasets.splits import SplitSpec
from cellfeatures.errors import StoreError
from cellfeatures.sources.sample import sample_data_dir
from cellfeatures.store.store import FeatureStore

MANUAL = "allen_v1_column_types_slanted_ref"
SWAP = {"23P": "4P", "4P": "23P"}


def _snapshot(root: Path, *, swap: bool, extra: tuple[str, ...] = ()) -> Path:
    root.mkdir(parents=True)
    committed = sample_data_dir()
    shutil.copy(committed / "nucleus_detection_v0.parquet", root)
    labels = pl.read_parquet(committed / f"{MANUAL}.parquet")
    if swap:
        labels = labels.with_columns(pl.col("cell_type").replace(SWAP))
    labels.write_parquet(root / f"{MANUAL}.parquet")
    for table in extra:
        shutil.copy(committed / f"{table}.parquet", root)
    return root


def _config(path: Path) -> dict:
    return {
        "name": "partial",
        "source": {"kind": "snapshot", "path": str(path)},
        "features": {"nucleus": {}},
    }


SPEC = DatasetSpec(
    "swapped",
    label="manual",
    level="type",
    filters=("neurons",),
    origins=("real", "derived"),
    exclude=("pos_*",),
    split=SplitSpec("stratified", folds=3, seed=0),
)


def test_labels_come_from_the_snapshot_the_version_was_built_from(tmp_path: Path) -> None:
    snap = _snapshot(tmp_path / "snap", swap=True)
    store = FeatureStore(tmp_path / "features")
    store.build(from_dict(_config(snap)))
    ds = build_dataset(store, SPEC, tmp_path / "datasets")
    truth = (
        pl.read_parquet(snap / f"{MANUAL}.parquet")
        .select(pl.col("target_id").alias("nucleus_id"), "cell_type")
        .join(ds.data.select("nucleus_id", "label_manual_type"), on="nucleus_id")
    )
    swapped = truth.filter(pl.col("cell_type").is_in(list(SWAP)))
    assert swapped.height > 600
    assert (swapped["cell_type"] == swapped["label_manual_type"]).all(), "labels must be the snapshot's, swapped"
    assert ds.card["source"]["kind"] == "snapshot"


def test_a_model_label_table_in_the_snapshot_is_found(tmp_path: Path) -> None:
    snap = _snapshot(tmp_path / "snap", swap=False, extra=("soma_nuc_model_83_1_v117",))
    store = FeatureStore(tmp_path / "features")
    store.build(from_dict(_config(snap)))
    spec = DatasetSpec(
        "early",
        label="early_model",
        level="class",
        filters=(),
        origins=("real", "derived"),
        split=SplitSpec("stratified", folds=3, seed=0),
    )
    ds = build_dataset(store, spec, tmp_path / "datasets")
    assert ds.card["label"]["tables"] == ["soma_nuc_model_83_1_v117"]
    assert ds.card["cells"] > 60_000


def test_a_version_whose_source_is_gone_is_refused(tmp_path: Path) -> None:
    snap = _snapshot(tmp_path / "snap", swap=True)
    store = FeatureStore(tmp_path / "features")
    store.build(from_dict(_config(snap)))
    shutil.rmtree(snap)
    with pytest.raises(StoreError, match="cannot reopen the source of version"):
        build_dataset(store, SPEC, tmp_path / "datasets")


def test_a_label_table_edited_after_the_build_is_refused(tmp_path: Path) -> None:
    snap = _snapshot(tmp_path / "snap", swap=False)
    store = FeatureStore(tmp_path / "features")
    store.build(from_dict(_config(snap)))
    labels = pl.read_parquet(snap / f"{MANUAL}.parquet")
    labels.with_columns(pl.col("cell_type").replace(SWAP)).write_parquet(snap / f"{MANUAL}.parquet")
    with pytest.raises(StoreError, match=f"table '{MANUAL}' of the source of version .* changed since the build"):
        build_dataset(store, SPEC, tmp_path / "datasets")


def test_the_manifest_records_how_to_reopen_the_source_without_secrets(tmp_path: Path) -> None:
    snap = _snapshot(tmp_path / "snap", swap=False)
    store = FeatureStore(tmp_path / "features")
    result = store.build(from_dict(_config(snap)))
    assert result.manifest["source_config"]["kind"] == "snapshot"
    assert result.manifest["source_config"]["paths"] == [str(snap.resolve())]
