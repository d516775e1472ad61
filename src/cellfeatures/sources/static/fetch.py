"""`[source] kind = "static"`: a version's static exports -> a local snapshot the rest of cellfeatures reads.

For each table: read the sidecar (names and types, checked before any big download), download the data
file over HTTP with resume (or read it in place from a local folder / file:// URL), convert it to Parquet
parts by id range in a hidden folder, publish the folder with one rename, then record the table in the
snapshot's manifest.json (rows, part checksums, the export's URL, size and SHA-256). A table already in
the manifest is not fetched again; an interrupted one leaves only hidden or `_download` files, which the
next fetch resumes from.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import polars as pl

from cellfeatures._util.atomic import remove_stale_builds, write_file_atomically
from cellfeatures._util.checksums import file_sha256
from cellfeatures.errors import ConfigError, SourceError, TableNotFoundError, one_line
from cellfeatures.sources.static.convert import PART_ROWS, ConvertResult, RowFilter, convert_export
from cellfeatures.sources.static.download import (
    HttpClient,
    NotFoundError,
    bucket_listing,
    check_disk_space,
    download,
    no_space_error,
)
from cellfeatures.sources.static.exports import (
    DEFAULT_BASE_URL,
    DEFAULT_DATASTACK,
    ExportColumn,
    export_file_names,
    parse_sidecar,
)

Progress = Callable[[str, int, int | None], None]  # (what, bytes done, bytes total)
# LZ4 Parquet parts take 1.20x the gzip CSV's bytes (measured at 20M and 100M synapse rows, see
# benchmarks/README.md); the download and the parts coexist until the conversion ends.
PARQUET_PER_GZIP_BYTE = 1.25


@dataclass(frozen=True)
class StaticSettings:
    """The [source] block of a static config, checked."""

    version: int
    datastack: str = DEFAULT_DATASTACK
    base_url: str = DEFAULT_BASE_URL
    timestamp: str | None = None
    cache_dir: str = "static_exports"
    out: str | None = None
    keep: str = "all"
    cells_from: str | None = None
    keep_download: bool = False
    part_rows: int = PART_ROWS
    retries: int = 5
    backoff_s: float = 0.5
    timeout_s: float = 60.0
    files: dict[str, str] = field(default_factory=dict)
    position_resolution_nm: tuple[float, float, float] = (4.0, 4.0, 40.0)

    @classmethod
    def from_config(cls, cfg: dict[str, Any], version: int | None = None) -> StaticSettings:
        chosen = version if version is not None else cfg.get("version")
        if chosen is None:
            raise ConfigError(
                '[source] kind = "static" needs `version` (the materialization version whose exports to read, '
                "e.g. version = 1300)"
            )
        if cfg.get("keep", "all") == "cells" and not cfg.get("cells_from"):
            raise ConfigError(
                '[source] keep = "cells" needs `cells_from`: the label table whose cells\' synapses to keep '
                '(e.g. cells_from = "allen_v1_column_types_slanted_ref")'
            )
        datastack = cfg.get("datastack", DEFAULT_DATASTACK)
        if "base_url" not in cfg and datastack != DEFAULT_DATASTACK:
            raise ConfigError(f"[source] base_url is needed for datastack {datastack!r} (the default serves minnie65)")
        res = cfg.get("position_resolution_nm", [4, 4, 40])
        return cls(
            version=int(chosen),
            datastack=datastack,
            base_url=str(cfg.get("base_url", DEFAULT_BASE_URL)).rstrip("/"),
            timestamp=cfg.get("timestamp"),
            cache_dir=cfg.get("cache_dir", "static_exports"),
            out=cfg.get("out"),
            keep=cfg.get("keep", "all"),
            cells_from=cfg.get("cells_from"),
            keep_download=bool(cfg.get("keep_download", False)),
            part_rows=int(cfg.get("part_rows", PART_ROWS)),
            retries=int(cfg.get("retries", 5)),
            backoff_s=float(cfg.get("backoff_s", 0.5)),
            timeout_s=float(cfg.get("timeout_s", 60.0)),
            files=dict(cfg.get("files", {})),
            position_resolution_nm=(float(res[0]), float(res[1]), float(res[2])),
        )

    @property
    def folder_url(self) -> str:
        return f"{self.base_url}/v{self.version}"

    @property
    def local_folder(self) -> Path | None:
        """The exports folder when base_url is a local path or a file:// URL, else None."""
        parts = urlsplit(self.base_url)
        if parts.scheme in ("http", "https"):
            return None
        path = Path(unquote(parts.path)) if parts.scheme == "file" else Path(self.base_url)
        return path / f"v{self.version}"

    def snapshot_dir(self, out: Path | None = None) -> Path:
        if out is not None or self.out:
            return Path(out or self.out or "")
        suffix = "-cells" if self.keep == "cells" else ""
        return Path(self.cache_dir) / self.datastack / f"v{self.version}{suffix}"


