"""Fault cases: the CAVE server misbehaving, builds killed or raced, disks full or read-only, stores damaged.

The server is the real CAVE-compatible test server on 127.0.0.1 driven through the real caveclient;
kills are SIGKILLs of real `cellfeatures` subprocesses; a full or read-only disk is a tmpfs mounted for
the test where the machine allows it (root), else a write hook raising the same OSError.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from cellfeatures.cli import app
from cellfeatures.errors import ConfigError, IncompleteFetchError, SourceError, TableNotFoundError
from cellfeatures.sources.cave.snapshotter import fetch_tables
from cellfeatures.store.store import FeatureStore
from tests.cave_server.server import CaveTestServer, ServerConfig
from tests.reliability.conftest import config_text

pytestmark = pytest.mark.fault


@pytest.fixture(autouse=True)
def _token(cave_token: str) -> None:
    """Every test here talks to the local CAVE server with its token."""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3,000-row reference table with sparse ids."""
    root = tmp_path_factory.mktemp("served")
    n = 3_000
    ids = np.sort(np.random.default_rng(1).choice(np.arange(1, 10 * n), n, replace=False))
    pl.DataFrame(
        {
            "id": ids,
            "valid": [True] * n,
            "target_id": np.arange(1000, 1000 + n),
            "cell_type": ["23P", "BC", "4P"] * (n // 3),
            "pt_root_id": np.arange(n) + 864691135000000000,
            "pt_position_x": np.arange(n) * 1.0,
            "pt_position_y": np.arange(n) * 2.0,
            "pt_position_z": np.arange(n) * 3.0,
        }
    ).write_parquet(root / "types.parquet")
    pl.DataFrame({"id": [1], "valid": [True], "target_id": [5], "cell_type": ["BC"]}).head(0).write_parquet(
        root / "empty_types.parquet"
    )
    return root


def cfg(server: CaveTestServer, **extra: object) -> dict:
    return {"kind": "cave", "server": server.url, "version": 1300, "row_limit": 5000, "backoff_s": 0.01, **extra}


def complete(path: Path, served: Path, table: str = "types") -> None:
    got = pl.read_parquet(path / f"{table}.parquet")
    expected = pl.read_parquet(served / f"{table}.parquet")
    assert got.select(expected.columns).equals(expected)


# ------------------------------------------------------------------ server faults


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_a_failing_server_is_retried_to_completion(served: Path, tmp_path: Path, status: int) -> None:
    retry_after = 1 if status == 429 else None  # whole seconds: urllib3 refuses fractions
    limit = 2500 if status == 429 else 400  # fewer queries where each failure waits a second
    config = ServerConfig(snapshot=served, row_limit=limit, fail_every=3, fail_status=status, retry_after_s=retry_after)
    with CaveTestServer(config) as server:
        path, _reports, _fetcher = fetch_tables(cfg(server, row_limit=limit), ["types"], out=tmp_path / "snap")
        assert any(r.status == status for r in server.requests)
    complete(path, served)


def test_retry_after_is_honoured(served: Path, tmp_path: Path) -> None:
    config = ServerConfig(snapshot=served, fail_every=2, fail_status=429, retry_after_s=1)
    with CaveTestServer(config) as server:
        t0 = time.perf_counter()
        fetch_tables(cfg(server, backoff_s=0.0), ["types"], out=tmp_path / "snap")
        failures = sum(r.status == 429 for r in server.requests)
    assert failures >= 1 and time.perf_counter() - t0 >= 1.0 * failures


@pytest.mark.parametrize("cap", [50, 120, 333, 1000])
def test_a_cap_below_the_config_is_learned_from_the_warning(served: Path, tmp_path: Path, cap: int) -> None:
    with CaveTestServer(ServerConfig(snapshot=served, row_limit=cap)) as server:
        path, reports, fetcher = fetch_tables(cfg(server), ["types"], out=tmp_path / "snap")
        capped = server.capped_responses
    complete(path, served)
    assert fetcher.learned_row_cap == cap == reports[0].row_cap
    assert capped <= 3, f"after learning the cap, chunks are planned under it ({capped} capped answers)"


@pytest.mark.parametrize("cap", [100, 1000])
def test_a_silent_cap_is_learned_from_the_short_answer(served: Path, tmp_path: Path, cap: int) -> None:
    with CaveTestServer(ServerConfig(snapshot=served, row_limit=cap, announce_cap=False)) as server:
        path, _reports, fetcher = fetch_tables(cfg(server), ["types"], out=tmp_path / "snap")
    complete(path, served)
    assert fetcher.learned_row_cap == cap


def test_a_server_returning_fewer_rows_than_its_count_fails_and_writes_nothing(served: Path, tmp_path: Path) -> None:
    with (
        CaveTestServer(ServerConfig(snapshot=served, drop_rows=1)) as server,
        pytest.raises(IncompleteFetchError, match="inconsistent"),
    ):
        fetch_tables(cfg(server), ["types"], out=tmp_path / "snap")
    assert not (tmp_path / "snap" / "types.parquet").exists()


def test_a_slow_server_still_completes(served: Path, tmp_path: Path) -> None:
    with CaveTestServer(ServerConfig(snapshot=served, row_limit=1500, delay_s=0.05)) as server:
        path, _r, _f = fetch_tables(cfg(server, row_limit=1500), ["types"], out=tmp_path / "snap")
    complete(path, served)


def test_a_resumed_fetch_plans_with_the_learned_cap(served: Path, tmp_path: Path) -> None:
    class Stop(Exception):
        pass

    def stop_after_two(table: str, done: int, total: int) -> None:
        if done == 2:
            raise Stop

    with CaveTestServer(ServerConfig(snapshot=served, row_limit=200)) as server:
        with pytest.raises(Stop):  # the config plans ~800-row chunks; the server caps at 200
            fetch_tables(cfg(server, row_limit=1000), ["types"], out=tmp_path / "snap", progress=stop_after_two)
        state = json.loads((tmp_path / "snap" / "_fetch" / "types.json").read_text())
        assert state["learned_row_cap"] == 200
        before = server.capped_responses
        path, _reports, fetcher = fetch_tables(cfg(server, row_limit=1000), ["types"], out=tmp_path / "snap")
        assert server.capped_responses == before, "the resumed fetch planned under the saved cap"
    complete(path, served)
    assert fetcher.learned_row_cap == 200


def test_a_server_that_dies_and_comes_back_mid_fetch(served: Path, tmp_path: Path) -> None:
    server = CaveTestServer(ServerConfig(snapshot=served, row_limit=300)).start()
    port = int(server.url.rsplit(":", 1)[1])

    def bounce(table: str, done: int, total: int) -> None:
        if done == 3 and server._server is not None:
            server.stop()

            def restart() -> None:
                time.sleep(0.4)
                from werkzeug.serving import make_server

                server._server = make_server("127.0.0.1", port, server.app, threaded=True)
                threading.Thread(target=server._server.serve_forever, daemon=True).start()

            threading.Thread(target=restart, daemon=True).start()

    try:
        path, _r, _f = fetch_tables(
            cfg(server, row_limit=300, backoff_s=0.1), ["types"], out=tmp_path / "snap", progress=bounce
        )
    finally:
        server.stop()
    complete(path, served)


def test_an_unknown_table_is_refused_before_anything_is_downloaded(served: Path, tmp_path: Path) -> None:
    with CaveTestServer(ServerConfig(snapshot=served)) as server:
        with pytest.raises(TableNotFoundError, match="no table 'typse' \\(did you mean 'types'\\?\\)"):
            fetch_tables(cfg(server), ["types", "typse"], out=tmp_path / "snap")
        assert not server.queries("query"), "no data query was sent"
    assert not (tmp_path / "snap" / "types.parquet").exists()


def test_an_unknown_version_names_the_available_ones(served: Path, tmp_path: Path) -> None:
    with CaveTestServer(ServerConfig(snapshot=served)) as server, pytest.raises(ConfigError, match="available: 1300"):
        fetch_tables(cfg(server, version=99), ["types"], out=tmp_path / "snap")


def test_no_token_at_all_says_how_to_set_cave_token(
    served: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CAVE_TOKEN")
    monkeypatch.setenv("HOME", str(tmp_path))  # no caveclient secret file either
    with CaveTestServer(ServerConfig(snapshot=served)) as server, pytest.raises(SourceError, match="CAVE_TOKEN"):
        fetch_tables(cfg(server), ["types"], out=tmp_path / "snap")


def test_an_empty_table_is_fetched_with_its_columns(served: Path, tmp_path: Path) -> None:
    with CaveTestServer(ServerConfig(snapshot=served)) as server:
        path, _r, _f = fetch_tables(cfg(server), ["empty_types"], out=tmp_path / "snap")
    frame = pl.read_parquet(path / "empty_types.parquet")
    assert frame.height == 0 and {"id", "target_id", "cell_type"} <= set(frame.columns)


def test_the_cli_keeps_caveclients_warnings_off_the_terminal(served: Path, tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[source]\nkind = "cave"\nrow_limit = 5000\n[features.nucleus]\ndepth_method = "y_offset"\n')
    with CaveTestServer(ServerConfig(snapshot=served, row_limit=250)) as server:
        args = ["fetch", "--config", str(config), "--version", "1300", "--server", server.url]
        result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "out"), "--tables", "types"])
    assert result.exit_code == 0, result.output
    assert "Limited query" not in result.output
    assert "the server caps queries at 250 rows" in result.output


