"""Datasets: the leakage check fires on planted leaks; same spec, same files; exports round-trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from cellfeatures.config.model import default_config
from cellfeatures.datasets.build import build_dataset
from cellfeatures.datasets.dataset import find_dataset
from cellfeatures.datasets.spec import DatasetSpec
from cellfeatures.datasets.splits import SplitSpec
from cellfeatures.errors import LeakageError
from cellfeatures.store.store import FeatureStore
from tests.conftest import copy_sample_features


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, sample_project: Path) -> FeatureStore:
    return copy_sample_features(sample_project, tmp_path_factory.mktemp("store"))


SPEC = DatasetSpec(
    "types",
    label="manual",
    level="type",
    origins=("real", "derived"),
    exclude=("pos_*", "qc_*"),
    split=SplitSpec("spatial", folds=5, seed=0, block_um=50, buffer_um=15),
)


def test_a_dataset_has_data_splits_and_a_card(store: FeatureStore, tmp_path: Path) -> None:
    ds = build_dataset(store, SPEC, tmp_path)
    card = ds.card
    assert card["label"]["kind"] == "manual" and card["label"]["column"] == "label_manual_type"
    assert set(card["feature_origins"].values()) <= {"real", "derived"}
    assert ds.data.height == card["cells"] == 1261 and ds.folds == [f"fold_{k}" for k in range(5)]
    assert "spatial blocks of 50 um with a 15 um buffer" in (ds.path / "CARD.md").read_text()
    train, test = ds.fold(0)
    assert set(train["nucleus_id"]).isdisjoint(test["nucleus_id"])
    x, y, names = ds.xy(0, "train")
    assert x.shape == (train.height, len(names)) and len(y) == train.height


def test_same_spec_and_seed_reproduce_identical_files(store: FeatureStore, tmp_path: Path) -> None:
    a = build_dataset(store, SPEC, tmp_path / "a")
    b = build_dataset(store, SPEC, tmp_path / "b")
    assert a.id == b.id
    for name in ("data.parquet", "splits.parquet"):
        assert (a.path / name).read_bytes() == (b.path / name).read_bytes()
    assert build_dataset(store, SPEC, tmp_path / "a").path == a.path, "building again is a no-op"


def test_the_leakage_check_fires_on_partner_labels_from_the_label_table(tmp_path: Path) -> None:
    leaky = default_config().with_value("features.synapses.partner_label_table", "allen_v1_column_types_slanted_ref")
    fs = FeatureStore(tmp_path / "store")
    fs.build(leaky)
    spec = DatasetSpec("leaky", label="manual", level="type", origins=("real", "derived", "synthetic"))
    with pytest.raises(LeakageError, match=r"syn_in_frac_exc(.|\n)*allen_v1_column_types_slanted_ref"):
        build_dataset(fs, spec, tmp_path / "ds")
    allowed = DatasetSpec(
        "leaky",
        label="manual",
        level="type",
        origins=("real", "derived", "synthetic"),
        allow_leaky=tuple(
            f"syn_{d}_{k}" for d in ("in", "out") for k in ("frac_exc", "frac_inh", "frac_partner_labelled")
        ),
    )
    ds = build_dataset(fs, allowed, tmp_path / "ds")
    assert any("explicitly allowed" in r for r in ds.card["leakage_risks"])


def test_the_leakage_check_fires_on_a_models_own_prediction_column(tmp_path: Path) -> None:
    """An external feature read from the early model's own table, with that model as the label."""
    config = default_config().with_value(
        "features.external.pred",
        {"table": "soma_nuc_model_83_1_v117", "key": "target_id", "columns": {"cell_type": ""}},
    )
    fs = FeatureStore(tmp_path / "store")
    fs.build(config)
    with pytest.raises(LeakageError, match="pred_cell_type"):
        build_dataset(fs, DatasetSpec("own", label="early_model", level="type", origins=("real", "derived")), tmp_path)


@pytest.mark.parametrize("fmt", ["parquet", "csv", "arrow", "npz"])
def test_exports_round_trip(store: FeatureStore, tmp_path: Path, fmt: str) -> None:
    ds = build_dataset(store, SPEC, tmp_path / "ds")
    out = ds.export(fmt, tmp_path / f"export.{fmt}")
    frame = ds.frame()
    if fmt == "npz":
        arrays = np.load(out)
        x, names = ds.design(frame)
        np.testing.assert_array_equal(arrays["X"], x)
        assert list(arrays["feature_names"]) == names and list(arrays["y"]) == frame[ds.label].to_list()
        assert list(arrays["fold_3"]) == frame["fold_3"].to_list()
        return
    back = {"parquet": pl.read_parquet, "arrow": pl.read_ipc, "csv": lambda p: pl.read_csv(p, schema=frame.schema)}[
        fmt
    ](out)
    assert back.equals(frame)
    assert ds.to_pandas().shape == frame.shape


def test_find_dataset_by_name_id_and_path(store: FeatureStore, tmp_path: Path) -> None:
    ds = build_dataset(store, SPEC, tmp_path)
    assert find_dataset("types", tmp_path).path == ds.path
    assert find_dataset(ds.id[:6], tmp_path).path == ds.path
    assert find_dataset(str(ds.path)).path == ds.path


def test_synthetic_features_from_a_generator_that_saw_the_label_are_refused(
    store: FeatureStore, tmp_path: Path
) -> None:
    """The sample's synthetic tables follow the early model's class: labelling by it must refuse them."""
    spec = DatasetSpec(
        "early",
        label="early_model",
        level="class",
        origins=("real", "derived", "synthetic"),
        exclude=("pos_*", "qc_*", "syn_*_frac_exc", "syn_*_frac_inh", "syn_*_frac_partner_labelled"),
    )
    with pytest.raises(LeakageError, match="generator saw the label's table"):
        build_dataset(store, spec, tmp_path)
    manual = DatasetSpec(
        "manual", label="manual", level="class", origins=("real", "derived", "synthetic"), exclude=("pos_*", "qc_*")
    )
    ds = build_dataset(store, manual, tmp_path)
    assert "synthetic" in set(ds.card["feature_origins"].values()), "the manual label was never seen by the generator"


def test_synthetic_features_are_not_in_the_default_origins() -> None:
    assert DatasetSpec("x").origins == ("real", "derived")


def test_names_cannot_escape_their_root() -> None:
    from cellfeatures.errors import ConfigError

    for name in ("../x", "/tmp/x", "a/b", "..", ""):
        with pytest.raises(ConfigError, match="is not allowed"):
            DatasetSpec(name)
