"""Fetching a pinned CAVE version into a local snapshot: planned chunks, resumable, proven complete.

Uses a CaveFetcher (client.py) for every request; writes only into the snapshot directory."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from cellfeatures._util.checksums import file_sha256
from cellfeatures.errors import ConfigError, IncompleteFetchError
from cellfeatures.sources.cave.client import DEFAULT_ROW_LIMIT, DEFAULT_SERVER, CaveFetcher, Progress
from cellfeatures.sources.cave.fetch_model import FetchReport, TableFetch


def _chunk_key(chunk: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(chunk["filters"], sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Snapshotter:
    """Writes fetched tables into a snapshot directory, resumably."""

    fetcher: CaveFetcher
    out: Path
    progress: Progress | None = None
    reports: list[FetchReport] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        (self.out / "_fetch").mkdir(parents=True, exist_ok=True)
        self._check_version()

    def _manifest_path(self) -> Path:
        return self.out / "manifest.json"

    def _check_version(self) -> None:
        path = self._manifest_path()
        if path.exists():
            m = json.loads(path.read_text())
            if (m.get("datastack"), m.get("materialization_version")) != (self.fetcher.datastack, self.fetcher.version):
                raise ConfigError(
                    f"{self.out} holds {m.get('datastack')} v{m.get('materialization_version')}, not "
                    f"{self.fetcher.datastack} v{self.fetcher.version}: use another --out directory"
                )

    def _write_manifest(self, table: str, entry: dict[str, Any]) -> None:
        path = self._manifest_path()
        m = (
            json.loads(path.read_text())
            if path.exists()
            else {
                "datastack": self.fetcher.datastack,
                "materialization_version": self.fetcher.version,
                "timestamp": self.fetcher.timestamp.strftime("%Y-%m-%dT%H:%M:%S.%f"),
                "position_resolution_nm": list(self.fetcher.resolution),
                "server": self.fetcher.server,
                "tables": {},
            }
        )
        m["tables"][table] = entry
        _write_json(path, m, indent=2)

    def is_complete(self, table: str) -> bool:
        path = self._manifest_path()
        return (
            (self.out / f"{table}.parquet").exists()
            and path.exists()
            and table in json.loads(path.read_text()).get("tables", {})
        )

    def table_values(self, table: str, column: str) -> list[int]:
        return (
            pl.scan_parquet(self.out / f"{table}.parquet").select(pl.col(column).unique()).collect()[column].to_list()
        )

    def cell_roots(self, cells_from: str, nucleus_table: str) -> list[int]:
        """Roots (this version) of the nuclei a label table lists; fetches both tables if needed."""
        for table in (cells_from, nucleus_table):
            self.fetch(TableFetch(table))
        targets = pl.read_parquet(self.out / f"{cells_from}.parquet", columns=["target_id"])
        nuclei = pl.read_parquet(self.out / f"{nucleus_table}.parquet", columns=["id", "pt_root_id"])
        roots = nuclei.join(targets.unique(), left_on="id", right_on="target_id")["pt_root_id"]
        return sorted(r for r in roots.unique().to_list() if r)

    def plan(self, spec: TableFetch, nucleus_table: str) -> tuple[int, list[dict[str, Any]]]:
        f = self.fetcher
        if spec.mode == "all":
            return f.plan_all(spec.table)
        if spec.mode == "cells":
            roots = self.cell_roots(spec.cells_from, nucleus_table)
            total, chunks = 0, list[dict[str, Any]]()
            for column in ("post_pt_root_id", "pre_pt_root_id"):  # inputs, then outputs
                n, c = f.plan_values(spec.table, column, roots)
                total, chunks = total + n, chunks + c
            return total, chunks
        if spec.mode == "values":
            source_table, _, source_column = spec.values_from.partition(".")
            self.fetch(TableFetch(source_table))
            return f.plan_values(spec.table, spec.column, self.table_values(source_table, source_column))
        raise ConfigError(f"fetch mode for {spec.table!r} must be all, cells or values, got {spec.mode!r}")

    def fetch(self, spec: TableFetch, nucleus_table: str = "nucleus_detection_v0") -> FetchReport:
        """Fetch one table into the snapshot; a complete table is not fetched again."""
        t0 = time.perf_counter()
        if self.is_complete(spec.table):
            rows = pl.scan_parquet(self.out / f"{spec.table}.parquet").select(pl.len()).collect().item()
            return FetchReport(spec.table, rows, 0, 0, 0.0)
        state_path = self.out / "_fetch" / f"{spec.table}.json"
        chunk_dir = self.out / "_fetch" / spec.table
        chunk_dir.mkdir(parents=True, exist_ok=True)
        state = json.loads(state_path.read_text()) if state_path.exists() else None
        if state is not None and state.get("learned_row_cap"):
            self.fetcher.learn_cap(int(state["learned_row_cap"]))  # plan a resumed fetch under the known cap
        if state is None or state.get("version") != self.fetcher.version or state.get("spec") != spec.__dict__:
            total, chunks = self.plan(spec, nucleus_table)
            state = {
                "version": self.fetcher.version,
                "spec": spec.__dict__,
                "total": total,
                "chunks": [{**c, "key": _chunk_key(c)} for c in chunks],
                "done": {},
            }
            _write_json(state_path, state)
        downloaded = 0
        for i, chunk in enumerate(state["chunks"]):
            path = chunk_dir / f"{chunk['key']}.parquet"
            done = state["done"].get(chunk["key"])
            if done and path.exists() and file_sha256(path) == done["sha256"]:
                if self.progress:
                    self.progress(spec.table, i + 1, len(state["chunks"]))
                continue
            frame = self.fetcher.fetch_chunk(spec.table, chunk)
            tmp = path.with_suffix(".parquet.tmp")
            frame.write_parquet(tmp)
            os.replace(tmp, path)
            state["done"][chunk["key"]] = {"rows": frame.height, "sha256": file_sha256(path)}
            if self.fetcher.learned_row_cap is not None:
                state["learned_row_cap"] = self.fetcher.learned_row_cap
            _write_json(state_path, state)
            downloaded += 1
            if self.progress:
                self.progress(spec.table, i + 1, len(state["chunks"]))
        rows = self._assemble(spec, state, chunk_dir)
        shutil.rmtree(chunk_dir)
        state_path.unlink()
        report = FetchReport(
            spec.table, rows, len(state["chunks"]), downloaded, time.perf_counter() - t0, self.fetcher.learned_row_cap
        )
        self.reports.append(report)
        return report

    def _assemble(self, spec: TableFetch, state: dict[str, Any], chunk_dir: Path) -> int:
        """Concatenate the chunks, prove completeness, write <table>.parquet atomically."""
        files = [chunk_dir / f"{c['key']}.parquet" for c in state["chunks"]]
        got = sum(state["done"][c["key"]]["rows"] for c in state["chunks"])
        if got != state["total"]:
            raise IncompleteFetchError(f"table {spec.table!r}: chunks hold {got} rows, the count says {state['total']}")
        if files:
            frame = pl.concat([pl.read_parquet(f) for f in files], how="diagonal_relaxed")
        else:  # an empty table still has columns: ask once, so the snapshot holds a readable empty table
            empty = self.fetcher._query(spec.table, {})
            frame = pl.from_pandas(empty) if not isinstance(empty, pl.DataFrame) else empty
            if frame.height:
                raise IncompleteFetchError(f"table {spec.table!r}: counted 0 rows but a query returned {frame.height}")
        if spec.mode == "cells":  # a synapse between two chosen cells is both an input and an output
            frame = frame.unique("id", keep="first")
        elif "id" in frame.columns and not frame["id"].is_unique().all():
            raise IncompleteFetchError(f"table {spec.table!r}: duplicated ids across chunks")
        if "id" in frame.columns:
            frame = frame.sort("id")
        final = self.out / f"{spec.table}.parquet"
        tmp = final.with_suffix(".parquet.tmp")
        frame.write_parquet(tmp, compression="zstd", statistics=True)
        os.replace(tmp, final)
        self._write_manifest(
            spec.table,
            {
                "origin": "real",
                "kind": "cave",
                "rows": frame.height,
                "sha256": file_sha256(final),
                "fetch": spec.__dict__,
                "source": f"CAVE {self.fetcher.datastack} v{self.fetcher.version} ({self.fetcher.server})",
            },
        )
        return frame.height


def _write_json(path: Path, data: dict[str, Any], indent: int | None = None) -> None:
    """Write JSON atomically (a reader never sees half a file)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, default=str, indent=indent) + "\n")
    os.replace(tmp, path)


