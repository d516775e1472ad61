"""The CAVE source, exercised through the real caveclient against a CAVE-compatible server on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from cellfeatures.cli import app
from cellfeatures.config.model import from_dict
from cellfeatures.errors import CaveAuthError
from cellfeatures.sources.cave.snapshotter import fetch_tables
from cellfeatures.sources.snapshot import SnapshotSource
from cellfeatures.sources.synthetic.cells import SyntheticSpec
from cellfeatures.sources.synthetic.snapshot import write_synthetic_snapshot
from cellfeatures.store.store import FeatureStore
from tests.cave_server.server import CaveTestServer, ServerConfig
from tests.conftest import CAVE_TOKEN as TOKEN


@pytest.fixture(autouse=True)
def _token(cave_token: str) -> None:
    """Every test here talks to the local CAVE server with its token."""


@pytest.fixture(scope="module")
def big_table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 25,000-row reference table with sparse ids (gaps, like a real annotation table)."""
    root = tmp_path_factory.mktemp("served")
    n = 25_000
    rng = np.random.default_rng(0)
    ids = np.sort(rng.choice(np.arange(1, 10 * n), n, replace=False))
    pl.DataFrame(
        {
            "id": ids,
            "valid": [True] * n,
            "target_id": np.arange(1000, 1000 + n),
            "cell_type": ["23P", "BC"] * (n // 2),
            "pt_root_id": np.arange(n) + 864691135000000000,
            "pt_position_x": np.arange(n) * 1.0,
            "pt_position_y": np.arange(n) * 2.0,
            "pt_position_z": np.arange(n) * 3.0,
        }
    ).write_parquet(root / "types.parquet")
    return root


def _cfg(server: CaveTestServer, **extra: object) -> dict:
    return {
        "kind": "cave",
        "server": server.url,
        "version": 1300,
        "row_limit": server.config.row_limit,
        "backoff_s": 0.01,
        **extra,
    }


def test_a_row_limit_of_1000_still_returns_all_25000_rows(big_table: Path, tmp_path: Path) -> None:
    with CaveTestServer(ServerConfig(snapshot=big_table, row_limit=1000)) as server:
        path, reports, fetcher = fetch_tables(_cfg(server), ["types"], out=tmp_path / "snap")
        assert server.capped_responses == 0, "every chunk was planned below the limit"
    got = pl.read_parquet(path / "types.parquet")
    expected = pl.read_parquet(big_table / "types.parquet")
    assert got.height == 25_000 and got["id"].is_unique().all()
    assert got.select(expected.columns).equals(expected)
    assert reports[0].chunks >= 25 and fetcher.timestamp.year == 2025
    manifest = SnapshotSource(path)
    assert (manifest.materialization_version, manifest.timestamp) == (1300, "2025-01-13T10:10:01.286229")


def test_a_server_capping_below_the_config_is_learned_and_the_fetch_completes(big_table: Path, tmp_path: Path) -> None:
    """The server caps at 1,000 rows but the config believes 5,000: learn the cap from the Warning, finish."""
    with CaveTestServer(ServerConfig(snapshot=big_table, row_limit=1000)) as server:
        path, reports, fetcher = fetch_tables(_cfg(server, row_limit=5000), ["types"], out=tmp_path / "snap")
        assert server.capped_responses >= 1, "the server really answered with a capped, Warning-flagged result"
    got = pl.read_parquet(path / "types.parquet")
    assert got.height == 25_000 and got["id"].is_unique().all()
    assert reports[0].row_cap == fetcher.learned_row_cap == 1000


def test_limit_100_with_a_5xx_every_third_request_still_completes(big_table: Path, tmp_path: Path) -> None:
    small = tmp_path / "served"
    small.mkdir()
    pl.read_parquet(big_table / "types.parquet").head(2_000).write_parquet(small / "types.parquet")
    with CaveTestServer(ServerConfig(snapshot=small, row_limit=100, fail_every=3)) as server:
        path, _reports, _ = fetch_tables(_cfg(server), ["types"], out=tmp_path / "snap")
        failures = [r for r in server.requests if r.status == 503]
    assert len(failures) > 10, "the failures really happened"
    assert pl.read_parquet(path / "types.parquet").height == 2_000


def test_a_killed_fetch_resumes_and_downloads_only_the_missing_chunks(big_table: Path, tmp_path: Path) -> None:
    out = tmp_path / "snap"
    with CaveTestServer(ServerConfig(snapshot=big_table, row_limit=1000)) as server:
        script = textwrap.dedent(f"""
            import os, signal
            from cellfeatures.sources.cave.snapshotter import fetch_tables
            def progress(table, done, total):
                if done == 10:
                    os.kill(os.getpid(), signal.SIGKILL)   # die mid-fetch, no cleanup
            fetch_tables({_cfg(server)!r}, ["types"], out={str(out)!r}, progress=progress)
        """)
        proc = subprocess.run([sys.executable, "-c", script], env=os.environ.copy(), timeout=120)
        assert proc.returncode == -9
        first_run_queries = len(server.queries("query"))
        assert first_run_queries == 10
        assert not (out / "types.parquet").exists(), "an interrupted fetch leaves no table visible"
        server.requests.clear()
        _path, reports, _ = fetch_tables(_cfg(server), ["types"], out=out)
        resumed_queries = len(server.queries("query"))
        assert server.queries("count") == [], "the saved plan is reused: no re-planning"
    total = reports[0].chunks
    assert resumed_queries == reports[0].chunks_downloaded == total - 10
    assert pl.read_parquet(out / "types.parquet").height == 25_000
    # a finished snapshot is reused: a third run downloads nothing
    with CaveTestServer(ServerConfig(snapshot=big_table, row_limit=1000)) as server:
        fetch_tables(_cfg(server), ["types"], out=out)
        assert server.queries("query") == [] and server.queries("count") == []


def test_a_wrong_token_fails_in_seconds_naming_the_server_and_cave_token(
    big_table: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "wrong-token-should-never-be-printed-42"
    monkeypatch.setenv("CAVE_TOKEN", wrong)
    with CaveTestServer(ServerConfig(snapshot=big_table)) as server:
        t0 = time.perf_counter()
        with pytest.raises(CaveAuthError) as info:
            fetch_tables(_cfg(server), ["types"], out=tmp_path / "snap")
        assert time.perf_counter() - t0 < 10
    message = str(info.value)
    assert server.url in message and "CAVE_TOKEN" in message and wrong not in message


def test_the_token_appears_in_no_file_a_run_writes(big_table: Path, tmp_path: Path) -> None:
    with CaveTestServer(ServerConfig(snapshot=big_table, row_limit=5000)) as server:
        fetch_tables(_cfg(server), ["types"], out=tmp_path / "snap")
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written
    for file in written:
        assert TOKEN.encode() not in file.read_bytes(), file


@pytest.fixture(scope="module")
def served_synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = SyntheticSpec(n_cells=300, n_synapses=30_000, seed=11, chunk_rows=10_000)
    return write_synthetic_snapshot(spec, tmp_path_factory.mktemp("syn") / "snap")


BUILD_FEATURES = {
    "nucleus": {"area_table": "nucleus_functional_area_assignment", "depth_method": "y_offset"},
    "synapses": {
        "synapse_table": "synapses_pni_2",
        "target_table": "synapse_target_predictions_ssa",
        "partner_label_table": "aibs_metamodel_celltypes_v661",
    },
    "functional": {},
    "proofreading": {},
}


def test_build_on_the_fetched_snapshot_equals_build_on_the_served_one(served_synthetic: Path, tmp_path: Path) -> None:
    with CaveTestServer(ServerConfig(snapshot=served_synthetic, row_limit=4000)) as server:
        config = from_dict({"source": _cfg(server, out=str(tmp_path / "fetched")), "features": BUILD_FEATURES})
        fetched = FeatureStore(tmp_path / "store_a").build(config)
    direct = from_dict({"source": {"kind": "snapshot", "path": str(served_synthetic)}, "features": BUILD_FEATURES})
    original = FeatureStore(tmp_path / "store_b").build(direct)
    a = FeatureStore(tmp_path / "store_a").load(fetched.id)
    b = FeatureStore(tmp_path / "store_b").load(original.id)
    assert a.equals(b), "bit-for-bit equal feature matrices"
    assert fetched.manifest["source"]["materialization_version"] == 1300
    assert fetched.manifest["source"]["timestamp"] == "2025-01-13T10:10:01.286229"


def test_cells_mode_fetches_exactly_the_synapses_of_chosen_cells(served_synthetic: Path, tmp_path: Path) -> None:
    labels = pl.read_parquet(served_synthetic / "aibs_metamodel_celltypes_v661.parquet").head(40)
    served = tmp_path / "served"
    served.mkdir()
    for name in ("nucleus_detection_v0",):
        pl.read_parquet(served_synthetic / f"{name}.parquet").write_parquet(served / f"{name}.parquet")
    labels.write_parquet(served / "chosen.parquet")
    syn = pl.read_parquet(served_synthetic / "synapses_pni_2" / "*.parquet")
    syn.write_parquet(served / "synapses_pni_2.parquet")
    pl.read_parquet(served_synthetic / "synapse_target_predictions_ssa" / "*.parquet").write_parquet(
        served / "synapse_target_predictions_ssa.parquet"
    )
    fetch = {
        "synapses_pni_2": {"mode": "cells", "cells_from": "chosen"},
        "synapse_target_predictions_ssa": {"mode": "values", "column": "target_id", "values_from": "synapses_pni_2.id"},
    }
    with CaveTestServer(ServerConfig(snapshot=served, row_limit=300)) as server:
        path, _, _ = fetch_tables(
            _cfg(server, fetch=fetch), ["synapses_pni_2", "synapse_target_predictions_ssa"], out=tmp_path / "snap"
        )
    nuclei = pl.read_parquet(served / "nucleus_detection_v0.parquet")
    roots = set(nuclei.filter(pl.col("id").is_in(labels["target_id"].to_list()))["pt_root_id"].to_list()) - {0}
    expected = syn.filter(pl.col("pre_pt_root_id").is_in(list(roots)) | pl.col("post_pt_root_id").is_in(list(roots)))
    got = pl.read_parquet(path / "synapses_pni_2.parquet")
    assert sorted(got["id"].to_list()) == sorted(expected["id"].to_list())
    tags = pl.read_parquet(path / "synapse_target_predictions_ssa.parquet")
    assert set(tags["target_id"].to_list()) <= set(got["id"].to_list()) and tags.height > 0


def test_cli_fetch_with_version_server_out_and_tables(big_table: Path, tmp_path: Path) -> None:
    config = tmp_path / "cave.toml"
    config.write_text(
        '[source]\nkind = "cave"\ndatastack = "minnie65_public"\nrow_limit = 3000\n'
        '[features.nucleus]\ndepth_method = "y_offset"\n'
    )
    with CaveTestServer(ServerConfig(snapshot=big_table, row_limit=3000)) as server:
        result = CliRunner().invoke(
            app,
            [
                "fetch",
                "--config",
                str(config),
                "--version",
                "1300",
                "--server",
                server.url,
                "--out",
                str(tmp_path / "out"),
                "--tables",
                "types",
            ],
        )
    assert result.exit_code == 0, result.output
    assert "types: 25,000 rows" in result.output and "v1300" in result.output
    assert pl.read_parquet(tmp_path / "out" / "types.parquet").height == 25_000
