"""The Python API as a notebook user meets it: `import cellfeatures as cf`, objects that show themselves."""

from __future__ import annotations

import doctest
from pathlib import Path

import polars as pl
import pytest

import cellfeatures as cf
from cellfeatures import display


def test_every_public_name_resolves_from_the_package_top() -> None:
    for name in cf.__all__:
        assert getattr(cf, name) is not None, name
    assert "FeatureStore" in dir(cf)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = cf.nope


@pytest.mark.parametrize(
    "obj",
    [
        "cellfeatures.store.store.FeatureStore",
        "cellfeatures.store.version.FeatureVersion",
        "cellfeatures.datasets.dataset.Dataset",
        "cellfeatures.benchmark.leaderboard.Leaderboard",
    ],
)
def test_docstring_examples_run_on_the_sample(obj: str, sample_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The examples in the docstrings are run, not just read: a failing one fails here."""
    import importlib

    module, _, name = obj.rpartition(".")
    target = getattr(importlib.import_module(module), name)
    monkeypatch.chdir(sample_project / "examples")
    globs = {"cf": cf, "pl": pl, "store": cf.FeatureStore()}
    tests = [t for t in doctest.DocTestFinder().find(target, name, globs=globs) if t.examples]
    assert tests, f"{obj} has no docstring example"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in tests:
        runner.run(test)
    assert runner.failures == 0, f"{runner.failures} docstring example(s) of {obj} failed (see output above)"


def test_the_store_is_found_from_a_notebook_folder(sample_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(sample_project / "examples")
    store = cf.FeatureStore()
    assert store.root == (sample_project / "features").resolve()
    assert "configs/sample.toml" in store.found_by
    text = repr(store)
    assert "1 version(s)" in text and "at 0x" not in text
    assert store.load().height == store.latest().cells, "load() defaults to the latest version"


def test_an_empty_store_says_where_it_looked(tmp_path: Path) -> None:
    store = cf.FeatureStore(tmp_path / "nothing")
    assert f"FeatureStore('{tmp_path / 'nothing'}'): 0 version(s)" in repr(store)
    assert "no versions in" in store._repr_html_()
    with pytest.raises(cf.CellFeaturesError, match="found by the path given"):
        store.latest()


def test_a_version_shows_cells_families_and_origins(sample_project: Path) -> None:
    store = cf.FeatureStore(sample_project / "features")
    v = store.latest()
    text = repr(v)
    assert text.startswith(f"FeatureVersion {v.id} · 69,461 cells")
    assert "14 real" in text and "synthetic" in text
    html = v._repr_html_()
    for part in ("nucleus", "synapses", "external", display.badge("real"), display.badge("synthetic")):
        assert part in html
    catalogue = v.catalogue()
    assert catalogue.height == len(v.features)
    real = catalogue.filter(pl.col("origin") == "real")
    assert real.height == 14
    assert not real.filter(pl.col("description").str.contains("from external table")).height, (
        "real features carry what they measure, not a placeholder"
    )
    assert list(v.to_pandas(["soma_depth_um"]).columns) == ["soma_depth_um"]


def test_a_dataset_shows_its_label_split_and_class_counts(sample_project: Path) -> None:
    ds = cf.Dataset.load("column_types", sample_project / "datasets")
    text = repr(ds)
    assert text.startswith(f"Dataset column_types {ds.id} · 1,261 cells")
    html = ds._repr_html_()
    assert "class counts per fold and role" in html and "buffer" in html and "23P" in html
    roles = ds.to_pandas()["fold_0"].value_counts()  # no None among the roles: this used to raise
    assert set(roles.index) == {"train", "test", "buffer", "locked"}


def test_a_saved_leaderboard_shows_intervals(sample_project: Path) -> None:
    board = cf.Leaderboard.load("column_types", sample_project / "datasets")
    frame = board.frame()
    lr = frame.filter(pl.col("entry") == "logistic_regression").row(0, named=True)
    shown = f"{lr['balanced_accuracy_mean']:.3f} [{lr['balanced_accuracy_ci_low']:.3f}, "
    assert shown in repr(board) and shown in board._repr_html_()
    assert board.path is not None and (board.path / "REPORT.html").exists() and (board.path / "REPORT.md").exists()


def test_a_diff_shows_what_changed(sample_project: Path) -> None:
    store = cf.FeatureStore(sample_project / "features")
    v = store.latest().id
    d = store.diff(v, v)
    assert repr(d).startswith(f"VersionDiff {v[:8]} → {v[:8]}: cells +0 −0")
    assert "features with changed values: 0 of" in d._repr_html_()


def test_html_escapes_every_value() -> None:
    """A table or feature named with markup must show as text, not run as HTML."""
    manifest = {
        "version": "v<1>",
        "rows": 2,
        "built_at": "now",
        "source": {"kind": "snapshot", "datastack": "<script>alert(1)</script>"},
        "families": {"nucleus": {"inputs": ["<b>t</b>"], "seconds": 0.1}},
        "features": {
            "x<i>": {"family": "nucleus", "origin": "real", "unit": "um", "null_rate": 0.0, "description": "<img>"}
        },
        "inputs": {"<b>t</b>": {"origin": "real", "rows": 2}},
    }
    html = display.version_html(manifest, "/p")
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<b>t</b>" not in html and "x&lt;i&gt;" in html and "<img>" not in html