def fetch_specs(source_cfg: dict[str, Any], tables: Iterable[str]) -> list[TableFetch]:
    """A TableFetch per needed table, from [source.fetch.<table>] blocks (default: mode 'all')."""
    blocks = source_cfg.get("fetch", {})
    specs = []
    for table in tables:
        block = dict(blocks.get(table, {}))
        try:
            specs.append(TableFetch(table=table, **block))
        except TypeError as exc:
            raise ConfigError(f"[source.fetch.{table}]: {exc}") from None
    return specs


def snapshot_dir(source_cfg: dict[str, Any], version: int) -> Path:
    root = Path(source_cfg.get("out") or source_cfg.get("cache_dir") or "cave_snapshots")
    return root / f"{source_cfg.get('datastack', 'minnie65_public')}" / f"v{version}"


def fetcher_from_config(
    source_cfg: dict[str, Any], version: int | None = None, server: str | None = None
) -> CaveFetcher:
    if source_cfg.get("kind") not in (None, "cave"):
        raise ConfigError("cellfeatures fetch needs a config with [source] kind = 'cave'")
    resolution = source_cfg.get("position_resolution_nm", [4, 4, 40])
    return CaveFetcher(
        datastack=source_cfg.get("datastack", "minnie65_public"),
        server=server or source_cfg.get("server", DEFAULT_SERVER),
        version=version if version is not None else source_cfg.get("version"),
        row_limit=int(source_cfg.get("row_limit", DEFAULT_ROW_LIMIT)),
        position_resolution_nm=(float(resolution[0]), float(resolution[1]), float(resolution[2])),
        retries=int(source_cfg.get("retries", 5)),
        backoff_s=float(source_cfg.get("backoff_s", 0.2)),
        batch_size=int(source_cfg.get("batch_size", 500)),
    )


