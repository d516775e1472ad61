"""Build configuration: a TOML file with [source], [identity], [features.*] and [store].

Only the [identity] and [features] sections shape the feature matrix, so only they (plus the source
fingerprint and the pipeline code version) enter a feature version's hash; [store] paths do not.
"""

from __future__ import annotations

import copy
import os
import tomllib
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

from cellfeatures.config.paths import find_project, project_of_config, resolve_under
from cellfeatures.config.schema import check_raw
from cellfeatures.errors import ConfigError

KNOWN_SECTIONS = {
    "name",
    "description",
    "source",
    "identity",
    "features",
    "store",
    "datasets",
    "dataset",
    "labels",
    "run",
    "execution",
}
KNOWN_FAMILIES = {"nucleus", "synapses", "functional", "proofreading", "external"}
SOURCE_KINDS = {"sample", "snapshot", "synthetic", "cave", "static"}
# Tables each family cannot do without (option -> default table) and tables it can do without.
REQUIRED_TABLES: dict[str, dict[str, str]] = {
    "synapses": {"synapse_table": "synapses_pni_2"},
    "functional": {
        "coregistration_table": "coregistration_manual_v4",
        "digital_twin_table": "digital_twin_properties_bcm_coreg_v4",
    },
}
# [features.synapses] keys that say how the plan runs, not what it computes (not part of the version id)
EXECUTION_OPTIONS = frozenset({"engine", "range_rows", "buckets", "bucketed_above_rows", "validate_max_rows"})
OPTIONAL_TABLES: dict[str, dict[str, str]] = {
    "nucleus": {"area_table": ""},
    "synapses": {"target_table": "", "partner_label_table": ""},
    "proofreading": {"table": "proofreading_status_and_strategy"},
}


@dataclass
class Config:
    name: str
    source: dict[str, Any]
    identity: dict[str, Any]
    features: dict[str, Any]
    store_root: str = "features"
    datasets_root: str = "datasets"
    path: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    def feature_set(self) -> dict[str, Any]:
        """The part of the config that determines the feature matrix (hashed into the version).

        Execution settings are left out: how the synapse plan runs (engine, range and bucket sizes, the
        validation threshold) cannot change the matrix (the engines agree bit for bit, tested), so it must
        not change the version id either.
        """
        features = {
            family: {k: v for k, v in block.items() if not (family == "synapses" and k in EXECUTION_OPTIONS)}
            if isinstance(block, dict)
            else block
            for family, block in self.features.items()
        }
        return {"identity": self.identity, "features": features}

    def table_roles(self) -> dict[str, Any]:
        """The nucleus, synapse and tag tables by role (a static keep = "cells" fetch filters by them)."""
        synapses = self.features.get("synapses", {})
        return {
            "nucleus_table": self.identity["nucleus_table"],
            "synapse_table": synapses.get("synapse_table", "synapses_pni_2"),
            "tag_table": synapses.get("target_table") or None,
            "optional": self.label_tables_wanted(),
        }

    def required_tables(self) -> dict[str, str]:
        """Table -> what needs it, for the tables a build cannot do without (the nucleus table, each family's
        required table, each external table). An empty one is an error, not "0 synapses, measured"."""
        needed = {self.identity["nucleus_table"]: "the identity (every cell)"}
        for family, block in self.features.items():
            if family == "external":
                needed.update({b["table"]: f"[features.external.{n}]" for n, b in block.items() if b.get("table")})
            for option, default in REQUIRED_TABLES.get(family, {}).items():
                if block.get(option, default):
                    needed[block.get(option, default)] = f"[features.{family}] {option}"
        return needed

    def label_tables_wanted(self) -> list[str]:
        """Label tables the config's datasets and [run] agreement read (optional: fetched when they exist)."""
        from cellfeatures.labels.sources import label_sources

        sources = label_sources(self.raw.get("labels"))
        names = {str(b.get("label", "manual")) for b in self.raw.get("dataset", {}).values() if isinstance(b, dict)}
        names.update(self.raw.get("run", {}).get("agreement", []))
        tables = {t for n in names if n in sources for t in sources[n].tables}
        return sorted(tables - set(self.tables_needed()))

    def tables_needed(self) -> list[str]:
        """Every source table a build of this config reads (the identity table and each family's inputs)."""
        from cellfeatures.pipelines import FAMILIES

        tables = {self.identity["nucleus_table"]}
        for name, cfg in self.features.items():
            tables.update(FAMILIES[name].inputs(cfg))
        return sorted(t for t in tables if t)

    def for_tables(self, available: set[str], strict: bool = False) -> tuple[Config, list[dict[str, str]]]:
        """The config a source holding only `available` tables can build, and what had to be skipped.

        Why: a user who fetched only nucleus, synapses and cell types should get those families, not a
        failure on the first optional table. A family whose required table is missing is skipped; an
        optional input (area table, target tags, partner labels, proofreading table) is dropped from its
        family; the nucleus table is the one table nothing can do without. `strict` turns any skip into
        an error. The returned config is what gets hashed, so the version says what was really built.
        """
        nucleus = self.identity["nucleus_table"]
        if nucleus not in available:
            raise ConfigError(f"the nucleus table {nucleus!r} is not in the source: nothing can be built without it")
        raw = copy.deepcopy(self.raw)
        features = raw.setdefault("features", {})
        skipped: list[dict[str, str]] = []
        for family in list(features):
            block = features[family]
            if family == "external":
                for name in list(block):
                    table = block[name].get("table")
                    if table and table not in available:
                        skipped.append({"family": f"external.{name}", "table": table, "why": "table not in the source"})
                        del block[name]
                if not block:
                    del features[family]
                continue
            for option, default in REQUIRED_TABLES.get(family, {}).items():
                table = block.get(option, default)
                if table and table not in available:
                    skipped.append(
                        {"family": family, "table": table, "why": f"required ({option}) but not in the source"}
                    )
                    del features[family]
                    break
            else:
                for option, default in OPTIONAL_TABLES.get(family, {}).items():
                    table = block.get(option, default)
                    if table and table not in available:
                        skipped.append(
                            {"family": family, "table": table, "why": f"optional input ({option}) not in the source"}
                        )
                        block[option] = ""
        if skipped and strict:
            lines = "; ".join(f"{s['family']}: {s['table']} ({s['why']})" for s in skipped)
            raise ConfigError(f"{self.path or 'config'}: --strict and the source lacks tables: {lines}")
        if not features:
            raise ConfigError(f"{self.path or 'config'}: no family can be built from this source ({skipped})")
        return (from_dict(raw, self.path) if skipped else self), skipped

    def with_value(self, dotted: str, value: Any) -> Config:
        """A copy with one value changed, e.g. with_value('features.synapses.soma_distance', False)."""
        raw = copy.deepcopy(self.raw)
        node = raw
        keys = dotted.split(".")
        if not all(keys):
            raise ConfigError(f"--set {dotted}: empty key part")
        for i, key in enumerate(keys[:-1]):
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {dotted}: [{'.'.join(keys[: i + 1])}] is not a table")
        node[keys[-1]] = value
        return from_dict(raw, self.path)

    def with_override(self, item: str) -> Config:
        """A copy with one `KEY=VALUE` override (VALUE in TOML: strings quoted, true/false, numbers, lists)."""
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f'--set needs KEY=VALUE (e.g. features.nucleus.depth_method="y_offset"), got {item!r}')
        try:
            value = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            raise ConfigError(
                f"--set {key}: {text.strip()!r} is not a TOML value; quote strings "
                f"(--set '{key}=\"{text.strip()}\"'), write booleans as true/false"
            ) from None
        return self.with_value(key, value)


