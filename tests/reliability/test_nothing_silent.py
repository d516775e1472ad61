"""Cases that used to succeed with a wrong result: each is now a clear error or a correct result.

Every test here reproduces one silent failure a new user met (a config without [source], a flipped byte
in a dataset, an empty or hollow input, a float key, a label table with a null target, an implausible
external value, a negative nucleus id, a forked dataset, a hidden headline report, raw markup in a card).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from cellfeatures.benchmark.fits import FIT_SUFFIX
from cellfeatures.cli import app
from cellfeatures.config.model import from_dict, load_config
from cellfeatures.datasets.dataset import Dataset, find_dataset
from cellfeatures.errors import ConfigError, DamagedDatasetError, SchemaError, SourceError
from tests.reliability.conftest import EXTERNAL
from tests.reliability.test_bad_tables import _col, assert_clean_error, build_case

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


def _error_line(args: list[str]) -> str:
    """The error message (from `error:` to the end, lines joined: the terminal wraps long ones)."""
    result = runner.invoke(app, args)
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("error:"))
    return " ".join(line.strip() for line in lines[start:])


# ------------------------------------------------------------------ 1. no default that guesses the source


@pytest.mark.corruption
def test_a_config_without_a_source_section_is_refused_naming_the_file(in_tmp: Path) -> None:
    (in_tmp / "mine.toml").write_text('[features.nucleus]\ndepth_method = "y_offset"\n')
    line = _error_line(["build", "--config", str(in_tmp / "mine.toml")])
    assert "mine.toml has no [source] section" in line and 'kind = "sample"' in line
    assert not (in_tmp / "features").exists(), "nothing was built from the embedded sample"


@pytest.mark.corruption
def test_a_source_without_a_kind_is_refused() -> None:
    with pytest.raises(ConfigError, match="needs a table with `kind`"):
        from_dict({"source": {"path": "/data/snap"}, "features": {"nucleus": {}}})


# ------------------------------------------------------------------ 2. the project is where the config is


@pytest.mark.corruption
def test_configs_are_real_files_equal_to_the_packaged_copies() -> None:
    from cellfeatures.config.model import packaged_config_path

    for path in sorted((ROOT / "configs").glob("*.toml")):
        assert not path.is_symlink(), f"{path} is a symlink: checkouts without symlinks break, stores land in src/"
        assert path.read_text() == packaged_config_path(path.stem).read_text(), path


@pytest.mark.corruption
def test_a_config_symlinked_into_the_package_still_belongs_to_its_project(tmp_path: Path) -> None:
    from cellfeatures.config.model import packaged_config_path

    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "sample.toml").symlink_to(packaged_config_path("sample"))
    config = load_config(tmp_path / "configs" / "sample.toml")
    assert Path(config.store_root) == tmp_path / "features"
    assert Path(config.datasets_root) == tmp_path / "datasets"


@pytest.mark.corruption
@pytest.mark.parametrize("root", ["", "   "])
def test_an_empty_store_root_is_refused(root: str) -> None:
    raw = {"source": {"kind": "sample"}, "features": {"nucleus": {}}, "store": {"root": root}}
    with pytest.raises(ConfigError, match=r"\[store\] root.*must name a folder"):
        from_dict(raw)


@pytest.mark.corruption
def test_a_store_given_a_root_and_a_config_builds_that_config(tmp_path: Path) -> None:
    from cellfeatures.store.store import FeatureStore

    config = from_dict({"source": {"kind": "sample"}, "features": {"nucleus": {"depth_method": "y_offset"}}})
    store = FeatureStore(tmp_path / "features", config=config)
    assert store.config is config


# ------------------------------------------------------------------ 3. dataset files are checked when read


@pytest.fixture
def project_copy(sample_project: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "project"
    shutil.copytree(sample_project, copy, symlinks=True)
    return copy


def _dataset(project: Path) -> Dataset:
    return find_dataset("column_types", project / "datasets")


def _flip_byte(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.corruption
def test_a_flipped_byte_in_a_dataset_is_refused_by_export_and_reported_by_verify(project_copy: Path) -> None:
    ds = _dataset(project_copy)
    _flip_byte(ds.path / "data.parquet", (ds.path / "data.parquet").stat().st_size // 2)
    config = str(project_copy / "configs" / "sample.toml")
    out = project_copy / "out.parquet"
    line = _error_line(["export", "column_types", "--out", str(out), "--config", config])
    assert "data.parquet does not match the SHA-256 the card records" in line and not out.exists()
    verified = runner.invoke(app, ["verify", "--config", config])
    assert verified.exit_code == 1 and f"DAMAGED  dataset column_types/{ds.id}" in verified.output


@pytest.mark.corruption
def test_a_splits_file_copied_from_another_dataset_is_refused(project_copy: Path, tmp_path: Path) -> None:
    ds = _dataset(project_copy)
    other = ds.splits.with_columns(pl.col("fold_0").shuffle(seed=3))  # valid, but another split
    other.write_parquet(ds.path / "splits.parquet")
    with pytest.raises(DamagedDatasetError, match=r"splits\.parquet"):
        _dataset(project_copy).frame()


@pytest.mark.corruption
@pytest.mark.parametrize("text", ["{not json", "[1, 2]", ""])
def test_a_garbage_card_is_a_clear_error(project_copy: Path, text: str) -> None:
    ds = _dataset(project_copy)
    (ds.path / "card.json").write_text(text)
    with pytest.raises(DamagedDatasetError, match=r"card\.json"):
        _ = Dataset(ds.path).card


@pytest.mark.corruption
def test_list_marks_a_version_whose_matrix_changed(project_copy: Path) -> None:
    features = next((project_copy / "features").glob("*/features.parquet"))
    _flip_byte(features, features.stat().st_size // 2)
    result = runner.invoke(app, ["list", "--config", str(project_copy / "configs" / "sample.toml"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["versions"][0]["state"].startswith("DAMAGED")


@pytest.mark.corruption
def test_the_same_dataset_asked_by_latest_is_not_forked(project_copy: Path) -> None:
    from cellfeatures.datasets.build import build_dataset
    from cellfeatures.datasets.spec import spec_from_config
    from cellfeatures.store.store import FeatureStore

    config = load_config(project_copy / "configs" / "sample.toml")
    store = FeatureStore(config=config)
    before = _dataset(project_copy)
    spec = spec_from_config(config, "column_types", {})
    assert spec.feature_version == "latest"
    again = build_dataset(store, spec)
    assert again.path == before.path, "'latest' and the id it names make one dataset, not two"


# ------------------------------------------------------------------ 4-5. hollow and malformed prediction files


def _score(project: Path, frame: pl.DataFrame, name: str, *extra: str) -> str:
    path = project / f"{name}.parquet"
    frame.write_parquet(path)
    return _error_line(["score", str(path), "--config", str(project / "configs" / "sample.toml"), *extra])


@pytest.mark.corruption
def test_a_prediction_file_with_a_header_only_is_refused(project_copy: Path) -> None:
    empty = pl.DataFrame(schema={"nucleus_id": pl.Int64, "cell_type": pl.String})
    assert "has a header and no rows" in _score(project_copy, empty, "empty")


@pytest.mark.corruption
def test_a_prediction_file_without_any_label_is_refused(project_copy: Path) -> None:
    ids = _dataset(project_copy).data["nucleus_id"].head(20)
    hollow = pl.DataFrame({"nucleus_id": ids, "cell_type": pl.Series([None] * 20, dtype=pl.String)})
    assert "has no label in any row" in _score(project_copy, hollow, "hollow")


@pytest.mark.corruption
def test_nucleus_ids_that_went_through_float_with_nan_are_refused(project_copy: Path) -> None:
    ids = _dataset(project_copy).data["nucleus_id"].head(20).cast(pl.Float64).scatter(3, float("nan"))
    frame = pl.DataFrame({"nucleus_id": ids, "cell_type": ["23P"] * 20})
    line = _score(project_copy, frame, "floats")
    assert "went through float64" in line and "rows [3]" in line


@pytest.mark.corruption
def test_a_materialization_version_the_store_cannot_check_is_refused(project_copy: Path) -> None:
    ds = _dataset(project_copy)
    frame = ds.data.select(pl.col("root_id").alias("pt_root_id"), pl.col(ds.label).alias("cell_type")).head(50)
    line = _score(project_copy, frame, "roots", "--materialization-version", "999")
    assert "--materialization-version 999 cannot be checked" in line


@pytest.mark.corruption
def test_a_probability_column_for_an_unknown_class_is_refused(project_copy: Path) -> None:
    ds = _dataset(project_copy)
    frame = ds.data.select("nucleus_id", pl.col(ds.label).alias("cell_type")).head(50)
    frame = frame.with_columns(pl.lit(0.5).alias("p_23P"), pl.lit(0.5).alias("p_unicorn"))
    assert "['p_unicorn'] name classes the dataset does not have" in _score(project_copy, frame, "proba")


# ------------------------------------------------------------------ 6. label and model tables validated when used


@pytest.mark.corruption
@pytest.mark.parametrize(
    ("mutation", "expected"),
    [
        (lambda f: f.with_columns(f["target_id"].cast(pl.Float64).scatter(2, float("nan"))), "target_id"),
        (lambda f: f.with_columns(f["target_id"].scatter(2, None)), "target_id"),
        (lambda f: f.drop("cell_type"), "missing column 'cell_type'"),
        (lambda f: f.drop("target_id"), "missing column 'target_id'"),
    ],
    ids=["NaN target", "null target", "no cell_type", "no target_id"],
)
def test_a_broken_label_table_is_refused_by_labels_and_by_datasets(tmp_path: Path, mutation, expected: str) -> None:
    from cellfeatures.labels.sources import load_labels
    from cellfeatures.sources.sample import SampleSource, sample_data_dir
    from cellfeatures.sources.snapshot import SnapshotSource

    snap = tmp_path / "snap"
    snap.mkdir()
    table = "soma_nuc_model_83_1_v117"
    mutation(pl.read_parquet(sample_data_dir() / f"{table}.parquet")).write_parquet(snap / f"{table}.parquet")
    with pytest.raises((SchemaError, SourceError), match=expected):  # by the wire coercion or by pandera
        load_labels(SnapshotSource(snap), "early_model")
    assert load_labels(SampleSource(), "early_model").frame.height > 40_000  # the intact table loads


@pytest.mark.corruption
def test_labels_reports_nuclei_with_conflicting_model_predictions(tmp_path: Path) -> None:
    from cellfeatures.sources.sample import sample_data_dir

    snap = tmp_path / "snap"
    snap.mkdir()
    for name in ("allen_v1_column_types_slanted_ref", "soma_nuc_model_83_1_v117", "nucleus_detection_v0"):
        frame = pl.read_parquet(sample_data_dir() / f"{name}.parquet")
        if name == "soma_nuc_model_83_1_v117":  # two rows for 7 nuclei, saying different things
            extra = frame.head(7).with_columns(pl.col("id") + 10**9, pl.lit("BC").alias("cell_type"))
            frame = pl.concat([frame, extra])
        frame.write_parquet(snap / f"{name}.parquet")
    config = tmp_path / "c.toml"
    config.write_text(f'[source]\nkind = "snapshot"\npath = "{snap}"\n[features.nucleus]\ndepth_method = "y_offset"\n')
    result = runner.invoke(app, ["labels", "manual", "early_model", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "early_model: 7 nuclei carry conflicting labels" in result.output


# ------------------------------------------------------------------ 7. external values checked by their unit


EXTERNAL_CASES = [
    ("negative volume", _col("soma_area", lambda s: s.scatter(0, -1.0)), "negative for an area in um2"),
    ("fractional count", _col("n_spines", lambda s: s.cast(pl.Float64).scatter(0, 2.5)), "not a count"),
    ("text in a number", _col("soma_area", lambda s: s.cast(pl.String).scatter(0, "n/a")), "are not numbers"),
    ("infinite", _col("soma_area", lambda s: s.scatter(0, float("inf"))), "infinite"),
]


@pytest.mark.corruption
@pytest.mark.parametrize(("mutation", "message"), [c[1:] for c in EXTERNAL_CASES], ids=[c[0] for c in EXTERNAL_CASES])
def test_an_implausible_external_value_is_refused_by_its_unit(
    base_snapshot: Path, tmp_path: Path, mutation, message: str
) -> None:
    code, output, store = build_case(base_snapshot, tmp_path, EXTERNAL, mutation)
    assert_clean_error(code, output, store, (EXTERNAL,))
    assert message in " ".join(output.split())


@pytest.mark.corruption
def test_a_fraction_above_one_is_refused(base_snapshot: Path, tmp_path: Path) -> None:
    from cellfeatures.pipelines.external import check_values

    frame = pl.DataFrame({"nucleus_id": [1, 2], "frac": [0.5, 1e12]})
    with pytest.raises(SchemaError, match=r"outside \[0, 1\] for a fraction, e.g. nucleus 2: 1000000000000.0"):
        check_values(frame, "t", "frac", "fraction", "Float64")
    check_values(frame.with_columns(pl.lit(float("nan")).alias("frac")), "t", "frac", "fraction", "Float64")


# ------------------------------------------------------------------ 8. a negative nucleus id is no cell


@pytest.mark.corruption
def test_a_negative_nucleus_id_is_refused(base_snapshot: Path, tmp_path: Path) -> None:
    mutation = _col("id", lambda s: s.scatter(0, -12))
    code, output, store = build_case(base_snapshot, tmp_path, "nucleus_detection_v0", mutation)
    assert_clean_error(code, output, store, ("nucleus_detection_v0",))
    assert "'id'" in output and "-12" in output


# ------------------------------------------------------------------ vague messages and markup


@pytest.mark.corruption
@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("folds", '"five"', "split folds must be a whole number, got 'five'"),
        ("locked_fraction", '"15%"', "split locked_fraction must be a number like 0.15"),
        ("seed", "1.5", "split seed must be a whole number, got 1.5"),
    ],
)
def test_a_split_value_of_the_wrong_type_names_its_key(in_tmp: Path, key: str, value: str, message: str) -> None:
    from cellfeatures.config.model import packaged_config_path

    text = packaged_config_path("sample").read_text()
    text = text.replace("[dataset.column_types.split]\n", f"[dataset.column_types.split]\n{key} = {value}\n", 1)
    text = "\n".join(line for line in text.splitlines() if not line.startswith(f"{key} =") or value in line)
    (in_tmp / "configs").mkdir()
    (in_tmp / "configs" / "c.toml").write_text(text)
    for command in ("dataset", "run"):  # refused before the feature build, which the error makes pointless
        args = [
            command,
            *(["column_types"] if command == "dataset" else []),
            "--config",
            str(in_tmp / "configs" / "c.toml"),
        ]
        line = _error_line(args)
        assert "[dataset.column_types]" in line and message in line
        assert not (in_tmp / "features").exists() or not any((in_tmp / "features").iterdir()), "features were built"


@pytest.mark.corruption
def test_card_markdown_keeps_names_inert() -> None:
    from cellfeatures.datasets.card import render_card

    card = {
        "name": "x",
        "dataset_id": "1",
        "feature_version": "v",
        "source": {},
        "label": {"column": "l", "kind": "manual", "source": "m", "tables": ["t"], "level": "type"},
        "cells": 1,
        "features": ["<script>alert(1)</script>"],
        "feature_origins": {"<script>alert(1)</script>": "real"},
        "spec": {"split": {"strategy": "spatial", "seed": 0}},
        "folds": {},
        "filters": [],
        "class_counts": {"a|b": 1},
        "leakage_risks": [],
    }
    text = render_card(card)
    assert "<script>" not in text and "&lt;script&gt;" in text and "a\\|b" in text


# ------------------------------------------------------------------ interruptions leave nothing behind


SLOW_BUILD = """
import sys, time
from cellfeatures.cli import app
import cellfeatures.store.build as build
original = build._build_into
def slow(*a, **k):
    print("BUILDING", flush=True)
    time.sleep(60)
    return original(*a, **k)
