"""Scoring anyone's predictions: files keyed three ways, both coverage views, the paired test, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from cellfeatures.benchmark.leaderboard import Leaderboard
from cellfeatures.benchmark.predict import PredictionTable, best_model_name, cells_to_predict, write_predictions
from cellfeatures.benchmark.scoring import read_predictions, score_file
from cellfeatures.cli import app
from cellfeatures.datasets.build import build_dataset
from cellfeatures.datasets.dataset import Dataset
from cellfeatures.datasets.spec import DatasetSpec
from cellfeatures.datasets.splits import SplitSpec
from cellfeatures.errors import ConfigError, SchemaError
from cellfeatures.schemas import validate
from cellfeatures.sources.sample import sample_data_dir
from cellfeatures.store.store import FeatureStore
from cellfeatures.workflows import baseline_report, score_predictions
from tests.conftest import copy_made_once, copy_sample_features

EARLY = "soma_nuc_model_83_1_v117"


SPEC = DatasetSpec(
    "types",
    exclude=("pos_*", "qc_*"),
    split=SplitSpec("spatial", folds=5, seed=0, block_um=50, buffer_um=15, locked_fraction=0.15),
)
REPORT = {
    "seeds": (0,),
    "models": ("majority", "logistic_regression"),
    "existing": ("early_model",),
    "ablations": {"synapse_counts": "syncounts_*"},
}


def _reported(root: Path, sample_project: Path) -> tuple[FeatureStore, Dataset, Path, bool]:
    """The sample's features, the "types" dataset and its baseline report under `root`: made, or found."""
    store = copy_sample_features(sample_project, root / "features")
    ds = build_dataset(store, SPEC, root / "datasets")
    report, created = baseline_report(store, ds, root=root / "datasets", **REPORT)
    return store, ds, report, created


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory, sample_project: Path):
    """Made once per session (both workers may run this module's tests), then found in this worker's copy."""
    root = copy_made_once(tmp_path_factory, "score", lambda made: _reported(made, sample_project))
    store, ds, report, created = _reported(root, sample_project)
    assert not created and report.parent.is_relative_to(root), "the copy's own report, found, not made again"
    return store, ds, report.parent, root


def test_the_early_model_exported_to_a_file_reproduces_the_built_in_row(reported, tmp_path: Path) -> None:
    store, ds, report, _root = reported
    exported = tmp_path / "early.parquet"
    pl.read_parquet(sample_data_dir() / f"{EARLY}.parquet").write_parquet(exported)  # a CAVE table: target_id
    built_in = pl.read_csv(report / "leaderboard.csv").filter(pl.col("entry") == f"table:{EARLY}").row(0, named=True)
    row = score_predictions(store, ds, exported, "early-from-file", datasets_root=_root / "datasets").row
    for key in (
        "accuracy_mean",
        "balanced_accuracy_mean",
        "macro_f1_mean",
        "coverage",
        "covered_accuracy",
        "paired_model_accuracy",
        "paired_p_value",
        "locked_accuracy",
    ):
        assert row[key] == pytest.approx(built_in[key], abs=1e-6), key
    board = pl.read_csv(report / "leaderboard.csv")
    added = board.filter(pl.col("entry") == "early-from-file").row(0, named=True)
    assert added["source"] == row["file_sha256"] and added["kind"] == "external" and not added["headline"]
    assert "early-from-file" in (report / "REPORT.md").read_text()


def test_a_root_keyed_file_scores_like_its_nucleus_keyed_twin(reported, tmp_path: Path) -> None:
    store, ds, _report, _root = reported
    matrix = store.load(ds.card["feature_version"], columns=["root_id"])
    labels = ds.data.select("nucleus_id", pl.col(ds.label).alias("cell_type")).with_columns(
        pl.when(pl.col("nucleus_id") % 4 == 0).then(pl.lit("23P")).otherwise(pl.col("cell_type")).alias("cell_type")
    )
    by_nucleus = tmp_path / "by_nucleus.csv"
    labels.write_csv(by_nucleus)
    by_root = tmp_path / "by_root.parquet"
    labels.join(matrix, on="nucleus_id").select(pl.col("root_id").alias("pt_root_id"), "cell_type").write_parquet(
        by_root
    )
    assert store.manifest(ds.card["feature_version"])["source"]["materialization_version"] is None
    with pytest.raises(ConfigError, match="say which materialization version"):
        read_predictions(by_root, ds, store)
    # the sample's roots belong to no one materialization: a version given for them cannot be checked
    with pytest.raises(ConfigError, match="records no materialization version"):
        read_predictions(by_root, ds, store, materialization_version=999)