@dataclass
class StaticReport:
    table: str
    rows: int
    rows_read: int
    parts: int
    input_bytes: int
    downloaded_bytes: int
    seconds: float
    skipped: bool = False  # already converted (or, with `missing`, not exported)
    missing: bool = False


@dataclass
class StaticFetcher:
    """Fetches tables of one version's exports into one snapshot folder (see module doc)."""

    settings: StaticSettings
    out: Path
    progress: Progress | None = None
    reports: list[StaticReport] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.client = HttpClient(self.settings.retries, self.settings.backoff_s, self.settings.timeout_s)
        self.out.mkdir(parents=True, exist_ok=True)
        manifest = self._manifest()
        held = (manifest.get("datastack"), manifest.get("materialization_version"))
        if manifest and held != (self.settings.datastack, self.settings.version):
            raise ConfigError(
                f"{self.out} holds {held[0]} v{held[1]}, not {self.settings.datastack} v{self.settings.version}: "
                f"use another --out folder"
            )

    # ------------------------------------------------------------------ manifest
    def _manifest(self) -> dict[str, Any]:
        path = self.out / "manifest.json"
        if not path.exists():
            return {}
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise SourceError(f"{path}: invalid JSON ({exc}); delete it to fetch again") from None
        return data

    def _record(self, table: str, entry: dict[str, Any]) -> None:
        s = self.settings
        manifest = self._manifest() or {
            "datastack": s.datastack,
            "materialization_version": s.version,
            "timestamp": s.timestamp,
            "position_resolution_nm": list(s.position_resolution_nm),
            "server": s.folder_url,
            "fetched_by": "cellfeatures static exports",
            "tables": {},
        }
        manifest["tables"][table] = entry
        text = json.dumps(manifest, indent=2, default=str) + "\n"
        write_file_atomically(self.out / "manifest.json", lambda tmp: tmp.write_text(text))

    def is_complete(self, table: str, mode: str) -> bool:
        entry = self._manifest().get("tables", {}).get(table)
        if not entry or entry.get("fetch", {}).get("mode", "all") != mode:
            return False
        return (self.out / f"{table}.parquet").exists() or (self.out / table).is_dir()

    # ------------------------------------------------------------------ remote files
    def _not_exported(self, table: str, url: str) -> TableNotFoundError:
        local = self.settings.local_folder
        if local is None:
            listing = bucket_listing(self.client, self.settings.folder_url + "/")
        else:
            listing = sorted(p.name for p in local.iterdir()) if local.is_dir() else None
        tables = sorted({n.removesuffix("_header.csv").removesuffix(".csv.gz") for n in listing or []})
        there = f"; the folder holds: {', '.join(tables[:40])}" if listing is not None else ""
        return TableNotFoundError(
            f"table {table!r} is not exported for {self.settings.datastack} v{self.settings.version}: "
            f"{url} does not exist{there}"
        )

    def sidecar(self, table: str) -> tuple[list[ExportColumn], str]:
        _data, header = export_file_names(table, self.settings.files)
        local = self.settings.local_folder
        url = f"{self.settings.folder_url}/{header}"
        if local is not None:
            path = local / header
            if not path.exists():
                raise self._not_exported(table, str(path))
            return parse_sidecar(path.read_text(), table, str(path)), str(path)
        try:
            return parse_sidecar(self.client.text(url), table, url), url
        except NotFoundError:
            raise self._not_exported(table, url) from None

    def data_file(self, table: str) -> tuple[Path, dict[str, Any]]:
        """The data file on local disk (downloaded, resumably, when remote) and what the download did."""
        data, _header = export_file_names(table, self.settings.files)
        local = self.settings.local_folder
        if local is not None:
            path = local / data
            if not path.exists():
                raise self._not_exported(table, str(path))
            return path, {"url": path.resolve().as_uri(), "bytes": path.stat().st_size, "downloaded": 0}
        url = f"{self.settings.folder_url}/{data}"
        try:
            remote = self.client.head(url)
        except NotFoundError:
            raise self._not_exported(table, url) from None
        dest = self.out / "_download" / data
        part = dest.with_name(dest.name + ".part")
        have = part.stat().st_size if part.exists() else dest.stat().st_size if dest.exists() else 0
        if remote.size is not None:
            remaining = max(0, remote.size - have)
            check_disk_space(dest.parent, remaining + int(remote.size * PARQUET_PER_GZIP_BYTE), f"{table} ({url})")
        progress = self.progress
        tick = (lambda done, total: progress(f"download {table}", done, total)) if progress else None
        result = download(self.client, remote, dest, tick)
        return dest, {"url": url, "bytes": dest.stat().st_size, "etag": remote.etag, **result}

    # ------------------------------------------------------------------ one table
    def fetch(self, table: str, keep: RowFilter | None = None, mode: str = "all") -> None:
        if self.is_complete(table, mode):
            entry = self._manifest()["tables"][table]
            self.reports.append(StaticReport(table, entry["rows"], entry["rows"], len(entry["parts"]), 0, 0, 0.0, True))
            return
        columns, sidecar_url = self.sidecar(table)
        path, fetched = self.data_file(table)
        staging = self.out / f".building-{table}-{os.getpid()}"
        remove_stale_builds(self.out)
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        size = path.stat().st_size
        progress = self.progress
        tick = (lambda done: progress(f"convert {table}", done, size)) if progress else None
        try:
            result = convert_export(
                path, columns, table, staging, part_rows=self.settings.part_rows, keep=keep, on_bytes=tick
            )
            final = self._publish(table, staging, result)
        except (OSError, pl.exceptions.PolarsError) as exc:
            shutil.rmtree(staging, ignore_errors=True)
            disk = no_space_error(exc, staging)
            if disk is not None or isinstance(exc, OSError):
                raise (disk or exc) from None
            raise SourceError(f"table {table!r}: converting {path} failed: {one_line(exc)}") from None
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        self._record(table, self._entry(table, columns, sidecar_url, fetched, result, final, mode))
        if path.parent == self.out / "_download" and not self.settings.keep_download:
            path.unlink()
        self.reports.append(
            StaticReport(
                table,
                result.rows,
                result.rows_read,
                len(result.parts),
                result.input_bytes,
                int(fetched.get("downloaded", 0)),
                result.seconds,
            )
        )

    def _publish(self, table: str, staging: Path, result: ConvertResult) -> list[Path]:
        """One part -> <table>.parquet; several -> the folder <table>/. Replaces an older copy, atomically."""
        old = [self.out / f"{table}.parquet", self.out / table]
        trash = self.out / f".replaced-{table}-{os.getpid()}"
        for path in old:
            if path.exists():
                os.replace(path, trash) if path.is_file() else os.rename(path, trash)
                shutil.rmtree(trash, ignore_errors=True) if trash.is_dir() else trash.unlink()
        if len(result.parts) == 1:
            final = self.out / f"{table}.parquet"
            os.replace(staging / result.parts[0]["file"], final)
            shutil.rmtree(staging)
            return [final]
        os.rename(staging, self.out / table)
        return [self.out / table / p["file"] for p in result.parts]

    def _entry(
        self,
        table: str,
        columns: list[ExportColumn],
        sidecar_url: str,
        fetched: dict[str, Any],
        result: ConvertResult,
        files: list[Path],
        mode: str,
    ) -> dict[str, Any]:
        parts = [
            {"file": f"{table}/{p.name}" if len(files) > 1 else p.name, "origin": "real", "rows": part["rows"]}
            | {"sha256": file_sha256(p), "id_min": part["id_min"], "id_max": part["id_max"]}
            for p, part in zip(files, result.parts, strict=True)
        ]
        entry: dict[str, Any] = {
            "origin": "real",
            "kind": "cave",
            "rows": result.rows,
            "source": f"static export {fetched['url']}",
            "parts": parts,
            "fetch": {"mode": mode, **({"cells_from": self.settings.cells_from} if mode == "cells" else {})},
            "export": {
                "url": fetched["url"],
                "sidecar": sidecar_url,
                "columns": [[c.name, c.pg_type] for c in columns],
                "bytes": result.input_bytes,
                "sha256": result.input_sha256,
                "etag": fetched.get("etag"),
                "rows_in_file": result.rows_read,
                "in_id_order": result.in_id_order,
            },
        }
        if len(files) == 1:
            entry["sha256"] = parts[0]["sha256"]
        return entry


