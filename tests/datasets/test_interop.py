"""Datasets other tools open without cellfeatures: Croissant validated by mlcroissant, the HF layout by `datasets`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from cellfeatures.cli import app
from cellfeatures.datasets.dataset import find_dataset


@pytest.fixture(scope="module")
def dataset(sample_project: Path):
    return find_dataset("column_types", sample_project / "datasets")


def test_croissant_names_both_files_with_their_sha256_and_every_field(dataset) -> None:
    doc = json.loads((dataset.path / "croissant.json").read_text())
    assert doc["conformsTo"] == "http://mlcommons.org/croissant/1.0" and doc["license"].endswith("/by/4.0/")
    files = {d["@id"]: d["sha256"] for d in doc["distribution"]}
    assert files == {name: entry["sha256"] for name, entry in dataset.card["files"].items()}
    data = next(r for r in doc["recordSet"] if r["@id"] == "data")
    assert [f["name"] for f in data["field"]] == dataset.data.columns
    by_name = {f["name"]: f for f in data["field"]}
    assert by_name[dataset.label]["description"].startswith("label: manual")
    assert by_name[dataset.features[0]]["description"]  # from the feature catalogue
    assert "train / test / buffer" in next(r for r in doc["recordSet"] if r["@id"] == "splits")["description"]
    assert doc["rai:dataLimitations"] and doc["rai:dataBiases"]


def test_mlcroissant_validates_it_and_loads_the_records(dataset, tmp_path: Path) -> None:
    mlc = pytest.importorskip("mlcroissant")
    folder = tmp_path / "ds"
    shutil.copytree(dataset.path, folder)
    ds = mlc.Dataset(jsonld=str(folder / "croissant.json"))  # raises on an invalid document
    records = list(ds.records(record_set="data"))
    assert len(records) == dataset.data.height
    first = {k.split("/")[-1]: v for k, v in records[0].items()}
    assert first["nucleus_id"] == dataset.data["nucleus_id"][0]


def test_the_hugging_face_export_loads_with_named_splits_of_the_right_sizes(
    dataset, sample_project: Path, tmp_path: Path
) -> None:
    load_dataset = pytest.importorskip("datasets").load_dataset
    out = tmp_path / "hf"
    config = str(sample_project / "configs" / "sample.toml")
    command = ["export", "column_types", "--format", "hf", "--out", str(out), "--config", config]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    loaded = load_dataset(str(out), cache_dir=str(tmp_path / "cache"))
    splits = dataset.splits
    for i, fold in enumerate(dataset.folds):
        for role in ("train", "test"):
            assert loaded[f"fold{i}_{role}"].num_rows == splits.filter(pl.col(fold) == role).height
    assert loaded["locked"].num_rows == splits.filter(pl.col("locked") == "test").height > 0
    header = (out / "README.md").read_text().split("---")[1]
    assert "license: cc-by-4.0" in header and "tabular-classification" in header and "split: fold0_train" in header
    again = CliRunner().invoke(app, command)
    assert again.exit_code == 2 and "not empty" in again.output