def test_a_root_keyed_file_of_the_versions_materialization_scores_like_its_nucleus_keyed_twin(tmp_path: Path) -> None:
    import json
    import shutil

    from cellfeatures.config.model import from_dict

    snap = tmp_path / "snap"
    snap.mkdir()
    for table in ("nucleus_detection_v0", "allen_v1_column_types_slanted_ref"):
        shutil.copy(sample_data_dir() / f"{table}.parquet", snap)
    (snap / "manifest.json").write_text(json.dumps({"datastack": "minnie65_public", "materialization_version": 1300}))
    raw = {"source": {"kind": "snapshot", "path": str(snap)}, "features": {"nucleus": {"depth_method": "y_offset"}}}
    config = from_dict(raw)
    store = FeatureStore(tmp_path / "features", config=config)
    store.build(config)
    split = SplitSpec("spatial", folds=3, seed=0, block_um=50, buffer_um=0)
    ds = build_dataset(store, DatasetSpec("types", level="class", split=split), tmp_path / "datasets")
    labels = ds.data.select("nucleus_id", pl.col(ds.label).alias("cell_type"))
    labels = labels.with_columns(
        pl.when(pl.col("nucleus_id") % 4 == 0).then(pl.lit("excitatory")).otherwise("cell_type")
    )
    labels.write_csv(tmp_path / "by_nucleus.csv")
    roots = store.load(columns=["root_id"])
    by_root = labels.join(roots, on="nucleus_id").select(pl.col("root_id").alias("pt_root_id"), "cell_type")
    by_root.write_parquet(tmp_path / "by_root.parquet")
    a, _ = score_file(store, ds, tmp_path / "by_nucleus.csv", "a")
    b, _ = score_file(store, ds, tmp_path / "by_root.parquet", "b", materialization_version=1300)
    for key in ("accuracy_mean", "balanced_accuracy_mean", "coverage"):
        assert a[key] == pytest.approx(b[key]), key
    with pytest.raises(ConfigError, match="root ids of version 999"):
        read_predictions(tmp_path / "by_root.parquet", ds, store, materialization_version=999)


def test_planted_predictions_score_to_hand_computed_numbers(reported, tmp_path: Path) -> None:
    store, ds, _report, _root = reported
    truth = ds.data.select("nucleus_id", pl.col(ds.label).alias("truth")).sort("nucleus_id")
    rows = truth.rows()
    planted = pl.DataFrame(
        {
            "nucleus_id": [n for n, _ in rows[::2]],  # half the cells: coverage 50% of every fold's test cells
            "cell_type": [t if i % 4 else ("4P" if t != "4P" else "23P") for i, (_, t) in enumerate(rows[::2])],
        }
    )
    path = tmp_path / "planted.parquet"
    planted.write_parquet(path)
    row, _ = score_file(store, ds, path, "planted")
    tested = ds.splits.filter(pl.col("fold_0").is_not_null())
    covered = planted.join(truth, on="nucleus_id").join(
        ds.splits.filter(pl.any_horizontal(pl.col(f) == "test" for f in ds.folds)).select("nucleus_id"), on="nucleus_id"
    )
    n_test = ds.splits.filter(pl.any_horizontal(pl.col(f) == "test" for f in ds.folds)).height
    right = (covered["cell_type"] == covered["truth"]).sum()
    assert tested.height > 0
    assert row["coverage"] == pytest.approx(covered.height / n_test)
    assert row["accuracy_mean"] == pytest.approx(right / n_test), "all-cells view: no prediction is wrong"
    assert row["covered_accuracy"] == pytest.approx(right / covered.height), "covered view"


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (
            pl.DataFrame({"nucleus_id": [1, 2], "cell_type": ["23P", "pyramid?"]}),
            "spellings the vocabulary does not know",
        ),
        (pl.DataFrame({"nucleus_id": [1, 1], "cell_type": ["23P", "4P"]}), "predicted more than once"),
        (pl.DataFrame({"cell": [1], "cell_type": ["23P"]}), "no key column"),
        (pl.DataFrame({"nucleus_id": [1], "guess": ["23P"]}), "no label column"),
    ],
)
def test_bad_prediction_files_get_clear_errors(reported, tmp_path: Path, frame: pl.DataFrame, message: str) -> None:
    store, ds, _report, _root = reported
    path = tmp_path / "bad.parquet"
    frame.write_parquet(path)
    with pytest.raises(SchemaError, match=message):
        read_predictions(path, ds, store)