build._build_into = slow
sys.argv = ["cellfeatures", "build", "--config", sys.argv[1], "--store", sys.argv[2]]
app()
"""


@pytest.mark.fault
def test_sigterm_during_build_removes_the_hidden_build_folder(base_snapshot: Path, tmp_path: Path) -> None:
    import signal

    from tests.reliability.conftest import config_text

    config = tmp_path / "c.toml"
    config.write_text(config_text(base_snapshot))
    store = tmp_path / "features"
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(SLOW_BUILD), str(config), str(store)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.stdout is not None
    while (line := proc.stdout.readline()) and line.strip() != "BUILDING":
        pass
    assert line.strip() == "BUILDING"
    assert list(store.glob(".building-*")), "the build is under way in a hidden folder"
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "terminated" in err and "Traceback" not in err
    assert not list(store.glob(".building-*")), "nothing left behind"


@pytest.mark.corruption
def test_a_quick_one_seed_baseline_never_hides_the_headline_report(project_copy: Path) -> None:
    from cellfeatures.datasets.layout import latest_report
    from cellfeatures.store.store import FeatureStore
    from cellfeatures.workflows import baseline_report

    config = load_config(project_copy / "configs" / "sample.toml")
    ds = _dataset(project_copy)
    headline = latest_report(ds, config.datasets_root)
    assert headline is not None
    seeds = json.loads((headline / "entries.json").read_text())["boards"][0]["seeds"]
    if len(seeds) < 2:  # the shared project has a one-seed report: make the "headline" a two-seed one
        headline, _ = baseline_report(FeatureStore(config=config), ds, seeds=(0, 1), models=("majority",))
        headline = headline.parent
    quick, _ = baseline_report(FeatureStore(config=config), ds, seeds=(0,), models=("majority",))
    assert quick.parent != headline
    assert latest_report(ds, config.datasets_root) == headline, "the newer one-seed report stays reachable by key only"


@pytest.mark.fault
def test_ctrl_c_during_the_fits_is_one_calm_line_and_the_rerun_resumes(project_copy: Path) -> None:
    import signal
    import time

    config = str(project_copy / "configs" / "sample.toml")
    command = [
        sys.executable,
        "-m",
        "cellfeatures.cli",
        "baseline",
        "column_types",
        "--seeds",
        "0,1",
        "--config",
        config,
    ]
    command += ["--models", "majority,logistic_regression,random_forest"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    cache = _dataset(project_copy).path / "baselines" / ".fits"
    before = len(list(cache.glob(f"*{FIT_SUFFIX}"))) if cache.exists() else 0
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if cache.exists() and len(list(cache.glob(f"*{FIT_SUFFIX}"))) > before + 2:
            break
        time.sleep(0.1)
    assert proc.poll() is None, "the stage ended before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole process group
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "BrokenProcessPool" not in err, err[-3000:]
    assert "interrupted" in err or "worker process died" in err
    kept = {p.name: p.stat().st_mtime_ns for p in cache.glob(f"*{FIT_SUFFIX}")}
    assert len(kept) > before, "the fits finished before Ctrl-C were kept"
    resumed = runner.invoke(app, command[3:])  # in this process: the resume is what is tested, not a start-up
    assert resumed.exit_code == 0, resumed.output[-3000:]
    assert all((cache / name).stat().st_mtime_ns == t for name, t in kept.items()), "kept fits were not redone"
