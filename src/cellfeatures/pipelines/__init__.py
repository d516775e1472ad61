"""Feature families, in the order they are built and joined. Each is a module; see pipelines.base."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from cellfeatures.pipelines import external, functional, nucleus, proofreading, synapses
from cellfeatures.pipelines.base import BuildContext, FeatureSpec

FAMILIES: dict[str, ModuleType] = {
    "nucleus": nucleus,
    "synapses": synapses,
    "functional": functional,
    "proofreading": proofreading,
    "external": external,
}


def catalogue(
    features_cfg: dict[str, Any], external_dtypes: dict[str, dict[str, str]] | None = None
) -> list[FeatureSpec]:
    """Every feature the enabled families produce, with dtype, unit, family and description."""
    specs: list[FeatureSpec] = []
    for name, module in FAMILIES.items():
        if name not in features_cfg:
            continue
        cfg = features_cfg[name]
        specs += module.features(cfg, external_dtypes) if name == "external" else module.features(cfg)
    return specs


__all__ = ["FAMILIES", "BuildContext", "FeatureSpec", "catalogue"]
