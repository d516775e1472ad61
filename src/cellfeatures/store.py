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
import contextlib
import hashlib
import json
import os
import resource
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from cellfeatures import PIPELINE_CODE_VERSION, __version__, display
from cellfeatures.atomic import publish_directory
from cellfeatures.checksums import cached_sha256, file_sha256
from cellfeatures.config import Config
from cellfeatures.errors import (
    CellFeaturesError,
    DamagedVersionError,
    SourceError,
    StoreError,
    VersionNotFoundError,
    one_line,
    os_error_code,
)
from cellfeatures.feature_version import FeatureVersion
from cellfeatures.identity import identity_map
from cellfeatures.pipelines import FAMILIES, BuildContext, FeatureSpec
from cellfeatures.pipelines import external as external_family
from cellfeatures.pipelines.base import IDENTITY_TABLE
from cellfeatures.pipelines.nucleus import load_identity_nucleus
from cellfeatures.schemas import feature_matrix_schema, validate
from cellfeatures.sources.base import Source, least_real

FEATURES_FILE = "features.parquet"
MANIFEST_FILE = "manifest.json"
# Fields every reader relies on, with their JSON types: a manifest lacking one is a damaged version.
MANIFEST_FIELDS: dict[str, type] = {
    "version": str,
    "built_at": str,
    "config": dict,
    "source": dict,
    "features": dict,
    "rows": int,
    "families": dict,
}
Progress = Callable[[str], None]


def raise_os_error(exc: Exception, where: Path) -> None:
    """An engine error that is really the operating system's (full disk, read-only, denied) becomes an OSError."""
    code = os_error_code(exc)
    if code is not None:
        raise OSError(code, os.strerror(code), str(where)) from None


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def version_id(fingerprint: dict[str, Any], feature_set: dict[str, Any]) -> str:
    """Content address of a feature version."""
    return _hash({"source": fingerprint, "features": feature_set, "code": PIPELINE_CODE_VERSION})[:16]


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


@dataclass
class BuildResult:
    version: str
    path: Path
    created: bool  # False: the version existed, nothing was built
    manifest: dict[str, Any]


