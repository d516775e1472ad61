"""The Dask engine: the same matrix as the local engine, bit for bit, also when workers die; clear
errors before any work when the scheduler or the scratch location cannot be used."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from cellfeatures.config.model import load_config
from cellfeatures.errors import ConfigError, ExecutionError
from cellfeatures.pipelines.execution import ExecutionSpec
from cellfeatures.store.store import FeatureStore

pytest.importorskip("distributed")

SYNAPSES = """
[features.synapses]
synapse_table = "synapses_pni_2"
target_table = "synapse_target_predictions_ssa"
partner_label_table = "aibs_metamodel_celltypes_v661"
engine = "bucketed"
range_rows = 250000
buckets = 8
"""


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~2M synapses with tags and partner labels (written in parts, like a CAVE export)."""
    from cellfeatures.sources.synthetic.cells import SyntheticSpec
    from cellfeatures.sources.synthetic.snapshot import write_synthetic_snapshot

    out = tmp_path_factory.mktemp("dask") / "snap"
    return write_synthetic_snapshot(SyntheticSpec(n_cells=3000, n_synapses=2_000_000, seed=3, chunk_rows=500_000), out)


def _config(tmp: Path, snapshot: Path, execution: str = "") -> Path:
    path = tmp / f"c{time.time_ns()}.toml"
    path.write_text(f'[source]\nkind = "snapshot"\npath = "{snapshot}"\n{SYNAPSES}\n{execution}\n')
    return path


LOCAL_CLUSTER = '[execution]\nengine = "dask"\ncluster = "local"\nworkers = 2\nthreads = 1\n'


@pytest.fixture(scope="module")
def local_matrix(snapshot: Path, tmp_path_factory: pytest.TempPathFactory) -> pl.DataFrame:
    tmp = tmp_path_factory.mktemp("local")
    store = FeatureStore(tmp / "features")
    return store.load(store.build(load_config(_config(tmp, snapshot))).id)


def _dask_build(tmp: Path, snapshot: Path, tick=None, execution: str = LOCAL_CLUSTER) -> tuple[pl.DataFrame, dict]:
    store = FeatureStore(tmp / "features")
    result = store.build(load_config(_config(tmp, snapshot, execution)), tick=tick)
    return store.load(result.id), result.manifest


def test_dask_gives_the_local_matrix_bit_for_bit(snapshot: Path, local_matrix: pl.DataFrame, tmp_path: Path) -> None:
    seen: list[tuple[str, int, int]] = []
    matrix, manifest = _dask_build(tmp_path, snapshot, tick=lambda *t: seen.append(t))
    assert_frame_equal(matrix, local_matrix, check_exact=True)
    execution = manifest["execution"]
    assert execution["engine"] == "dask" and execution["workers"] == 2 and execution["scratch_kind"] == "file"
    buckets = execution["tasks"]["phase2"]["tasks"]
    assert execution["tasks"]["phase1"]["tasks"] == 8 and 4 < buckets <= 8, "at most `buckets` (power-of-two sizes)"
    assert execution["tasks"]["phase1"]["scratch_bytes"] > 0
    assert ("synapse ranges", 8, 8) in seen and ("synapse buckets", buckets, buckets) in seen, "progress per phase"
    assert not list((tmp_path / "features").glob(".building-*")), "scratch is removed after the build"


def _worker_pids() -> list[int]:
    """The live worker processes: a worker killed earlier may linger as a zombie until its nanny reaps it,
    and a process may exit while it is listed (psutil then raises for its command line): both are skipped."""
    import psutil

    pids = []
    for p in psutil.Process().children(recursive=True):
        try:
            command = " ".join(p.cmdline())
        except (psutil.ZombieProcess, psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if "multiprocessing" in command and "resource_tracker" not in command:
            pids.append(p.pid)
    return pids


def test_workers_killed_in_each_phase_change_nothing(
    snapshot: Path, local_matrix: pl.DataFrame, tmp_path: Path
) -> None:
    """SIGKILL one worker process after phase 1's first task and another after phase 2's first: Dask
    reruns what they held on the other worker (the nanny restarts the dead one); the matrix is the same."""
    killed: dict[str, int] = {}

    def kill_one(what: str, done: int, total: int) -> None:
        if done == 1 and what not in killed:
            pids = _worker_pids()
            assert len(pids) >= 2, pids
            victim = pids[len(killed) % len(pids)]
            os.kill(victim, signal.SIGKILL)
            killed[what] = victim

    matrix, _manifest = _dask_build(tmp_path, snapshot, tick=kill_one)
    assert set(killed) == {"synapse ranges", "synapse buckets"}, "a worker was killed in each phase"
    assert_frame_equal(matrix, local_matrix, check_exact=True)


def test_an_unreachable_scheduler_is_named_within_seconds(snapshot: Path, tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    started = time.perf_counter()
    with pytest.raises(ExecutionError, match=f"cannot reach the Dask scheduler at {address}"):
        _dask_build(
            tmp_path,
            snapshot,
            execution=f'[execution]\nengine = "dask"\naddress = "{address}"\nconnect_timeout_s = 2\n',
        )
    assert time.perf_counter() - started < 20
    assert not (tmp_path / "features").exists() or not list((tmp_path / "features").iterdir())


def test_a_scratch_the_workers_cannot_write_is_refused_before_any_work(snapshot: Path, tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file where the scratch folder should be")
    bad = LOCAL_CLUSTER + f'scratch = "{tmp_path / "blocker" / "scratch"}"\n'
    with pytest.raises(ExecutionError, match="is not writable by the Dask workers"):
        _dask_build(tmp_path, snapshot, execution=bad)


def test_a_scratch_the_client_cannot_see_is_refused(snapshot: Path, tmp_path: Path) -> None:
    """memory:// is per process: what a worker writes there, this process cannot read back."""
    with pytest.raises(ExecutionError, match="is not shared"):
        _dask_build(tmp_path, snapshot, execution=LOCAL_CLUSTER + 'scratch = "memory://cellfeatures-scratch"\n')


def test_scratch_is_cleaned_when_the_build_fails(snapshot: Path, tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"

    def interrupt(what: str, done: int, total: int) -> None:
        if what == "synapse buckets":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _dask_build(tmp_path, snapshot, tick=interrupt, execution=LOCAL_CLUSTER + f'scratch = "{scratch}"\n')
    assert not [p for p in scratch.rglob("*") if p.is_file()], "range files are removed on failure"
    assert not (tmp_path / "features").exists() or not [
        p for p in (tmp_path / "features").iterdir() if not p.name.startswith(".")
    ], "nothing was published"


def test_execution_config_is_checked() -> None:
    with pytest.raises(ConfigError, match="engine must be one of"):
        ExecutionSpec.from_config({"engine": "spark"})
    with pytest.raises(ConfigError, match="unexpected keyword"):
        ExecutionSpec.from_config({"engine": "dask", "adress": "tcp://x:1"})
