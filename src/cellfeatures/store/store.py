"""The versioned feature store: content-addressed, immutable, published atomically, explainable.

Layout under the store root:

    <root>/<version>/features.parquet   one row per nucleus (nucleus_id, root_id, features...)
    <root>/<version>/manifest.json      provenance, per-column stats, inputs and their origins
    <root>/.building-<version>-<pid>/   a build in progress (invisible to list/scan; removed on failure)

A version id is the first 16 hex digits of SHA-256 over (source fingerprint, feature-set config,
pipeline code version). Building the same inputs again finds the version and does nothing.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from cellfeatures import display
from cellfeatures._util.names import did_you_mean
from cellfeatures.config.model import Config
from cellfeatures.errors import (
    CellFeaturesError,
    DamagedVersionError,
    StoreError,
    VersionNotFoundError,
)
from cellfeatures.sources.base import Source
from cellfeatures.store.build import Progress
from cellfeatures.store.diff import VersionDiff
from cellfeatures.store.manifest import FEATURES_FILE, MANIFEST_FILE, read_manifest, version_problems
from cellfeatures.store.version import FeatureVersion


class FeatureStore:
    """Python API over the store root: build, list, show, scan, load, diff.

    `FeatureStore()` finds the store the project's config names (the project is found from the working
    directory upwards, so a notebook in `examples/` finds the project's store); `FeatureStore(path)` uses
    that path; `FeatureStore(config="configs/x.toml")` the store of that config. Example::

        >>> store = cf.FeatureStore()
        >>> store.latest().id == store.list()[-1]["version"]
        True
        >>> store.load(columns=["soma_depth_um"]).columns
        ['nucleus_id', 'soma_depth_um']
    """

    def __init__(
        self, root: str | os.PathLike[str] | None = None, *, config: str | os.PathLike[str] | Config | None = None
    ) -> None:
        from cellfeatures.config.model import default_config, load_config

        self.config: Config | None = None  # the config that named this store (what build() builds by default)
        if root is not None:
            self.root = Path(root).expanduser().resolve()
            self.found_by = "the path given"
            if config is not None:  # a root and a config: the config is what build() builds (never dropped)
                self.config = config if isinstance(config, Config) else load_config(Path(config))
        else:
            self.config = (
                config if isinstance(config, Config) else load_config(Path(config)) if config else default_config()
            )
            self.root = Path(self.config.store_root)
            self.found_by = f"[store] root of {self.config.path}"

    def __repr__(self) -> str:
        versions = self.list()
        latest = f", latest {versions[-1]['version']}" if versions else ""
        return f"FeatureStore({str(self.root)!r}): {len(versions)} version(s){latest} (found by {self.found_by})"

    def _repr_html_(self) -> str:
        versions = self.list()
        if not versions:
            return display.box(
                "FeatureStore",
                display.para(f"no versions in {self.root} (found by {self.found_by}); build one with store.build()"),
            )
        rows = [(*r.values(), "latest" if i == len(versions) - 1 else "") for i, r in enumerate(versions)]
        return display.box(
            "FeatureStore",
            display.para(f"{self.root} (found by {self.found_by})"),
            display.table((*versions[0], ""), rows),
        )

    def version(self, version: str = "latest") -> FeatureVersion:
        """One published version as an object (id, unique prefix or 'latest')."""
        resolved = self.resolve(version)
        return FeatureVersion(self, resolved, self.manifest(resolved))

    def latest(self) -> FeatureVersion:
        """The version built last (not necessarily your config's: `build(config)` finds that one)."""
        return self.version("latest")

    # ------------------------------------------------------------ reading
    def scan_versions(self) -> tuple[builtins.list[dict[str, Any]], builtins.list[str]]:
        """(manifests of sound-looking versions, one problem line per damaged directory).

        Never raises because of a neighbour: one broken directory must not hide every other version.
        """
        if not self.root.exists():
            return [], []
        good, problems = [], []
        for path in sorted(self.root.iterdir()):
            if path.name.startswith(".") or not path.is_dir():
                continue
            if not (path / MANIFEST_FILE).exists():
                problems.append(f"{path}: no manifest.json (not a published version)")
                continue
            try:
                m = read_manifest(path)
            except DamagedVersionError as exc:
                problems.append(str(exc))
                continue
            missing = [f for f in m.get("files", {FEATURES_FILE: {}}) if not (path / f).exists()]
            if missing:
                problems.append(f"{path}: {', '.join(missing)} missing")
                continue
            good.append(m)
        return good, problems

    def list(self) -> builtins.list[dict[str, Any]]:
        """Published versions, oldest first, with a one-line summary each (damaged ones are left out)."""
        rows = []
        for m in self.scan_versions()[0]:
            rows.append(
                {
                    "version": m["version"],
                    "built_at": m["built_at"],
                    "config": m["config"].get("name"),
                    "source": m["source"].get("kind"),
                    "materialization_version": m["source"].get("materialization_version"),
                    "cells": m["rows"],
                    "features": len(m["features"]),
                }
            )
        return sorted(rows, key=lambda r: r["built_at"])

    def resolve(self, version: str) -> str:
        """Full version id from an id, a unique prefix, or 'latest'."""
        versions = [r["version"] for r in self.list()]
        if not versions:
            raise VersionNotFoundError(
                f"the store {self.root} (found by {self.found_by}) has no versions yet; run `cellfeatures build` "
                f"or store.build()"
            )
        if version == "latest":
            return versions[-1]
        matches = [v for v in versions if v.startswith(version)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            hint = did_you_mean(version, versions, cutoff=0.5)
            raise VersionNotFoundError(f"no version {version!r} in {self.root}{hint} (have: {', '.join(versions)})")
        raise VersionNotFoundError(f"version prefix {version!r} is ambiguous: {', '.join(matches)}")

    def get_features(
        self,
        entities: Any,
        features: builtins.list[str] | str | None = None,
        version: str | None = None,
        materialization_version: int | None = None,
    ) -> pl.DataFrame:
        """Features of the cells you name: one row per input row, in input order, with a `match` column.

        `entities`: a Polars/pandas frame or a Parquet/CSV file with `nucleus_id`, or `root_id` (+ the
        materialization it belongs to, as a `materialization_version` column or the argument), or a
        CAVE-style table (`target_id`, `pt_root_id`). `features`: names, globs (`syn_*`), families
        (`synapses`) or origins (`real`). Statuses: see cellfeatures.store.retrieval.
        """
        from cellfeatures.store.retrieval import get_features

        return get_features(self, entities, features, version, materialization_version)

    def path(self, version: str) -> Path:
        return self.root / self.resolve(version)

    def manifest(self, version: str) -> dict[str, Any]:
        return read_manifest(self.path(version))

    def verify(self, version: str) -> builtins.list[str]:
        """Problems with a published version: files missing, sizes or SHA-256 differing from the manifest,
        a matrix that no longer matches its schema. Empty when the version is sound."""
        return version_problems(self.path(version))

    def _checked(self, version: str) -> Path:
        """The version's directory after checking its files against the manifest: never train on damage."""
        path = self.path(version)  # one resolution (a scan of every manifest), not one per check
        problems = version_problems(path)
        if problems:
            raise DamagedVersionError(
                f"version {path.name} is damaged, refusing to read it: {problems[0]}"
                + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
                + "; run `cellfeatures verify` and rebuild it"
            )
        return path

    def scan(self, version: str = "latest") -> pl.LazyFrame:
        """A LazyFrame over a version's matrix (its files checked against the manifest first)."""
        return pl.scan_parquet(self._checked(version) / FEATURES_FILE)

    def load(self, version: str = "latest", columns: builtins.list[str] | None = None) -> pl.DataFrame:
        """A version's matrix (default: the latest), optionally only some columns (nucleus_id always kept)."""
        lf = self.scan(version)
        if columns is not None:
            missing = [c for c in columns if c not in lf.collect_schema()]
            if missing:
                raise StoreError(f"version {self.resolve(version)} has no column(s) {missing}")
            keys = [c for c in ("nucleus_id",) if c not in columns]
            lf = lf.select(*keys, *columns)
        return lf.collect()

    def source_of(self, version: str, tables: builtins.list[str] | tuple[str, ...] = ()) -> Source:
        """Reopen the exact source a version was built from, proving `tables` are unchanged since the build.

        Why: labels, partner tables and model tables must come from the same data the features came
        from. A version whose source cannot be reopened, or whose tables changed, is refused, never
        silently labelled from somewhere else (such as the embedded sample).
        """
        from cellfeatures.sources.factory import make_source

        resolved = self.resolve(version)
        manifest = self.manifest(resolved)
        cfg = manifest.get("source_config")
        if not isinstance(cfg, dict):
            raise StoreError(
                f"version {resolved} does not record which source it was built from (built by an older "
                f"cellfeatures); rebuild it with `cellfeatures build` before making datasets from it"
            )
        try:
            source = make_source(cfg)
        except CellFeaturesError as exc:
            raise StoreError(
                f"cannot reopen the source of version {resolved} ({cfg.get('kind')} "
                f"{cfg.get('paths') or cfg.get('datastack') or ''}): {exc}; refusing to read labels elsewhere"
            ) from None
        recorded = manifest.get("source_tables", {})
        for table in tables:
            if not source.has(table):
                continue  # absent now and then: the caller decides whether it needs it
            if table not in recorded:
                raise StoreError(
                    f"table {table!r} is in the source of version {resolved} now but was not when it was built: "
                    f"the snapshot changed; rebuild the version"
                )
            if source.table_fingerprint(table) != recorded[table]:
                raise StoreError(
                    f"table {table!r} of the source of version {resolved} changed since the build (rows or "
                    f"checksum differ): rebuild the version so features and labels come from the same data"
                )
        return source

    # ------------------------------------------------------------ building
    def build(
        self,
        config: Config | None = None,
        source: Source | None = None,
        progress: Progress | None = None,
        *,
        strict: bool = False,
        tick: Callable[[str, int, int], None] | None = None,
    ) -> FeatureVersion:
        """Build (or find) the feature version of a config (default: the one that named this store).

        Atomic: all or nothing becomes visible. Families whose tables the source lacks are skipped
        (listed in the manifest's `skipped`) unless `strict`. The config's [execution] section picks the
        engine of the big synapse plan; it never changes the matrix. `tick(what, done, total)` hears the
        progress of long steps. `version.created` says whether this call published it.
        """
        from cellfeatures.store.build import build_version

        result = build_version(self.root, config or self.config, source, progress, strict=strict, tick=tick)
        return FeatureVersion(self, result.version, result.manifest, created=result.created)

    # ------------------------------------------------------------ comparing
    def diff(self, a: str, b: str, examples: int = 5) -> VersionDiff:
        """What changed from version a to version b: cells, features, values, config, inputs."""
        from cellfeatures.store.diff import diff_versions

        return diff_versions(self.version(a), self.version(b), examples)
