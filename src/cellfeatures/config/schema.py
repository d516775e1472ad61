"""Every key a config may hold, with its type: typos and wrong types are errors naming the key and file.

Why: a misspelt key (`depht_method`, `row_limt`) used to be ignored silently, so a build ran with the
default and published numbers for a setting the user never asked for. A value of the wrong type (a
path given as a number, a resolution of two components) used to surface as a traceback deep inside.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any

from cellfeatures._util.names import did_you_mean
from cellfeatures.errors import ConfigError

Check = Callable[[Any], str | None]  # None when the value is fine, else what is wrong with it


def _is(kind: type | tuple[type, ...], what: str) -> Check:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            return f"must be {what}, got the boolean {value!r}"
        return None if isinstance(value, kind) else f"must be {what}, got {value!r}"

    return check


STR = _is(str, "a string")
BOOL = _is(bool, "true or false")


def positive_int(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return f"must be a positive integer, got {value!r}"
    return None


def non_negative_int(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return f"must be an integer >= 0, got {value!r}"
    return None


def non_negative_number(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or value != value:
        return f"must be a number >= 0, got {value!r}"
    return None


def fraction(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        return f"must be a number between 0 and 1, got {value!r}"
    return None


def resolution(value: Any) -> str | None:
    ok = (
        isinstance(value, list)
        and len(value) == 3
        and all(isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in value)
    )
    return None if ok else f"must be three positive numbers [x, y, z] (nm per unit), got {value!r}"


def one_of(*choices: str) -> Check:
    def check(value: Any) -> str | None:
        return None if value in choices else f"must be one of {list(choices)}, got {value!r}"

    return check


def str_list(value: Any) -> str | None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return f"must be a list of strings, got {value!r}"
    return None


def int_list(value: Any) -> str | None:
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return f"must be a list of integers, got {value!r}"
    return None


FETCH_KEYS: dict[str, Check] = {
    "mode": one_of("all", "cells", "values"),
    "cells_from": STR,
    "column": STR,
    "values_from": STR,
}
SOURCE_COMMON: dict[str, Check] = {"kind": STR, "cache_dir": STR}
SOURCE_KEYS: dict[str, dict[str, Check]] = {
    "sample": {},
    "snapshot": {
        "path": STR,
        "paths": str_list,
        "datastack": STR,
        "materialization_version": positive_int,
        "timestamp": STR,
        "position_resolution_nm": resolution,
    },
    "cave": {
        "datastack": STR,
        "server": STR,
        "version": positive_int,
        "row_limit": positive_int,
        "position_resolution_nm": resolution,
        "retries": non_negative_int,
        "backoff_s": non_negative_number,
        "batch_size": positive_int,
        "out": STR,
        "fetch": lambda v: (
            None if isinstance(v, dict) else f"must be a table of [source.fetch.<table>] blocks, got {v!r}"
        ),
    },
}


def _stems(value: Any) -> str | None:
    ok = isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    return None if ok else f'must be a table of table = "file stem" pairs, got {value!r}'


SOURCE_KEYS["static"] = {
    "datastack": STR,
    "base_url": STR,
    "version": positive_int,
    "timestamp": STR,
    "out": STR,
    "keep": one_of("all", "cells"),
    "cells_from": STR,
    "keep_download": BOOL,
    "part_rows": positive_int,
    "retries": non_negative_int,
    "backoff_s": non_negative_number,
    "timeout_s": non_negative_number,
    "files": _stems,
    "position_resolution_nm": resolution,
}
FAMILY_KEYS: dict[str, dict[str, Check]] = {
    "nucleus": {"area_table": STR, "depth_method": one_of("standard_transform", "y_offset")},
    "synapses": {
        "synapse_table": STR,
        "target_table": STR,
        "partner_label_table": STR,
        "soma_distance": BOOL,
        "validate_max_rows": positive_int,
        "engine": one_of("auto", "lazy", "bucketed"),
        "bucketed_above_rows": positive_int,
        "range_rows": positive_int,
        "buckets": positive_int,
    },
    "functional": {"coregistration_table": STR, "digital_twin_table": STR},
    "proofreading": {"table": STR},
}


def column_texts(what: str) -> Check:
    """A table of column = "<what>" strings (an external block's descriptions, caveats)."""
    return lambda v: (
        None if isinstance(v, dict) and all(isinstance(d, str) for d in v.values()) else f"must be a table of {what}"
    )


EXTERNAL_KEYS: dict[str, Check] = {
    "table": STR,
    "path": STR,
    "key": STR,
    "prefix": STR,
    "origin": one_of("real", "derived", "synthetic"),
    "descriptions": column_texts('column = "what it measures"'),
    "caveats": column_texts('column = "what a modeller must know before using it"'),
    "columns": lambda v: (
        None
        if isinstance(v, dict) and all(isinstance(u, str) for u in v.values())
        else f"must be a table of column = unit strings, got {v!r}"
    ),
}
EXECUTION_KEYS: dict[str, Check] = {
    "engine": one_of("local", "dask"),
    "address": STR,
    "cluster": one_of("local"),
    "workers": positive_int,
    "threads": positive_int,
    "scratch": STR,
    "connect_timeout_s": lambda v: (
        None if isinstance(v, int | float) and not isinstance(v, bool) and v > 0 else f"must be > 0, got {v!r}"
    ),
    "memory_limit": STR,
}


def str_table(value: Any) -> str | None:
    if isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) and v for k, v in value.items()):
        return None
    return f'must be a table of name = "feature pattern" strings, got {value!r}'