@dataclass
class VersionDiff:
    a: str
    b: str
    cells_added: int
    cells_removed: int
    cells_rerooted: int
    features_added: list[str]
    features_removed: list[str]
    drift: list[dict[str, Any]]  # per common feature: changed count, max abs change
    config_changes: list[dict[str, Any]]  # dotted key, value in a, value in b
    tables_changed: list[str]  # source tables whose rows or checksums differ
    examples: dict[str, list[int]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()

    @property
    def changed_features(self) -> list[dict[str, Any]]:
        return [d for d in self.drift if d["changed"]]

    def __repr__(self) -> str:
        return display.diff_text(self)

    def _repr_html_(self) -> str:
        return display.diff_html(self)


def _column_stats(df: pl.DataFrame, spec: FeatureSpec, origin: str) -> dict[str, Any]:
    col = df[spec.name]
    stats: dict[str, Any] = {
        "dtype": spec.dtype,
        "unit": spec.unit,
        "family": spec.family,
        "origin": origin,
        "description": spec.description,
        "null_rate": round(col.null_count() / max(df.height, 1), 6),
    }
    if col.dtype.is_numeric() and col.drop_nulls().len():
        stats["min"], stats["max"] = col.min(), col.max()
    elif col.dtype == pl.String:
        stats["n_unique"] = col.drop_nulls().n_unique()
    elif col.dtype == pl.Boolean:
        present = col.drop_nulls()
        stats["true_rate"] = round(present.sum() / present.len(), 6) if present.len() else None
    return stats


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            out.update(_flatten(value, name))
        else:
            out[name] = value
    return out


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
        from cellfeatures.config import default_config, load_config

        self.config: Config | None = None  # the config that named this store (what build() builds by default)
        if root is not None:
            self.root = Path(root).expanduser().resolve()
            self.found_by = "the path given"
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
    def _read_manifest(self, path: Path) -> dict[str, Any]:
        """A version directory's manifest, or DamagedVersionError saying what is wrong with it."""
        try:
            m = json.loads((path / MANIFEST_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise DamagedVersionError(f"{path}: manifest.json is unreadable ({type(exc).__name__}: {exc})") from None
        if not isinstance(m, dict):
            raise DamagedVersionError(f"{path}: manifest.json is not a JSON object")
        for key, kind in MANIFEST_FIELDS.items():
            if not isinstance(m.get(key), kind):
                raise DamagedVersionError(f"{path}: manifest.json field {key!r} is missing or not {kind.__name__}")
        if m["version"] != path.name:
            raise DamagedVersionError(
                f"{path}: manifest.json names version {m['version']!r}, not its directory {path.name!r}"
            )
        return m

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
                m = self._read_manifest(path)
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
            import difflib

            close = difflib.get_close_matches(version, versions, n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise VersionNotFoundError(f"no version {version!r} in {self.root}{hint} (have: {', '.join(versions)})")
        raise VersionNotFoundError(f"version prefix {version!r} is ambiguous: {', '.join(matches)}")

    def path(self, version: str) -> Path:
        return self.root / self.resolve(version)

    def manifest(self, version: str) -> dict[str, Any]:
        return self._read_manifest(self.path(version))

    def verify(self, version: str) -> builtins.list[str]:
        """Problems with a published version: files missing, sizes or SHA-256 differing from the manifest,
        a matrix that no longer matches its schema. Empty when the version is sound."""
        return self._problems(self.path(version))

    def _problems(self, path: Path) -> builtins.list[str]:
        m = self._read_manifest(path)
        files = m.get("files")
        if not isinstance(files, dict):
            return [f"{path}: the manifest records no file checksums (built by an older cellfeatures); rebuild it"]
        problems = []
        for name, info in files.items():
            target = path / name
            if not target.exists():
                problems.append(f"{target}: missing")
            elif target.stat().st_size != info.get("bytes"):
                problems.append(f"{target}: {target.stat().st_size:,} bytes, the manifest says {info.get('bytes'):,}")
            elif cached_sha256(target) != info.get("sha256"):
                problems.append(f"{target}: SHA-256 differs from the manifest (the file was modified)")
        if not problems:
            try:
                schema = pl.read_parquet_schema(path / FEATURES_FILE)
            except (OSError, pl.exceptions.PolarsError) as exc:
                return [f"{path / FEATURES_FILE}: unreadable ({exc})"]
            expected = ["nucleus_id", "root_id", *m["features"]]
            if list(schema) != expected:
                problems.append(f"{path / FEATURES_FILE}: columns differ from the manifest's features")
        return problems

    def _checked(self, version: str) -> Path:
        """The version's directory after checking its files against the manifest: never train on damage."""
        path = self.path(version)  # one resolution (a scan of every manifest), not one per check
        problems = self._problems(path)
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
    ) -> BuildResult:
        """Build (or find) the feature version for this config. Atomic: all or nothing becomes visible.

        Families whose tables the source lacks are skipped (listed in the manifest's `skipped`), unless
        `strict`; see Config.for_tables. The config's [execution] section picks the engine of the big
        synapse plan (local, or a Dask cluster): it never changes the matrix, so it is not in the version
        id; the manifest records it. `tick(what, done, total)` hears the progress of long steps.
        """
        from cellfeatures.config import default_config
        from cellfeatures.sources.factory import make_source

        config = config or self.config or default_config()
        say = progress or (lambda _msg: None)
        started = time.perf_counter()
        source = source or make_source(config.source, config.tables_needed(), progress=say)
        config, skipped = config.for_tables(set(source.tables()), strict)
        for item in skipped:
            say(f"skipped {item['family']}: {item['table']} — {item['why']}")
        say(f"fingerprinting source {source.describe()}")
        fingerprint = source.fingerprint()
        version = version_id(fingerprint, config.feature_set())
        final = self.root / version
        engine: Any = contextlib.nullcontext(None)
        scratch = self.root / f".building-dask-{version}-{os.getpid()}"  # removed by the next build if killed
        if not (final / MANIFEST_FILE).exists():  # a cluster only for a build that will run
            from cellfeatures.execution import ExecutionSpec, open_engine

            spec = ExecutionSpec.from_config(config.raw.get("execution"))
            engine = open_engine(spec, str(scratch), say, tick)
        try:
            with engine as running:
                manifest, created = publish_directory(
                    final,
                    lambda tmp: self._build_into(
                        tmp, version, config, source, fingerprint, say, started, skipped, running, tick
                    ),
                    ready=MANIFEST_FILE,
                )
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        if not created or manifest is None:
            problems = self.verify(version)
            if problems:
                raise DamagedVersionError(
                    f"version {version} is published but damaged ({problems[0]}); remove {final} and build again"
                )
            say(f"version {version} already built: nothing to do")
            return BuildResult(version, final, False, json.loads((final / MANIFEST_FILE).read_text()))
        say(f"published version {version} ({manifest['rows']:,} cells, {len(manifest['features'])} features)")
        return BuildResult(version, final, True, manifest)

    def _build_into(
        self,
        tmp: Path,
        version: str,
        config: Config,
        source: Source,
        fingerprint: dict[str, Any],
        say: Progress,
        started: float,
        skipped: builtins.list[dict[str, str]] | None = None,
        engine: Any = None,
        tick: Callable[[str, int, int], None] | None = None,
    ) -> dict[str, Any]:
        nucleus_table = config.identity["nucleus_table"]
        say(f"identity: {nucleus_table}")
        try:
            identity = identity_map(load_identity_nucleus(source, nucleus_table))
        except pl.exceptions.PolarsError as exc:
            raise_os_error(exc, tmp)
            raise SourceError(
                f"table {nucleus_table!r} could not be read as a nucleus table ({type(exc).__name__}: {one_line(exc)})"
            ) from None
        family_dir = tmp / "families"
        family_dir.mkdir()
        (tmp / "scratch").mkdir()
        ctx = BuildContext(source=source, identity=identity, scratch=tmp / "scratch", engine=engine, tick=tick)
        specs: list[FeatureSpec] = []
        family_inputs: dict[str, list[str]] = {}
        family_seconds: dict[str, float] = {}
        for name, module in FAMILIES.items():
            if name not in config.features:
                continue
            cfg = config.features[name]
            t0 = time.perf_counter()
            say(f"family {name}")
            before = set(ctx.used_tables)
            if name == "external":
                family_specs = external_family.features(cfg, external_family.column_dtypes(ctx, cfg))
            else:
                family_specs = module.features(cfg)
            try:
                lf = module.build(ctx, cfg)
                declared = ["nucleus_id", *[s.name for s in family_specs]]
                got = lf.collect_schema().names()
                if got != declared:
                    raise StoreError(f"family {name!r} produced columns {got}, catalogue declares {declared}")
                lf.sink_parquet(family_dir / f"{name}.parquet", engine="streaming")
            except pl.exceptions.PolarsError as exc:
                raise_os_error(exc, family_dir)
                tables = ", ".join(sorted(set(module.inputs(cfg)) | (ctx.used_tables - before))) or "its inputs"
                raise SourceError(
                    f"family {name!r}: the data of {tables} could not be processed "
                    f"({type(exc).__name__}: {one_line(exc)})"
                ) from None
            used = sorted(ctx.used_tables - before) + ([nucleus_table] if name == "nucleus" else [])
            family_inputs[name] = used
            specs += family_specs
            family_seconds[name] = round(time.perf_counter() - t0, 3)

        say("joining families and validating the matrix")
        matrix = identity.select("nucleus_id", "root_id").lazy()
        for name in family_inputs:
            matrix = matrix.join(pl.scan_parquet(family_dir / f"{name}.parquet"), on="nucleus_id", how="left")
        df = matrix.collect(engine="streaming").sort("nucleus_id")
        df = validate(df, feature_matrix_schema({s.name: s.dtype for s in specs}), f"feature matrix {version}")
        df.write_parquet(tmp / FEATURES_FILE, compression="zstd", statistics=True)
        files = {
            FEATURES_FILE: {"bytes": (tmp / FEATURES_FILE).stat().st_size, "sha256": file_sha256(tmp / FEATURES_FILE)}
        }
        shutil.rmtree(family_dir)
        shutil.rmtree(tmp / "scratch")

        all_inputs = sorted({nucleus_table, *[t for ts in family_inputs.values() for t in ts]})
        infos = {t: source.info(t).as_dict() for t in all_inputs}
        family_origin = {f: least_real([infos[t]["origin"] for t in ts]) for f, ts in family_inputs.items()}

        def feature_inputs(spec: FeatureSpec) -> list[str]:
            if not spec.inputs:
                return family_inputs[spec.family]
            return sorted({nucleus_table if t == IDENTITY_TABLE else t for t in spec.inputs})

        def feature_origin(spec: FeatureSpec) -> str:
            if spec.origin is not None:
                return spec.origin
            return least_real(
                [infos[t]["origin"] if t in infos else source.info(t).origin for t in feature_inputs(spec)]
            )

        manifest = {
            "version": version,
            "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "cellfeatures_version": __version__,
            "pipeline_code_version": PIPELINE_CODE_VERSION,
            "config": {"name": config.name, "path": str(config.path) if config.path else None, **config.feature_set()},
            "source": {k: v for k, v in fingerprint.items() if k != "tables"} | {"description": source.describe()},
            "source_config": source.reopen_config(),
            "source_tables": fingerprint.get("tables", {}),
            "inputs": infos,
            "families": {
                f: {"inputs": family_inputs[f], "origin": family_origin[f], "seconds": family_seconds[f]}
                for f in family_inputs
            },
            "rows": df.height,
            "files": files,
            "skipped": skipped or [],
            "identity": {
                "nuclei": identity.height,
                "missing_root": int(identity["missing_root"].sum()),
                "multi_soma": int(identity["multi_soma"].sum()),
                "attributable": int(identity["attributable"].sum()),
            },
            "features": {
                s.name: {**_column_stats(df, s, feature_origin(s)), "inputs": feature_inputs(s)} for s in specs
            },
            "execution": engine.describe() if engine is not None else {"engine": "local"},
            "build_seconds": round(time.perf_counter() - started, 3),
            "peak_rss_bytes": peak_rss_bytes(),
        }
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
        return manifest

    # ------------------------------------------------------------ comparing
    def diff(self, a: str, b: str, examples: int = 5) -> VersionDiff:
        """What changed from version a to version b: cells, features, values, config, inputs."""
        va, vb = self.resolve(a), self.resolve(b)
        ma, mb = self.manifest(va), self.manifest(vb)
        fa, fb = self.load(va), self.load(vb)
        ids_a, ids_b = set(fa["nucleus_id"].to_list()), set(fb["nucleus_id"].to_list())
        both = fa.join(fb, on="nucleus_id", how="inner", suffix="__b")
        rerooted = both.filter(pl.col("root_id") != pl.col("root_id__b"))
        cols_a = [c for c in fa.columns if c not in ("nucleus_id", "root_id")]
        cols_b = [c for c in fb.columns if c not in ("nucleus_id", "root_id")]
        drift = []
        for col in [c for c in cols_a if c in cols_b]:
            x, y = pl.col(col), pl.col(f"{col}__b")
            same = (x == y).fill_null(False) | (x.is_null() & y.is_null())
            changed = both.filter(~same)
            entry: dict[str, Any] = {"feature": col, "changed": changed.height}
            if both[col].dtype.is_numeric() and both[f"{col}__b"].dtype.is_numeric():
                delta = both.select((x.cast(pl.Float64) - y.cast(pl.Float64)).abs().max()).item()
                entry["max_abs_change"] = delta
            entry["examples"] = changed["nucleus_id"].head(examples).to_list()
            drift.append(entry)
        flat_a, flat_b = _flatten(ma["config"]), _flatten(mb["config"])
        config_changes = [
            {"key": k, "a": flat_a.get(k), "b": flat_b.get(k)}
            for k in sorted(set(flat_a) | set(flat_b))
            if flat_a.get(k) != flat_b.get(k) and k != "path"
        ]
        ta, tb = ma.get("source_tables", {}), mb.get("source_tables", {})
        tables_changed = sorted(t for t in set(ta) | set(tb) if ta.get(t) != tb.get(t))
        return VersionDiff(
            a=va,
            b=vb,
            cells_added=len(ids_b - ids_a),
            cells_removed=len(ids_a - ids_b),
            cells_rerooted=rerooted.height,
            features_added=[c for c in cols_b if c not in cols_a],
            features_removed=[c for c in cols_a if c not in cols_b],
            drift=drift,
            config_changes=config_changes,
            tables_changed=tables_changed,
            examples={
                "added": sorted(ids_b - ids_a)[:examples],
                "removed": sorted(ids_a - ids_b)[:examples],
                "rerooted": rerooted["nucleus_id"].head(examples).to_list(),
            },
        )