def _roots_of_cells(out: Path, cells_from: str, nucleus_table: str) -> pl.Series:
    from cellfeatures.sources.snapshot import SnapshotSource

    snap = SnapshotSource(out)
    targets = snap.scan(cells_from).select(pl.col("target_id").alias("id")).unique()
    roots = snap.scan(nucleus_table).join(targets, on="id").select("pt_root_id").collect().get_column("pt_root_id")
    return roots.filter(roots != 0).unique().sort()


def fetch_static(
    source_cfg: dict[str, Any],
    tables: Iterable[str],
    *,
    version: int | None = None,
    out: Path | None = None,
    nucleus_table: str = "nucleus_detection_v0",
    synapse_table: str = "synapses_pni_2",
    tag_table: str | None = None,
    optional: Iterable[str] = (),
    progress: Progress | None = None,
) -> tuple[Path, list[StaticReport], StaticSettings]:
    """Fetch and convert every listed table of one version's exports into a snapshot folder (resumable).

    With keep = "cells", the synapse table keeps only synapses touching a cell of `cells_from` (fetched
    first, with the nucleus table), and the tag table only the tags of kept synapses.
    """
    settings = StaticSettings.from_config(source_cfg, version)
    target = settings.snapshot_dir(out)
    fetcher = StaticFetcher(settings, target, progress)
    wanted = list(dict.fromkeys(tables))
    for table in dict.fromkeys(optional):  # label tables: fetched when this version exports them
        if table not in wanted:
            try:
                fetcher.sidecar(table)
            except TableNotFoundError:
                fetcher.reports.append(StaticReport(table, 0, 0, 0, 0, 0, 0.0, skipped=True, missing=True))
                continue
            wanted.append(table)
    if settings.keep != "cells":
        for table in wanted:
            fetcher.fetch(table)
        return target, fetcher.reports, settings
    assert settings.cells_from is not None
    first = [t for t in (nucleus_table, settings.cells_from) if t not in wanted] + wanted
    order = sorted(first, key=lambda t: (t == synapse_table) + 2 * (t == tag_table))
    for table in order:
        if table == synapse_table:
            roots = _roots_of_cells(target, settings.cells_from, nucleus_table).implode()
            touches = pl.col("pre_pt_root_id").is_in(roots) | pl.col("post_pt_root_id").is_in(roots)
            fetcher.fetch(table, RowFilter(("pre_pt_root_id", "post_pt_root_id"), touches), mode="cells")
        elif table == tag_table and synapse_table in order:
            from cellfeatures.sources.snapshot import SnapshotSource

            kept = SnapshotSource(target).scan(synapse_table).select("id").collect().get_column("id").implode()
            fetcher.fetch(table, RowFilter(("target_id",), pl.col("target_id").is_in(kept)), mode="cells")
        else:
            fetcher.fetch(table)
    return target, fetcher.reports, settings


class StaticSource:
    """kind = 'static' in a build config: fetch what the build reads (a no-op once done), then read it."""

    @staticmethod
    def from_config(cfg: dict[str, Any], tables: Iterable[str] = (), **names: Any) -> Any:
        from cellfeatures.sources.snapshot import SnapshotSource

        needed = sorted(set(tables))
        if not needed:
            raise ConfigError("a static source needs to know which tables the build reads")
        path, _reports, _settings = fetch_static(cfg, needed, **names)
        return SnapshotSource(path)