def test_predict_covers_every_filtered_cell_once_and_validates(reported) -> None:
    store, ds, report, _root = reported
    path = write_predictions(store, ds, "logistic_regression", "logistic_regression", report)
    table = pl.read_parquet(path)
    validate(table, PredictionTable, "predictions")
    cells, _notes = cells_to_predict(store, ds)
    assert table["target_id"].sort().equals(cells["nucleus_id"].sort().rename("target_id"))
    assert table["labelled"].sum() == ds.data.height
    probabilities = table.select([c for c in table.columns if c.startswith("p_")]).to_numpy()
    assert abs(probabilities.sum(axis=1) - 1).max() < 1e-9
    card = (path.parent / "MODEL_CARD.md").read_text()
    assert "Known confusions" in card and ds.card["feature_version"] in card
    runner = CliRunner()
    compared = runner.invoke(app, ["labels", "early_model", str(path), "--level", "type"])
    assert compared.exit_code == 0, compared.output
    assert "raw spellings agree" in compared.output


def test_predict_calibrates_by_the_reports_held_out_choice_and_flags_extrapolation(reported) -> None:
    store, ds, report, _root = reported
    lr = next(e for e in Leaderboard.load(report).entries if e.entry == "logistic_regression")
    calibration = lr.calibration
    assert calibration is not None and calibration["method"] in ("temperature", "isotonic")
    assert calibration["ece_after"] < calibration["ece_before"]  # held out, on the sample's CV predictions
    assert best_model_name(report, ds) == "logistic_regression"  # predict's default: the report's best
    table = pl.read_parquet(write_predictions(store, ds, "logistic_regression", "logistic_regression", report))
    assert not table["max_p"].equals(table["max_p_uncalibrated"])
    unlabelled = table.filter(~pl.col("labelled"))
    labelled = table.filter(pl.col("labelled"))
    # the labels come from one column: most of the volume lies outside it, almost no training cell does
    assert unlabelled["outside_labelled_region"].mean() > 0.9
    assert labelled["outside_labelled_region"].mean() < 0.02
    assert unlabelled["out_of_range"].mean() < unlabelled["outside_labelled_region"].mean()
    card = json.loads((report.parent.parent / "predictions" / "logistic_regression" / "model_card.json").read_text())
    assert card["calibration"]["method"] == calibration["method"]
    assert card["shift_thresholds"]["distance_to_labelled_um"] > 0
    # without a report the same model's table is replaced, not kept: its probabilities are the raw ones
    raw = pl.read_parquet(write_predictions(store, ds, "logistic_regression", "logistic_regression", None))
    assert raw["max_p"].equals(raw["max_p_uncalibrated"]) and raw.height == table.height


def test_the_locked_slab_predictions_are_saved_and_recompute_its_scores(reported) -> None:
    _store, _ds, report, _root = reported
    board = Leaderboard.load(report)
    assert (report / "locked_predictions.parquet").exists()
    for e in board.entries:
        assert e.locked is not None and e.locked_predictions is not None, e.entry
        slab = e.locked_predictions
        assert slab.height == e.locked["n"]
        accuracy = (slab["y_true"] == slab["y_pred"]).mean()
        assert abs(accuracy - e.locked["accuracy"]) < 1e-12
        low, high = e.locked["intervals"]["accuracy"]
        assert low <= accuracy <= high
        counts = slab["y_true"].value_counts()
        sparse = {c: n for c, n in counts.iter_rows() if n < 5}
        assert e.locked["sparse_classes"] == dict(sorted(sparse.items()))


