"""What a published version records and how its id is computed: file names, manifest fields, column stats.

Pure functions and constants: nothing here reads or writes a store (store.py and build.py do)."""

from __future__ import annotations

import hashlib
import json
import os
import resource
from pathlib import Path
from typing import Any

import polars as pl

from cellfeatures._util.checksums import cached_sha256
from cellfeatures._version import PIPELINE_CODE_VERSION
from cellfeatures.errors import (
    DamagedVersionError,
    os_error_code,
)
from cellfeatures.pipelines import FeatureSpec

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


def column_stats(df: pl.DataFrame, spec: FeatureSpec, origin: str) -> dict[str, Any]:
    col = df[spec.name]
    stats: dict[str, Any] = {
        "dtype": spec.dtype,
        "unit": spec.unit,
        "family": spec.family,
        "origin": origin,
        "description": spec.description,
        **({"caveat": spec.caveat} if spec.caveat else {}),
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


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            out.update(flatten(value, name))
        else:
            out[name] = value
    return out


def read_manifest(path: Path) -> dict[str, Any]:
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


def version_problems(path: Path) -> list[str]:
    """Problems with a version directory: files missing, sizes or SHA-256 differing from the manifest,
    a matrix that no longer matches its schema. Empty when the version is sound."""
    m = read_manifest(path)
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