# ------------------------------------------------------------------ processes killed, raced


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "cellfeatures.cli", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}


def _spawn_build(config: Path, store: Path) -> subprocess.Popen[str]:
    """`cellfeatures build` in its own process (output captured, to show when it fails)."""
    return subprocess.Popen(
        _cli("build", "--config", str(config), "--store", str(store)),
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.fixture
def small_config(base_snapshot: Path, tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(config_text(base_snapshot))
    return path


@pytest.mark.parametrize("after_s", [1.0, 2.0, 3.0])
def test_a_build_killed_at_any_point_leaves_only_complete_versions(
    small_config: Path, tmp_path: Path, after_s: float
) -> None:
    store = tmp_path / "features"
    proc = subprocess.Popen(
        _cli("build", "--config", str(small_config), "--store", str(store)),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(after_s)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    fs = FeatureStore(store)
    listed = fs.list()
    assert all(fs.verify(r["version"]) == [] for r in listed), "only complete versions are listed"
    rerun = CliRunner().invoke(app, ["build", "--config", str(small_config), "--store", str(store)])
    assert rerun.exit_code == 0, rerun.output
    clean = FeatureStore(tmp_path / "clean")
    CliRunner().invoke(app, ["build", "--config", str(small_config), "--store", str(clean.root)])
    assert [r["version"] for r in fs.list()] == [r["version"] for r in clean.list()], "the rerun gives the same id"
    assert not list(store.glob(".building-*")), "the killed build's temporary directory was removed"


def test_two_builds_of_one_config_at_once_publish_one_version(small_config: Path, tmp_path: Path) -> None:
    store = tmp_path / "features"
    procs = [_spawn_build(small_config, store) for _ in range(2)]
    outputs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert len(FeatureStore(store).list()) == 1
    assert not list(store.glob(".building-*"))


def test_two_configs_built_at_once_publish_two_versions(base_snapshot: Path, tmp_path: Path) -> None:
    store = tmp_path / "features"
    configs = []
    for i, method in enumerate(("y_offset", "standard_transform")):
        path = tmp_path / f"c{i}.toml"
        path.write_text(config_text(base_snapshot).replace('depth_method = "y_offset"', f'depth_method = "{method}"'))
        configs.append(path)
    procs = [_spawn_build(c, store) for c in configs]
    outputs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert len(FeatureStore(store).list()) == 2


# ------------------------------------------------------------------ disks


@contextlib.contextmanager
def tmpfs(path: Path, options: str) -> Iterator[bool]:
    """Mount a small tmpfs at path when the machine allows it; yields False when it could not."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = (
        os.geteuid() == 0
        and shutil.which("mount") is not None
        and subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True).returncode
        == 0
    )
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _fail_writes_under(monkeypatch: pytest.MonkeyPatch, root: Path, code: int) -> None:
    """The write hook: every Parquet write under root raises the OSError a real disk would."""
    original = pl.DataFrame.write_parquet

    def write(self: pl.DataFrame, file: object, *args: object, **kwargs: object) -> object:
        if str(file).startswith(str(root)):
            raise OSError(code, os.strerror(code), str(file))
        return original(self, file, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pl.DataFrame, "write_parquet", write)
    monkeypatch.setattr(pl.LazyFrame, "sink_parquet", lambda self, path, *a, **k: write(pl.DataFrame(), path))


def test_a_full_disk_is_said_and_leaves_nothing_half_written(
    small_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "full"
    with tmpfs(store, "size=12k") as mounted:
        if not mounted:
            _fail_writes_under(monkeypatch, store, errno.ENOSPC)
        result = CliRunner().invoke(app, ["build", "--config", str(small_config), "--store", str(store)])
        assert result.exit_code == 2, result.output
        assert "no space left on the device" in result.output
        assert not [p for p in store.iterdir()], f"left behind: {list(store.iterdir())}"


def test_a_read_only_store_is_said(small_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "ro"
    with tmpfs(store, "ro,size=64k") as mounted:
        if not mounted:
            _fail_writes_under(monkeypatch, store, errno.EROFS)
        result = CliRunner().invoke(app, ["build", "--config", str(small_config), "--store", str(store)])
        assert result.exit_code == 2, result.output
        assert "read-only" in result.output.lower() or "permission denied" in result.output


def test_an_export_to_a_full_disk_leaves_no_truncated_file(
    small_config: Path, base_snapshot: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    store = tmp_path / "features"
    assert runner.invoke(app, ["build", "--config", str(small_config), "--store", str(store)]).exit_code == 0
    text = small_config.read_text() + (
        '\n[dataset.cells]\nlabel = "metamodel"\nlevel = "class"\nfilters = []\norigins = ["real"]\n'
        'exclude = ["syn_*"]\n'
        '[dataset.cells.split]\nstrategy = "stratified"\nfolds = 3\n[datasets]\nroot = "' + str(tmp_path / "ds") + '"\n'
    )
    small_config.write_text(text)
    made = runner.invoke(app, ["dataset", "cells", "--config", str(small_config), "--store", str(store)])
    assert made.exit_code == 0, made.output
    out = tmp_path / "small"
    with tmpfs(out, "size=8k") as mounted:
        if not mounted:
            pytest.skip("no tmpfs here (not root): the write hook cannot fake a partial CSV write")
        result = runner.invoke(
            app,
            ["export", "cells", "--format", "csv", "--out", str(out / "cells.csv"), "--datasets", str(tmp_path / "ds")],
        )
        assert result.exit_code == 2, result.output
        assert "no space left" in result.output
        assert not list(out.iterdir()), "no truncated file"


# ------------------------------------------------------------------ a damaged store


@pytest.fixture
def built_store(small_config: Path, tmp_path: Path) -> FeatureStore:
    store = FeatureStore(tmp_path / "features")
    assert CliRunner().invoke(app, ["build", "--config", str(small_config), "--store", str(store.root)]).exit_code == 0
    return store


@pytest.mark.parametrize(
    "damage",
    ["stray manifest not JSON", "manifest without version", "manifest version pointing outside", "empty directory"],
)
def test_a_damaged_neighbour_never_hides_the_sound_versions(built_store: FeatureStore, damage: str) -> None:
    stray = built_store.root / "0000stray"
    stray.mkdir()
    text = {
        "stray manifest not JSON": "{not json",
        "manifest without version": json.dumps({"built_at": "x"}),
        "manifest version pointing outside": json.dumps(
            {
                "version": "../../etc",
                "built_at": "2020",
                "config": {},
                "source": {},
                "features": {},
                "rows": 1,
                "families": {},
            }
        ),
        "empty directory": None,
    }[damage]
    if text is not None:
        (stray / "manifest.json").write_text(text)
    runner = CliRunner()
    listed = runner.invoke(app, ["list", "--store", str(built_store.root)])
    assert listed.exit_code == 0 and "reliability" in listed.output
    assert "0000stray" in listed.output, "the damaged directory is named"
    assert runner.invoke(app, ["show", "latest", "--store", str(built_store.root)]).exit_code == 0
    verified = runner.invoke(app, ["verify", "--store", str(built_store.root)])
    assert verified.exit_code == 1 and "DAMAGED" in verified.output


@pytest.mark.parametrize("damage", ["deleted", "truncated", "edited"])
def test_a_damaged_matrix_is_noticed_not_trained_on(built_store: FeatureStore, small_config: Path, damage: str) -> None:
    version = built_store.list()[0]["version"]
    matrix = built_store.root / version / "features.parquet"
    if damage == "deleted":
        matrix.unlink()
    elif damage == "truncated":
        matrix.write_bytes(matrix.read_bytes()[:1000])
    else:
        frame = pl.read_parquet(matrix)
        frame.with_columns(pl.col("soma_depth_um") + 1.0).write_parquet(matrix)
    runner = CliRunner()
    verified = runner.invoke(app, ["verify", "--store", str(built_store.root)])
    assert verified.exit_code == 1 and "DAMAGED" in verified.output
    again = runner.invoke(app, ["build", "--config", str(small_config), "--store", str(built_store.root)])
    assert again.exit_code == 2, "never 'already built' over a damaged version"
    if damage != "deleted":  # a deleted matrix hides the version from list; a damaged one is refused on load
        with pytest.raises(Exception, match="damaged"):
            built_store.load(version)


@pytest.mark.corruption
def test_a_fetched_table_edited_afterwards_is_refused_by_its_checksum(served: Path, tmp_path: Path) -> None:
    from cellfeatures.sources.snapshot import SnapshotSource

    with CaveTestServer(ServerConfig(snapshot=served)) as server:
        path, _r, _f = fetch_tables(cfg(server), ["types"], out=tmp_path / "snap")
    assert SnapshotSource(path).fingerprint()["tables"]["types"]["rows"] == 3_000
    frame = pl.read_parquet(path / "types.parquet")
    frame.with_columns(pl.col("cell_type").replace({"BC": "4P"})).write_parquet(path / "types.parquet")
    with pytest.raises(SourceError, match="does not match the SHA-256"):
        SnapshotSource(path).fingerprint()