def test_an_ablation_reports_the_paired_gain_of_its_features(reported) -> None:
    _store, ds, report, _root = reported
    board = Leaderboard.load(report)
    full = next(e for e in board.entries if e.entry == "logistic_regression")
    ablated = next(e for e in board.entries if e.entry == "logistic_regression_without_synapse_counts")
    assert ablated.kind == "ablation" and board.best() is full  # an ablation is never "best"
    gain = ablated.gain
    assert gain is not None and gain["features"] == [
        "syncounts_proofread_syn_count_in",
        "syncounts_proofread_syn_count_out",
    ]
    everywhere = gain["all_cells"]["accuracy"]
    assert abs(everywhere["diff"] - (full.summary("accuracy")["mean"] - ablated.summary("accuracy")["mean"])) < 1e-12
    assert everywhere["low"] <= everywhere["diff"] <= everywhere["high"]
    with_counts = ds.data.filter(pl.col("syncounts_proofread_syn_count_in").is_not_null())["nucleus_id"]
    tested = full.predictions.filter(pl.col("nucleus_id").is_in(with_counts.implode()))
    assert gain["test_cells_with_features"] == tested.height
    by_hand = (tested["y_true"] == tested["y_pred"]).mean()
    assert abs(gain["cells_with_features"]["accuracy"]["b"] - by_hand) < 1e-12
    assert "### What a feature group adds" in (report / "REPORT.md").read_text()
    # every matched-cell comparison is in comparisons.csv, as printed
    saved = pl.read_csv(report / "comparisons.csv").filter(pl.col("dataset_id") == ds.id)
    gain_row = saved.filter((pl.col("view") == "gain_all_cells") & (pl.col("metric") == "accuracy")).row(0, named=True)
    assert gain_row["other"] == "logistic_regression" and abs(gain_row["diff"] - everywhere["diff"]) < 1e-9
    covered = saved.filter((pl.col("view") == "covered_cells") & (pl.col("entry") == f"table:{EARLY}"))
    assert set(covered["metric"]) == {"accuracy", "balanced_accuracy"} and "logistic_regression" in covered["other"]
    board_csv = pl.read_csv(report / "leaderboard.csv").filter(pl.col("entry") == "logistic_regression")
    assert board_csv["calibration"][0] == full.calibration["method"]  # type: ignore[index]


def test_an_ablation_that_matches_no_feature_is_a_clear_error(reported) -> None:
    from cellfeatures.benchmark.run import run_baselines

    store, ds, _report, root = reported
    with pytest.raises(ConfigError, match=r"ablations: typo = 'syncount_\*' matches no feature of the dataset"):
        run_baselines(
            store, ds, seeds=(0,), models=("logistic_regression",), root=root, ablations={"typo": "syncount_*"}
        )


def test_a_report_covering_several_datasets_is_found_for_each(reported) -> None:
    from cellfeatures.benchmark.leaderboard import latest_report

    store, ds, _report, root = reported
    split = SplitSpec(block_um=50, buffer_um=15)
    spec = DatasetSpec("classes", level="class", exclude=("pos_*", "qc_*"), split=split)
    classes = build_dataset(store, spec, root / "datasets")
    report, _ = baseline_report(
        store, ds, seeds=(0,), models=("majority",), existing=(), root=root / "datasets", extra=[classes]
    )
    assert latest_report(classes, root / "datasets") == report.parent
    assert latest_report(classes) is None, "without the datasets root only its own folder is searched"


def test_a_split_leaving_a_fold_without_training_cells_is_refused(reported) -> None:
    store, _ds, _report, root = reported
    spec = DatasetSpec(
        "coarse", level="class", exclude=("pos_*", "qc_*"), split=SplitSpec(block_um=100, buffer_um=None)
    )
    with pytest.raises(ConfigError, match="use smaller blocks, a smaller buffer or fewer folds"):
        build_dataset(store, spec, root / "datasets")
