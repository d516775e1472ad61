"""Shared fixtures: an isolated generator cache, hand-built snapshots, the embedded sample."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from cellfeatures.identity import identity_map
from cellfeatures.pipelines.base import BuildContext
from cellfeatures.pipelines.nucleus import load_identity_nucleus
from cellfeatures.sources.snapshot import SnapshotSource

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Generated tables go to a per-session cache, never the user's."""
    os.environ["CELLFEATURES_CACHE"] = str(tmp_path_factory.mktemp("cache"))


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

    Shared (read-only) by the notebook API, HTML report and browser tests; ~30 s to make once.
    """
    from cellfeatures.config.model import load_config, packaged_config_path
    from cellfeatures.datasets.build import build_dataset
    from cellfeatures.datasets.spec import DatasetSpec
    from cellfeatures.store.store import FeatureStore
    from cellfeatures.workflows import baseline_report

    root = tmp_path_factory.mktemp("project")
    (root / "configs").mkdir()
    (root / "configs" / "sample.toml").write_text(packaged_config_path("sample").read_text())
    (root / "examples").mkdir()
    cfg = load_config(root / "configs" / "sample.toml")
    store = FeatureStore(config=cfg)
    version = store.build().id
    ds = build_dataset(store, DatasetSpec("column_types", feature_version=version))
    baseline_report(store, ds, seeds=(0,), models=("majority", "logistic_regression"))
    return root