def fetch_tables(
    source_cfg: dict[str, Any],
    tables: Iterable[str],
    *,
    version: int | None = None,
    server: str | None = None,
    out: Path | None = None,
    nucleus_table: str = "nucleus_detection_v0",
    progress: Progress | None = None,
) -> tuple[Path, list[FetchReport], CaveFetcher]:
    """Fetch every listed table of a pinned version into a snapshot directory (resumable)."""
    fetcher = fetcher_from_config(source_cfg, version, server)
    target = Path(out) if out else snapshot_dir(source_cfg, fetcher.version)
    specs = fetch_specs(source_cfg, tables)
    fetcher.check_tables(
        [s.table for s in specs]
        + [s.cells_from for s in specs if s.cells_from]
        + [nucleus_table] * any(s.mode == "cells" for s in specs)
    )
    snap = Snapshotter(fetcher, target, progress)
    order = sorted(specs, key=lambda s: {"all": 0, "cells": 1, "values": 2}.get(s.mode, 3))
    for spec in order:
        snap.fetch(spec, nucleus_table)
    return target, snap.reports, fetcher


class CaveSource:
    """kind = 'cave' in a build config: fetch what the config needs (no-op when complete), then read it."""

    @staticmethod
    def from_config(cfg: dict[str, Any], tables: Iterable[str] = ()) -> Any:
        from cellfeatures.sources.snapshot import SnapshotSource

        needed = sorted(set(tables))
        if not needed:
            raise ConfigError("a cave source needs to know which tables the build reads")
        path, _reports, _fetcher = fetch_tables(cfg, needed)
        return SnapshotSource(path)
