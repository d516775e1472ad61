"""Features for *my* cells: one row per input row, in input order, with a `match` column that says why.

A neuroscientist arrives with ids from their own work: nucleus ids (a paper's table), root ids of some
materialization (a proofreading session), or a CAVE-style table (`target_id`, `pt_root_id`). Joining by
hand silently drops stale roots, duplicates merged ones, and hides which ids were never cells. Here each
input row gets exactly one output row and one status:

- `ok`: the features of that nucleus (as `store.load()` has them);
- `root_not_in_version`: a root id that no nucleus of this version carries: a root of another
  materialization (stale or edited since) or a segment without a nucleus; map it to the version's roots
  (CAVEclient `chunkedgraph.get_latest_roots`, or the nucleus table of its own version) or use nucleus ids;
- `root_multi_soma`: the root carries several nuclei (a merge): features withheld, as the pipelines do;
- `no_nucleus`: root id 0 (outside the segmentation);
- `unknown_id`: a nucleus id the version does not have, an id too small to be a root, or an empty key.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path
from typing import Any

import polars as pl

from cellfeatures._util.names import did_you_mean
from cellfeatures.errors import ConfigError, SchemaError, StoreError
from cellfeatures.identity import integer_key

MATCHES = ("ok", "root_not_in_version", "root_multi_soma", "no_nucleus", "unknown_id")
NUCLEUS_KEYS = ("nucleus_id", "target_id")  # target_id: a CAVE reference table's nucleus id
ROOT_KEYS = ("root_id", "pt_root_id")
VERSION_COLUMN = "materialization_version"
MIN_ROOT_ID = 10**15  # minnie65 roots are 18 digits (864691...): smaller ids cannot be roots


def read_entities(entities: Any) -> pl.DataFrame:
    """A Polars/pandas frame, or a Parquet/CSV/Feather file, as a Polars frame."""
    if isinstance(entities, pl.LazyFrame):
        return entities.collect()
    if isinstance(entities, pl.DataFrame):
        return entities
    if isinstance(entities, str | os.PathLike):
        from cellfeatures.sources.snapshot import read_table_file

        path = Path(entities)
        if not path.exists():
            raise ConfigError(f"entity file {path} does not exist")
        return read_table_file(path).collect()
    if type(entities).__module__.startswith("pandas"):
        return pl.from_pandas(entities)
    raise ConfigError(f"entities must be a Polars or pandas frame or a Parquet/CSV file, got {type(entities).__name__}")


def select_features(manifest: dict[str, Any], patterns: list[str] | str | None) -> list[str]:
    """Feature names by glob (`syn_*`), family (`synapses`) or origin (`real`); every pattern must match."""
    catalogue: dict[str, Any] = manifest["features"]
    if patterns is None:
        return list(catalogue)
    wanted = [p.strip() for p in (patterns.split(",") if isinstance(patterns, str) else patterns) if p.strip()]
    chosen: list[str] = []
    for pattern in wanted:
        hits = [
            name
            for name, info in catalogue.items()
            if fnmatch.fnmatchcase(name, pattern) or pattern in (info.get("family"), info.get("origin"))
        ]
        if not hits:
            families = sorted({i.get("family") for i in catalogue.values()})
            raise ConfigError(
                f"feature pattern {pattern!r} matches nothing{did_you_mean(pattern, list(catalogue) + families)} "
                f"(use a name or glob like syn_*, a family {families}, or an origin real / derived / synthetic)"
            )
        chosen += [h for h in hits if h not in chosen]
    return chosen


def _keys_of(frame: pl.DataFrame) -> tuple[str | None, str | None]:
    """(nucleus-id column, root-id column): a row is looked up by its nucleus id when it has one, else its root."""
    nucleus = next((c for c in NUCLEUS_KEYS if c in frame.columns), None)
    root = next((c for c in ROOT_KEYS if c in frame.columns), None)
    if nucleus is None and root is None:
        raise SchemaError(
            "entities", f"- no id column: expected one of {list(NUCLEUS_KEYS + ROOT_KEYS)} (has {frame.columns})"
        )
    return nucleus, root


def choose_version(store: Any, version: str | None, materialization: int | None) -> str:
    """The feature version to read: the one named, else the newest built from `materialization`."""
    if version is not None:
        chosen = store.resolve(version)
        held = store.manifest(chosen)["source"].get("materialization_version")
        if materialization is not None and held != materialization:
            what = f"version {chosen[:8]} is of materialization {held}"
            raise StoreError(_version_message(store, materialization, what))
        return str(chosen)
    if materialization is None:
        return str(store.resolve("latest"))
    candidates = [r["version"] for r in store.list() if r.get("materialization_version") == materialization]
    if not candidates:
        raise StoreError(_version_message(store, materialization, "no version of it"))
    return str(candidates[-1])


def _version_message(store: Any, materialization: int, what: str) -> str:
    held = sorted({f"{r['version'][:8]} (materialization {r.get('materialization_version')})" for r in store.list()})
    return (
        f"root ids of materialization {materialization} were asked for, but the store {store.root} has {what}; "
        f"it has: {', '.join(held) or 'no versions'}. Build that version, or map the roots to one the store "
        f"has (CAVEclient chunkedgraph.get_latest_roots), or look the cells up by nucleus id"
    )


def get_features(
    store: Any,
    entities: Any,
    features: list[str] | str | None = None,
    version: str | None = None,
    materialization_version: int | None = None,
) -> pl.DataFrame:
    """The input rows (every column kept, in order) + `nucleus_id` + `match` + the features asked for."""
    frame = read_entities(entities)
    nucleus_col, root_col = _keys_of(frame)
    ids = frame.with_row_index("_row").with_columns(
        _key(frame, nucleus_col, exact_floats_ok=True).alias("_nid"),
        _key(frame, root_col, exact_floats_ok=False).alias("_rid"),
    )
    by_root = ids.filter(pl.col("_nid").is_null() & pl.col("_rid").is_not_null())
    claimed = by_root.get_column(VERSION_COLUMN) if VERSION_COLUMN in frame.columns else pl.Series([], dtype=pl.Int64)
    given = claimed.drop_nulls().unique().to_list()
    if materialization_version is None and len(given) == 1:
        materialization_version = int(given[0])
    if len(given) > 1 and materialization_version is None:
        raise ConfigError(
            f"the entities' {VERSION_COLUMN!r} column names several materializations {sorted(given)}: pass the one "
            f"to read (materialization_version= / --materialization-version); the other rows get root_not_in_version"
        )
    chosen = choose_version(store, version, materialization_version if by_root.height else None)
    names = select_features(store.manifest(chosen), features)
    reserved = names + ["match"] + (["nucleus_id"] if nucleus_col != "nucleus_id" else [])
    clash = [n for n in reserved if n in frame.columns]
    if clash:
        raise ConfigError(f"the entities already have column(s) {clash}: rename them before the lookup")
    matrix = store.load(chosen).with_columns(pl.len().over("root_id").alias("_nuclei"))
    parts = [_by_nucleus(ids.filter(pl.col("_nid").is_not_null()).with_columns(pl.col("_nid").alias("_id")), matrix)]
    parts.append(_by_root(ids.filter(pl.col("_nid").is_null()).with_columns(pl.col("_rid").alias("_id")), matrix))
    resolved = pl.concat(parts, how="diagonal_relaxed").sort("_row")
    if VERSION_COLUMN in frame.columns and materialization_version is not None:
        other = pl.col("_nid").is_null() & (
            pl.col(VERSION_COLUMN).fill_null(materialization_version) != materialization_version
        )
        resolved = resolved.with_columns(
            pl.when(other).then(pl.lit("root_not_in_version")).otherwise("match").alias("match"),
            pl.when(other).then(None).otherwise("nucleus_id").alias("nucleus_id"),
        )
    values = matrix.select("nucleus_id", *[n for n in names if n != "nucleus_id"])
    out = resolved.join(values, on="nucleus_id", how="left").sort("_row")
    withheld = pl.col("match") != "ok"
    out = out.with_columns(
        pl.when(withheld).then(None).otherwise(pl.col(n)).alias(n) for n in names if n != "nucleus_id"
    )
    front = list(frame.columns) + (["nucleus_id"] if "nucleus_id" not in frame.columns else [])
    return out.select(*front, "match", *[n for n in names if n not in front])


def _key(frame: pl.DataFrame, column: str | None, *, exact_floats_ok: bool) -> pl.Expr:
    if column is None:
        return pl.lit(None, dtype=pl.Int64)
    return integer_key(frame, column, "entities", exact_floats_ok=exact_floats_ok, nulls_ok=True)


def _by_nucleus(ids: pl.DataFrame, matrix: pl.DataFrame) -> pl.DataFrame:
    known = matrix.select(pl.col("nucleus_id").alias("_id"), pl.col("root_id").alias("_root"), "_nuclei")
    joined = ids.join(known, on="_id", how="left")
    match = (
        pl.when(pl.col("_root").is_null())
        .then(pl.lit("unknown_id"))
        .when((pl.col("_root") != 0) & (pl.col("_nuclei") > 1))
        .then(pl.lit("root_multi_soma"))
        .otherwise(pl.lit("ok"))
    )
    out = joined.with_columns(match.alias("match")).drop("_root", "_nuclei")
    return out.with_columns(pl.col("_id").alias("nucleus_id"))  # the id asked for, whatever its status


def _by_root(ids: pl.DataFrame, matrix: pl.DataFrame) -> pl.DataFrame:
    roots = matrix.group_by(pl.col("root_id").alias("_id")).agg(
        pl.len().alias("_nuclei"), pl.col("nucleus_id").first().alias("_nucleus")
    )
    joined = ids.join(roots, on="_id", how="left")
    match = (
        pl.when(pl.col("_id").is_null())
        .then(pl.lit("unknown_id"))
        .when(pl.col("_id") == 0)
        .then(pl.lit("no_nucleus"))
        .when(pl.col("_nuclei") > 1)
        .then(pl.lit("root_multi_soma"))
        .when(pl.col("_nuclei") == 1)
        .then(pl.lit("ok"))
        .when(pl.col("_id") >= MIN_ROOT_ID)
        .then(pl.lit("root_not_in_version"))
        .otherwise(pl.lit("unknown_id"))
    )
    out = joined.with_columns(match.alias("match"))
    nucleus = pl.when(pl.col("match") == "ok").then(pl.col("_nucleus")).otherwise(None).alias("nucleus_id")
    return out.with_columns(nucleus).drop("_nuclei", "_nucleus")


def match_counts(result: pl.DataFrame) -> dict[str, int]:
    """How many input rows got each status (every status listed, zero included)."""
    counts = dict(result.group_by("match").len().iter_rows())
    return {m: int(counts.get(m, 0)) for m in MATCHES}
