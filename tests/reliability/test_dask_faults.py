"""The Dask engine against real processes and wrong addresses: every failure is one clear line, in seconds,
and leaves nothing in scratch."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cellfeatures.config.model import load_config
from cellfeatures.errors import ExecutionError
from cellfeatures.store.store import FeatureStore

pytest.importorskip("distributed")

SYNAPSES = """
[features.synapses]
synapse_table = "synapses_pni_2"
target_table = "synapse_target_predictions_ssa"
partner_label_table = "aibs_metamodel_celltypes_v661"
engine = "bucketed"
range_rows = 100000
buckets = 4
"""


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cellfeatures.sources.synthetic.cells import SyntheticSpec
    from cellfeatures.sources.synthetic.snapshot import write_synthetic_snapshot

    out = tmp_path_factory.mktemp("dask-faults") / "snap"
    return write_synthetic_snapshot(SyntheticSpec(n_cells=800, n_synapses=600_000, seed=4, chunk_rows=200_000), out)


def _build(tmp: Path, snapshot: Path, execution: str, tick=None, synapses: str = SYNAPSES) -> object:
    tmp.mkdir(parents=True, exist_ok=True)
    config = tmp / f"c{time.time_ns()}.toml"
    config.write_text(f'[source]\nkind = "snapshot"\npath = "{snapshot}"\n{synapses}\n{execution}\n')
    return FeatureStore(tmp / "features").build(load_config(config), tick=tick)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.fault
def test_an_address_that_answers_http_is_named_not_a_memory_error(snapshot: Path, tmp_path: Path) -> None:
    class Hello(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    address = f"tcp://127.0.0.1:{server.server_address[1]}"
    started = time.perf_counter()
    try:
        with pytest.raises(ExecutionError, match=f"at {address}") as err:
            _build(tmp_path, snapshot, f'[execution]\nengine = "dask"\naddress = "{address}"\nconnect_timeout_s = 1\n')
    finally:
        server.shutdown()
    assert time.perf_counter() - started < 30
    message = str(err.value)
    assert "talk to a Dask scheduler" in message or "does not speak the scheduler's protocol" in message, message


@pytest.mark.fault
def test_a_port_that_accepts_and_never_answers_fails_within_the_timeout(snapshot: Path, tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # accepts (the kernel completes the handshake) and never says a word: like a dashboard
    address = f"tcp://127.0.0.1:{listener.getsockname()[1]}"
    started = time.perf_counter()
    try:
        with pytest.raises(ExecutionError, match=f"at {address}"):
            _build(tmp_path, snapshot, f'[execution]\nengine = "dask"\naddress = "{address}"\nconnect_timeout_s = 1\n')
    finally:
        listener.close()
    assert time.perf_counter() - started < 20, "bounded by connect_timeout_s, not 10 minutes"


@pytest.mark.fault
def test_each_worker_that_cannot_write_scratch_is_named(snapshot: Path, tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file where the scratch folder should be")
    execution = '[execution]\nengine = "dask"\ncluster = "local"\nworkers = 2\nthreads = 1\n'
    execution += f'scratch = "{tmp_path / "blocker" / "scratch"}"\n'
    with pytest.raises(ExecutionError, match=r"worker tcp://127\.0\.0\.1:\d+ on .* cannot write .*blocker") as err:
        _build(tmp_path, snapshot, execution)
    assert "and 1 more worker(s)" in str(err.value), "every worker was probed, not one"


@pytest.fixture
def cluster(tmp_path: Path):
    """A scheduler and one worker started with the `dask` command line, as on a real cluster."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    scheduler = subprocess.Popen(
        [*dask, "--host", "127.0.0.1", "--port", str(port), "--dashboard-address", ":0", "--no-show"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nworkers", "1", "--nthreads", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    from distributed import Client

    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with Client(address, timeout="2s") as client:
                if client.scheduler_info()["workers"]:
                    break
        except OSError:
            pass
        time.sleep(0.5)
    yield address, scheduler
    for proc in (worker, scheduler):
        proc.kill()
        proc.wait()


@pytest.mark.fault
def test_a_scheduler_killed_mid_build_is_one_clear_error_and_leaves_no_range_files(
    snapshot: Path, tmp_path: Path, cluster: tuple[str, subprocess.Popen]
) -> None:
    address, scheduler = cluster
    scratch = tmp_path / "scratch"
    execution = f'[execution]\nengine = "dask"\naddress = "{address}"\nconnect_timeout_s = 5\nscratch = "{scratch}"\n'

    def kill_scheduler(phase: str, done: int, total: int) -> None:
        if phase == "synapse ranges" and done == 1:
            scheduler.kill()

    with pytest.raises(ExecutionError, match=f"lost the Dask scheduler at {address} during synapse ranges"):
        _build(tmp_path, snapshot, execution, tick=kill_scheduler)
    time.sleep(3)  # a task still running on the worker finishes: it must see the closed run and write nothing
    leftovers = [p for p in scratch.rglob("*") if p.is_file() and not p.name.endswith(".closed")]
    assert leftovers == [], leftovers
    assert not (tmp_path / "features").exists() or not [
        p for p in (tmp_path / "features").iterdir() if not p.name.startswith(".")
    ]


@pytest.mark.corruption
def test_execution_settings_do_not_change_the_version_id(snapshot: Path, tmp_path: Path) -> None:
    a = _build(tmp_path / "a", snapshot, "")
    other = SYNAPSES.replace("range_rows = 100000", "range_rows = 50000").replace("buckets = 4", "buckets = 7")
    b = _build(tmp_path / "b", snapshot, "", synapses=other.replace('engine = "bucketed"', 'engine = "lazy"'))
    assert a.id == b.id  # type: ignore[attr-defined]
    assert a.load().equals(b.load())  # type: ignore[attr-defined]