RUN_KEYS: dict[str, Check] = {
    "datasets": str_list,
    "seeds": int_list,
    "agreement": str_list,
    "report": BOOL,
    "ablations": str_table,
}
IDENTITY_KEYS: dict[str, Check] = {"nucleus_table": STR}


def folder(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return f"must name a folder (an empty root would write into the project folder itself), got {value!r}"
    return None


ROOT_KEYS: dict[str, Check] = {"root": folder}
LABEL_KEYS: dict[str, Check] = {"tables": str_list, "table": STR, "kind": one_of("manual", "model"), "description": STR}


def check_block(block: Any, keys: dict[str, Check], section: str, where: str) -> None:
    """Unknown keys and wrong types in one [section] are ConfigErrors naming the key and the file."""
    if not isinstance(block, dict):
        raise ConfigError(f"{where}: [{section}] must be a table, got {block!r}")
    for key, value in block.items():
        if key not in keys:
            raise ConfigError(
                f"{where}: unknown key {key!r} in [{section}]{did_you_mean(key, list(keys))}; known: {sorted(keys)}"
            )
        problem = keys[key](value)
        if problem:
            raise ConfigError(f"{where}: [{section}] {key} {problem}")


def synthetic_keys() -> dict[str, Check]:
    from cellfeatures.sources.synthetic.cells import SyntheticSpec

    out: dict[str, Check] = {}
    for f in fields(SyntheticSpec):
        if f.type in ("float", float):
            out[f.name] = fraction if f.name.endswith("fraction") else non_negative_number
        elif f.type in ("bool", bool):
            out[f.name] = BOOL
        elif f.name == "seed":
            out[f.name] = non_negative_int
        else:
            out[f.name] = positive_int
    return out


def check_raw(raw: dict[str, Any], where: str) -> None:
    """Validate a whole config dict (after TOML parsing and --set overrides)."""
    source = raw.get("source", {})
    if not isinstance(source, dict):
        raise ConfigError(f"{where}: [source] must be a table, got {source!r}")
    kind = source.get("kind")
    if kind in SOURCE_KEYS or kind == "synthetic":
        specific = synthetic_keys() if kind == "synthetic" else SOURCE_KEYS[kind]
        check_block(source, {**SOURCE_COMMON, **specific}, "source", where)
        for table, block in source.get("fetch", {}).items():
            check_block(block, FETCH_KEYS, f"source.fetch.{table}", where)
    check_block(raw.get("identity", {}), IDENTITY_KEYS, "identity", where)
    for section in ("store", "datasets"):
        check_block(raw.get(section, {}), ROOT_KEYS, section, where)
    check_block(raw.get("run", {}), RUN_KEYS, "run", where)
    check_block(raw.get("execution", {}), EXECUTION_KEYS, "execution", where)
    features = raw.get("features", {})
    if not isinstance(features, dict):
        raise ConfigError(f"{where}: [features] must be a table of families, got {features!r}")
    for family, block in features.items():
        if family == "external":
            if not isinstance(block, dict):
                raise ConfigError(f"{where}: [features.external] must be a table, got {block!r}")
            for name, sub in block.items():
                check_block(sub, EXTERNAL_KEYS, f"features.external.{name}", where)
        elif family in FAMILY_KEYS:
            check_block(block, FAMILY_KEYS[family], f"features.{family}", where)
    labels = raw.get("labels", {})
    if not isinstance(labels, dict):
        raise ConfigError(f"{where}: [labels] must be a table, got {labels!r}")
    for name, block in labels.items():
        check_block(block, LABEL_KEYS, f"labels.{name}", where)
    datasets = raw.get("dataset", {})
    if not isinstance(datasets, dict) or not all(isinstance(b, dict) for b in datasets.values()):
        raise ConfigError(f"{where}: [dataset.<name>] blocks must be tables")
