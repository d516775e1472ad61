"""Building one feature version: identity map, every family, the joined and validated matrix, the manifest.

Called by FeatureStore.build; publishes through _util.atomic so an interrupted build leaves nothing visible.
Knows nothing about datasets or benchmarks."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from cellfeatures._util.atomic import publish_directory
from cellfeatures._util.checksums import file_sha256
from cellfeatures._version import PIPELINE_CODE_VERSION, __version__
from cellfeatures.config.model import Config
from cellfeatures.errors import (
    DamagedVersionError,
    SourceError,
    StoreError,
    one_line,
)
from cellfeatures.identity import identity_map
from cellfeatures.pipelines import FAMILIES, BuildContext, FeatureSpec
from cellfeatures.pipelines import external as external_family
from cellfeatures.pipelines.base import IDENTITY_TABLE
from cellfeatures.pipelines.nucleus import load_identity_nucleus
from cellfeatures.schemas import feature_matrix_schema, validate
from cellfeatures.sources.base import Source, least_real
from cellfeatures.store.manifest import (
    FEATURES_FILE,
    MANIFEST_FILE,
    column_stats,
    peak_rss_bytes,
    raise_os_error,
    version_id,
    version_problems,
)

Progress = Callable[[str], None]


@dataclass
class BuildResult:
    version: str
    path: Path
    created: bool  # False: the version existed, nothing was built
    manifest: dict[str, Any]


def build_version(
    root: Path,
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
    from cellfeatures.config.model import default_config
    from cellfeatures.sources.factory import make_source

    config = config or default_config()
    say = progress or (lambda _msg: None)
    started = time.perf_counter()
    source = source or make_source(config.source, config.tables_needed(), progress=say, names=config.table_roles())
    config, skipped = config.for_tables(set(source.tables()), strict)
    for item in skipped:
        say(f"skipped {item['family']}: {item['table']} — {item['why']}")
    say(f"fingerprinting source {source.describe()}")
    fingerprint = source.fingerprint()
    _refuse_empty_tables(config, fingerprint)
    version = version_id(fingerprint, config.feature_set())
    final = root / version
    engine: Any = contextlib.nullcontext(None)
    scratch = root / f".building-dask-{version}-{os.getpid()}"  # removed by the next build if killed
    if not (final / MANIFEST_FILE).exists():  # a cluster only for a build that will run
        from cellfeatures.pipelines.execution import ExecutionSpec, open_engine

        spec = ExecutionSpec.from_config(config.raw.get("execution"))
        engine = open_engine(spec, str(scratch), say, tick)
    try:
        with engine as running:
            manifest, created = publish_directory(
                final,
                lambda tmp: _build_into(
                    tmp, version, config, source, fingerprint, say, started, skipped, running, tick
                ),
                ready=MANIFEST_FILE,
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if not created or manifest is None:
        problems = version_problems(final)
        if problems:
            raise DamagedVersionError(
                f"version {version} is published but damaged ({problems[0]}); remove {final} and build again"
            )
        say(f"version {version} already built: nothing to do")
        return BuildResult(version, final, False, json.loads((final / MANIFEST_FILE).read_text()))
    say(f"published version {version} ({manifest['rows']:,} cells, {len(manifest['features'])} features)")
    return BuildResult(version, final, True, manifest)


def _build_into(
    tmp: Path,
    version: str,
    config: Config,
    source: Source,
    fingerprint: dict[str, Any],
    say: Progress,
    started: float,
    skipped: list[dict[str, str]] | None = None,
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
                f"family {name!r}: the data of {tables} could not be processed ({type(exc).__name__}: {one_line(exc)})"
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
    files = {FEATURES_FILE: {"bytes": (tmp / FEATURES_FILE).stat().st_size, "sha256": file_sha256(tmp / FEATURES_FILE)}}
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
        return least_real([infos[t]["origin"] if t in infos else source.info(t).origin for t in feature_inputs(spec)])

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
        "features": {s.name: {**column_stats(df, s, feature_origin(s)), "inputs": feature_inputs(s)} for s in specs},
        "synapse_coverage": _synapse_coverage(df, identity, config, infos),
        "execution": engine.describe() if engine is not None else {"engine": "local"},
        "build_seconds": round(time.perf_counter() - started, 3),
        "peak_rss_bytes": peak_rss_bytes(),
    }
    (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    return manifest


def _synapse_coverage(
    df: pl.DataFrame, identity: pl.DataFrame, config: Config, infos: dict[str, Any]
) -> dict[str, Any] | None:
    """Cells with synapse features and why the others have none, when the synapse family was built."""
    from cellfeatures.pipelines.synapses import coverage

    if "syn_in_count" not in df.columns:
        return None
    table = config.features.get("synapses", {}).get("synapse_table", "synapses_pni_2")
    return coverage(df, identity, infos.get(table, {}).get("cells_from"))


def _refuse_empty_tables(config: Config, fingerprint: dict[str, Any]) -> None:
    """A required table with 0 rows would publish every cell as measured zero (or no cell at all)."""
    rows = {t: entry.get("rows") for t, entry in fingerprint.get("tables", {}).items() if isinstance(entry, dict)}
    empty = [(t, why) for t, why in config.required_tables().items() if rows.get(t) == 0]
    if empty:
        listed = "; ".join(f"{t!r} (needed by {why})" for t, why in empty)
        raise SourceError(
            f"required table(s) with 0 rows: {listed}. An empty table is a failed export or fetch, not data: "
            f"fetch it again, or remove the family from the config"
        )