def from_dict(raw: dict[str, Any], path: Path | None = None) -> Config:
    where = str(path) if path else "config"
    unknown = set(raw) - KNOWN_SECTIONS
    if unknown:
        raise ConfigError(f"{where}: unknown top-level key(s) {sorted(unknown)}; expected {sorted(KNOWN_SECTIONS)}")
    if "source" not in raw or not isinstance(raw["source"], dict) or "kind" not in raw["source"]:
        what = "has no [source] section" if "source" not in raw else "[source] needs a table with `kind`"
        raise ConfigError(
            f'{where} {what}: say where the tables come from, e.g. [source] kind = "snapshot" with '
            f'path = "<folder>", or kind = "sample" for the embedded sample (nothing is assumed: a missing '
            f"section used to build from the sample silently)"
        )
    source = dict(raw["source"])
    if source.get("kind") not in SOURCE_KINDS:
        raise ConfigError(f"{where}: [source] kind must be one of {sorted(SOURCE_KINDS)}, got {source.get('kind')!r}")
    check_raw(raw, where)
    features = dict(raw.get("features", {}))
    bad = set(features) - KNOWN_FAMILIES
    if bad:
        raise ConfigError(f"{where}: unknown feature famil(ies) {sorted(bad)}; known: {sorted(KNOWN_FAMILIES)}")
    if not features:
        raise ConfigError(f"{where}: no [features.*] section: nothing to build")
    identity = {"nucleus_table": "nucleus_detection_v0", **raw.get("identity", {})}
    store = raw.get("store", {})
    project = project_of_config(path)  # relative roots mean the project's, not the working directory's
    if source.get("kind") == "static":  # its folders too (a new kind: no older meaning to keep)
        for key in ("cache_dir", "out"):
            if isinstance(source.get(key), str):
                source[key] = str(resolve_under(project, source[key]))
        source.setdefault("cache_dir", str(resolve_under(project, "static_exports")))
        base = source.get("base_url")
        if isinstance(base, str) and "://" not in base:
            source["base_url"] = str(resolve_under(project, base))
    return Config(
        name=str(raw.get("name", path.stem if path else "config")),
        source=source,
        identity=identity,
        features=features,
        store_root=str(resolve_under(project, store.get("root", "features"))),
        datasets_root=str(resolve_under(project, raw.get("datasets", {}).get("root", "datasets"))),
        path=path,
        raw=raw,
    )


def load_config(path: str | Path) -> Config:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    return from_dict(raw, path)


def packaged_config_path(name: str = "sample") -> Path:
    return Path(str(files("cellfeatures") / "configs" / f"{name}.toml"))


def default_config() -> Config:
    """configs/sample.toml of the project (found from the working directory up), else the package's copy."""
    local = (find_project() or Path.cwd()) / "configs" / "sample.toml"
    return load_config(local if local.exists() else packaged_config_path("sample"))


def datasets_root(root: str | os.PathLike[str] | None = None, config: Config | None = None) -> Path:
    """The datasets root: `root` when given, else the config's, else the project's default config's.

    The one place that answers "where are the datasets" when a caller did not say.
    """
    if root is not None:
        return Path(root)
    return Path((config or default_config()).datasets_root)
