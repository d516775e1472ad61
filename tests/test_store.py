"""The versioned store: content-addressed, no-op rebuilds, exact diffs, atomic publication."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import polars as pl
import pytest

from cellfeatures.config.model import default_config, from_dict
from cellfeatures.errors import SchemaError, StoreError, VersionNotFoundError
from cellfeatures.store.store import FeatureStore
from tests.conftest import nucleus_frame, write_snapshot


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    store = FeatureStore(tmp_path_factory.mktemp("store"))
    return store, store.build(default_config())


def test_sample_build_publishes_all_five_families(built) -> None:
    store, result = built
    m = result.manifest
    assert result.created and set(m["families"]) == {"nucleus", "synapses", "functional", "proofreading", "external"}
    assert m["rows"] == 69_461 == store.load(result.id, columns=["soma_depth_um"]).height
    assert m["source"]["datastack"] == "minnie65_public" and "materialization_version" in m["source"]
    assert m["inputs"]["synapses_pni_2"]["origin"] == "synthetic"
    assert m["inputs"]["soma_nuc_features_v117"]["origin"] == "real"
    feature = m["features"]["somanuc_soma_volume_nm3"]
    assert feature["origin"] == "real" and feature["unit"] == "nm3" and 0 <= feature["null_rate"] < 0.01
    assert "somanuc_nucleus_volume_um3" not in m["features"], "it duplicated nuc_volume_um3"
    assert feature["min"] < feature["max"]
    assert m["features"]["soma_depth_um"]["origin"] == "derived"
    assert m["features"]["nuc_area"]["origin"] == "synthetic"
    assert m["build_seconds"] > 0 and m["peak_rss_bytes"] > 0
    assert not [p for p in store.root.iterdir() if p.name.startswith(".")], "no build leftovers"


def test_second_build_is_a_no_op(built) -> None:
    store, first = built
    mtime = (first.path / "features.parquet").stat().st_mtime_ns
    again = store.build(default_config())
    assert not again.created and again.id == first.id
    assert (first.path / "features.parquet").stat().st_mtime_ns == mtime


def test_one_config_change_gives_a_new_version_and_the_diff_says_exactly_that(built) -> None:
    store, first = built
    changed = store.build(default_config().with_value("features.nucleus.depth_method", "y_offset"))
    assert changed.created and changed.id != first.id
    d = store.diff(first.id, changed.id)
    assert d.config_changes == [{"key": "features.nucleus.depth_method", "a": "standard_transform", "b": "y_offset"}]
    assert [c["feature"] for c in d.changed_features] == ["soma_depth_um"], "no phantom drift elsewhere"
    assert (d.cells_added, d.cells_removed, d.cells_rerooted, d.features_added, d.features_removed) == (0, 0, 0, [], [])
    assert d.tables_changed == []


def test_resolve_load_and_scan(built) -> None:
    store, first = built
    assert store.resolve(first.id[:6]) == first.id
    assert store.resolve("latest") in {r["version"] for r in store.list()}
    frame = store.load(first.id, columns=["syn_in_count"])
    assert frame.columns == ["nucleus_id", "syn_in_count"]
    assert store.scan(first.id).select(pl.len()).collect().item() == 69_461
    with pytest.raises(VersionNotFoundError, match="no version 'zzz'"):
        store.resolve("zzz")
    with pytest.raises(StoreError, match="no column"):
        store.load(first.id, columns=["not_a_feature"])


def _tiny_config(path: Path, extra: str = "") -> object:
    import tomllib

    return from_dict(
        tomllib.loads(
            textwrap.dedent(f"""
        name = "tiny"
        [source]
        kind = "snapshot"
        path = "{path}"
        [features.nucleus]
        depth_method = "y_offset"
        [features.proofreading]
        table = ""
        {extra}
    """)
        )
    )


def test_diff_reports_cells_added_removed_and_rerooted(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path / "store")
    write_snapshot(
        tmp_path / "a", {"nucleus_detection_v0": nucleus_frame([(1, 11, 0, 0, 0), (2, 12, 0, 0, 0), (3, 13, 0, 0, 0)])}
    )
    write_snapshot(
        tmp_path / "b", {"nucleus_detection_v0": nucleus_frame([(2, 12, 0, 0, 0), (3, 99, 0, 0, 0), (4, 14, 0, 0, 0)])}
    )
    a = store.build(_tiny_config(tmp_path / "a")).id
    b = store.build(_tiny_config(tmp_path / "b")).id
    d = store.diff(a, b)
    assert (d.cells_added, d.cells_removed, d.cells_rerooted) == (1, 1, 1)
    assert d.examples == {"added": [4], "removed": [1], "rerooted": [3]}
    assert d.tables_changed == ["nucleus_detection_v0"]


def test_a_failing_build_leaves_no_visible_version(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path / "store")
    bad = pl.DataFrame({"nucleus_id": [1, 1], "v": [1.0, 2.0]})
    write_snapshot(tmp_path / "snap", {"nucleus_detection_v0": nucleus_frame([(1, 11, 0, 0, 0)]), "ext": bad})
    extra = '[features.external.e]\ntable = "ext"\n[features.external.e.columns]\nv = "um"'
    with pytest.raises(SchemaError, match="not unique"):
        store.build(_tiny_config(tmp_path / "snap", extra))
    assert store.list() == [] and list(store.root.iterdir()) == []


def test_a_killed_build_leaves_no_visible_version_and_a_rerun_completes(tmp_path: Path) -> None:
    """SIGKILL mid-build (no cleanup runs): readers still see nothing; the next build publishes."""
    store_root = tmp_path / "store"
    script = textwrap.dedent(f"""
        import time, polars as pl
        from cellfeatures.config.model import default_config
        from cellfeatures.store.store import FeatureStore
        from cellfeatures.pipelines import synapses
        original = synapses.build
        def slow(ctx, cfg):
            print("in synapses", flush=True)
            time.sleep(60)
            return original(ctx, cfg)
        synapses.build = slow
        FeatureStore({str(store_root)!r}).build(default_config())
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=os.environ.copy(), text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "in synapses" in line
    building = [p for p in store_root.iterdir() if p.name.startswith(".building-")]
    assert building and (building[0] / "families" / "nucleus.parquet").exists(), "the build was really mid-way"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    store = FeatureStore(store_root)
    assert store.list() == []
    with pytest.raises(VersionNotFoundError):
        store.resolve("latest")
    t0 = time.perf_counter()
    result = store.build(default_config())
    assert result.created and store.list()[0]["version"] == result.id
    assert time.perf_counter() - t0 < 120
