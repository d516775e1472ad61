"""Build a Source from a config's [source] section."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cellfeatures.errors import ConfigError
from cellfeatures.sources.base import Source


def make_source(
    cfg: dict[str, Any],
    tables: list[str] | None = None,
    progress: Callable[[str], None] | None = None,
    names: dict[str, Any] | None = None,
) -> Source:
    """`tables`: what the build will read (a cave or static source fetches exactly those); `progress` hears
    slow first steps; `names`: the nucleus, synapse and tag tables (a static keep = "cells" fetch needs them)."""
    kind = cfg.get("kind")
    if kind is None:
        raise ConfigError('[source] has no `kind`: name the source (e.g. kind = "snapshot" or kind = "sample")')
    if kind == "sample":
        from cellfeatures.sources.sample import SampleSource

        return SampleSource(cache_dir=cfg.get("cache_dir"), progress=progress)
    if kind == "snapshot":
        from cellfeatures.sources.snapshot import SnapshotSource

        paths = cfg.get("paths") or ([cfg["path"]] if cfg.get("path") else [])
        if not paths:
            raise ConfigError("[source] kind = 'snapshot' needs `path` (a directory of table files)")
        resolution = cfg.get("position_resolution_nm")
        return SnapshotSource(
            *paths,
            datastack=cfg.get("datastack"),
            materialization_version=cfg.get("materialization_version"),
            timestamp=cfg.get("timestamp"),
            position_resolution_nm=tuple(resolution) if resolution else None,
        )
    if kind == "synthetic":
        from cellfeatures.sources.synthetic.cells import SyntheticSpec
        from cellfeatures.sources.synthetic.snapshot import SyntheticSource

        params = {k: v for k, v in cfg.items() if k not in ("kind", "cache_dir")}
        try:
            spec = SyntheticSpec(**params)
        except TypeError as exc:
            raise ConfigError(f"[source] synthetic: {exc}") from exc
        return SyntheticSource(spec, cache_dir=cfg.get("cache_dir"))
    if kind == "static":
        from cellfeatures.sources.static.fetch import StaticSource

        return StaticSource.from_config(cfg, tables or [], **(names or {}))
    if kind == "cave":
        from cellfeatures.sources.cave.snapshotter import CaveSource

        return CaveSource.from_config(cfg, tables or [])
    raise ConfigError(f"[source] unknown kind {kind!r}")
