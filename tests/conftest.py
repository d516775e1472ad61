"""Shared fixtures: an isolated generator cache, hand-built snapshots, the embedded sample."""

from __future__ import annotations

import collections
import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl
import pytest

from cellfeatures.identity import identity_map
from cellfeatures.pipelines.base import BuildContext
from cellfeatures.pipelines.nucleus import load_identity_nucleus
from cellfeatures.sources.snapshot import SnapshotSource

if TYPE_CHECKING:
    from cellfeatures.store.store import FeatureStore

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Generated tables go to a per-session cache, never the user's.

    Under pytest-xdist the workers share one (the run's common temporary folder): one worker generates
    the sample's synthetic tables under a lock while the others wait or compile the kernels, instead of
    each generating its own copy on a busy machine.
    """
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        os.environ["CELLFEATURES_CACHE"] = str(tmp_path_factory.mktemp("cache"))
        return
    from cellfeatures.pipelines import synapse_aggregates
    from cellfeatures.sources.sample import SampleSource

    shared = tmp_path_factory.getbasetemp().parent / "shared-cache"
    shared.mkdir(exist_ok=True)
    os.environ["CELLFEATURES_CACHE"] = str(shared)
    # Three pieces of start-up work, each done once under its own lock while the others find it done: the
    # sample's synthetic tables (~3 s), then numba's two kernel parts (~5 and ~4 s on an empty cache, as in
    # a fresh clone). Each worker starts at a different piece, so on CI the two cores share the ~12 s
    # instead of one waiting for the other.
    pieces = [
        ("sample", SampleSource),  # generates once; the next workers find it published
        *((part, lambda part=part: synapse_aggregates.warm_up((part,))) for part in synapse_aggregates.WARM_UP_PARTS),
    ]
    # worker 0 starts with the sample then the records, worker 1 with the aggregates: both compile at once
    first = -int(os.environ["PYTEST_XDIST_WORKER"].removeprefix("gw") or 0) % len(pieces)
    for name, make in pieces[first:] + pieces[:first]:
        with shared_lock(tmp_path_factory, name):
            make()


@contextlib.contextmanager
def shared_lock(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[None]:
    """Held by one pytest-xdist worker at a time (a file lock in the run's common temporary folder)."""
    import fcntl

    with open(tmp_path_factory.getbasetemp().parent / f"shared-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in an empty working directory, as a new user would (the store and datasets land there)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


CAVE_TOKEN = "test-token-0123456789abcdef"  # the local CAVE server's token (tests/cave_server)


@pytest.fixture
def cave_token(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CAVE_TOKEN", CAVE_TOKEN)
    return CAVE_TOKEN


@pytest.fixture(scope="session")
def sample_source() -> SnapshotSource:
    from cellfeatures.sources.sample import SampleSource

    return SampleSource()


def write_snapshot(root: Path, tables: dict[str, pl.DataFrame], manifest: dict | None = None) -> SnapshotSource:
    """A real SnapshotSource over hand-built tables written as Parquet."""
    import json

    root.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        frame.write_parquet(root / f"{name}.parquet")
    if manifest is not None:
        (root / "manifest.json").write_text(json.dumps(manifest))
    return SnapshotSource(root)


def context(source: SnapshotSource, nucleus_table: str = "nucleus_detection_v0") -> BuildContext:
    return BuildContext(source=source, identity=identity_map(load_identity_nucleus(source, nucleus_table)))


def nucleus_frame(rows: list[tuple[int, int, float, float, float]], volume: float = 250.0) -> pl.DataFrame:
    """(nucleus_id, root_id, x_vx, y_vx, z_vx) -> a nucleus_detection_v0 wire table."""
    return pl.DataFrame(
        {
            "id": [r[0] for r in rows],
            "valid": [True] * len(rows),
            "volume": [volume] * len(rows),
            "pt_root_id": [r[1] for r in rows],
            "pt_position_x": [r[2] for r in rows],
            "pt_position_y": [r[3] for r in rows],
            "pt_position_z": [r[4] for r in rows],
        },
        schema_overrides={"id": pl.Int64, "pt_root_id": pl.Int64},
    )


def cell_type_frame(rows: list[tuple[int, str]]) -> pl.DataFrame:
    """(nucleus_id, cell_type) -> a reference cell-type table."""
    return pl.DataFrame(
        {
            "id": list(range(1, len(rows) + 1)),
            "valid": [True] * len(rows),
            "target_id": [r[0] for r in rows],
            "classification_system": ["x"] * len(rows),
            "cell_type": [r[1] for r in rows],
            "pt_root_id": [0] * len(rows),
        }
    )


@pytest.fixture
def snapshot(tmp_path: Path) -> Callable[..., SnapshotSource]:
    counter = iter(range(10_000))

    def make(tables: dict[str, pl.DataFrame], manifest: dict | None = None) -> SnapshotSource:
        return write_snapshot(tmp_path / f"snap{next(counter)}", tables, manifest)

    return make


@pytest.fixture(scope="session")
def sample_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project folder as a user has it after a first session: configs/sample.toml, the sample's
    feature version, the column_types dataset and a one-seed baseline report (with REPORT.html).

    Shared (read-only: tests that change it copy it first) by the notebook API, HTML report, browser
    and reliability tests; ~9 s to make once. Under pytest-xdist the workers share one, made by the
    first worker that asks while the others wait.
    """
    return made_once(tmp_path_factory, "sample-project", _make_sample_project)


def made_once(tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], object]) -> Path:
    """A folder filled by `make` once per test session: under pytest-xdist the first worker that asks makes
    it under a lock while the others wait, then every worker finds it complete."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        made = tmp_path_factory.mktemp(name)
        make(made)
        return made
    shared = tmp_path_factory.getbasetemp().parent / f"shared-{name}"
    with shared_lock(tmp_path_factory, name):
        if not (shared / ".complete").exists():
            shutil.rmtree(shared, ignore_errors=True)
            shared.mkdir()
            make(shared)
            (shared / ".complete").touch()
    return shared


def copy_made_once(tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], object]) -> Path:
    """This worker's own copy of a `made_once` folder, for a module fixture whose tests change it.

    Under work stealing a module's tests may run in both workers, and a module fixture was then made in
    each (a baseline report: 5-9 s); the copy takes a fraction of a second."""
    copy = tmp_path_factory.mktemp(name)
    shutil.copytree(made_once(tmp_path_factory, name, make), copy, dirs_exist_ok=True)
    (copy / ".complete").unlink(missing_ok=True)
    return copy


def _make_sample_project(root: Path) -> Path:
    from cellfeatures.config.model import load_config, packaged_config_path
    from cellfeatures.datasets.build import build_dataset
    from cellfeatures.datasets.spec import spec_from_config
    from cellfeatures.store.store import FeatureStore
    from cellfeatures.workflows import baseline_report

    (root / "configs").mkdir()
    (root / "configs" / "sample.toml").write_text(packaged_config_path("sample").read_text())
    (root / "examples").mkdir()
    cfg = load_config(root / "configs" / "sample.toml")
    store = FeatureStore(config=cfg)
    version = store.build().id
    ds = build_dataset(store, spec_from_config(cfg, "column_types", {"feature_version": version}))
    baseline_report(store, ds, seeds=(0,), models=("majority", "logistic_regression"))
    return root


def copy_sample_features(sample_project: Path, store_root: Path) -> FeatureStore:
    """A store at `store_root` holding the sample's built feature version, copied from the session's sample
    project; building the sample's config there is checked to be a no-op.

    For tests whose subject is not the feature build: a build of the sample takes 1.3-5 s on a busy
    machine, a copy 0.05 s. The build itself is tested from an empty store by tests/test_store.py, the
    `build` and `run` CLI tests."""
    from cellfeatures.config.model import default_config
    from cellfeatures.store.store import FeatureStore

    shutil.copytree(sample_project / "features", store_root, dirs_exist_ok=True)
    store = FeatureStore(store_root)
    assert not store.build(default_config()).created, "the copied version is the sample's"
    return store


@pytest.fixture
def sample_features_in_tmp(in_tmp: Path, sample_project: Path) -> Path:
    """An empty working directory (as `in_tmp`) whose ./features already holds the sample's version."""
    copy_sample_features(sample_project, in_tmp / "features")
    return in_tmp


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto` (pyproject's addopts): one worker per core this process may use (`os.sched_getaffinity`,
    not the machine's count: a CI job pinned to 2 of 64 cores gets 2), at most 8."""
    return max(1, min(8, len(os.sched_getaffinity(0))))


# ------------------------------------------------------------------ the reliability suite's count
# Here, not in tests/reliability/conftest.py: under pytest-xdist only the controller prints the summary,
# and it loads the root conftest only; it hears every worker's reports.

_OUTCOMES: collections.Counter[tuple[str, str]] = collections.Counter()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "corruption: a bad-input case of the reliability suite")
    config.addinivalue_line("markers", "fault: a fault-injection case of the reliability suite")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when != "call" and not (report.when == "setup" and report.outcome != "passed"):
        return
    kind = next((k for k in ("corruption", "fault") if k in report.keywords), None)  # one kind per case
    if kind is not None:
        _OUTCOMES[(kind, report.outcome)] += 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _OUTCOMES:
        return
    parts = []
    for kind in ("corruption", "fault"):
        total = sum(n for (k, _o), n in _OUTCOMES.items() if k == kind)
        parts.append(f"{_OUTCOMES[(kind, 'passed')]} of {total} {kind} cases passed")
    terminalreporter.write_line("reliability: " + ", ".join(parts))


# ------------------------------------------------------------------ longest files first
# pytest-xdist's worksteal hands each worker half of this order and lets an idle one take tests from the
# other's tail: the long files go first, so no long test is left for the end. Measured per-file totals
# (benchmarks/README.md, "The test suite"), longest first; every other file keeps its place after them.
LONGEST_FIRST = (
    "test_cli.py",
    "reliability/test_faults.py",
    "reliability/test_nothing_silent.py",
    "sources/static/test_fetch.py",
    "reliability/test_bad_tables.py",
    "test_baselines.py",
    "test_execution.py",
    "reliability/test_dask_faults.py",
    "sources/test_cave.py",
    "test_scoring.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent

    def rank(item: pytest.Item) -> int:
        relative = item.path.relative_to(here).as_posix() if item.path.is_relative_to(here) else ""
        return LONGEST_FIRST.index(relative) if relative in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within a file, and of the other files, is kept
