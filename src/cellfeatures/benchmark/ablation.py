"""What a group of features adds: a trained model refitted without them, on the same folds and seeds, and
the full model minus the ablated one as a paired difference, on every test cell and on the cells that
have the features (a feature present for few cells can only help those).

Why paired and on both cell sets: "the synapse counts add 0.01" is a claim about the same cells with and
without a feature group, so its interval must come from the same cluster draws for both models; and when
the group is missing for most cells of some classes, the gain over all cells mixes "helps where present"
with "imputed where absent".
"""

from __future__ import annotations

import fnmatch

import numpy as np
import polars as pl

from cellfeatures.benchmark.entries import EntryResult, differences_to
from cellfeatures.benchmark.models import ABLATED_MODELS, ABLATION
from cellfeatures.datasets.dataset import Dataset
from cellfeatures.errors import ConfigError


def _feature(column: str) -> str:
    """The feature a design-matrix column comes from (`name=value` columns are one-hot strings)."""
    return column.split("=")[0]


def ablation_name(model: str, group: str) -> str:
    return f"{model}_without_{group}"


def planned(
    models: tuple[str, ...], names: list[str], ablations: dict[str, str]
) -> list[tuple[str, str, tuple[str, ...], str]]:
    """(entry name, base model, design columns left out, group) for every ablation and every ablated model
    that is run. A pattern that matches no feature, or every feature, is a ConfigError: an ablation that
    silently measured nothing would print a gain of exactly zero."""
    out = []
    for group, pattern in ablations.items():
        dropped = tuple(n for n in names if fnmatch.fnmatch(_feature(n), pattern))
        if not dropped or len(dropped) == len(names):
            what = "no feature" if not dropped else "every feature"
            raise ConfigError(
                f"[run] ablations: {group} = {pattern!r} matches {what} of the dataset; its features: "
                f"{', '.join(sorted({_feature(n) for n in names}))}"
            )
        out += [(ablation_name(m, group), m, dropped, group) for m in ABLATED_MODELS if m in models]
    return out


def _with_features(datasets: dict[int, Dataset], dropped: tuple[str, ...]) -> pl.DataFrame:
    """nucleus ids of the cells with at least one of the dropped features present."""
    data = next(iter(datasets.values())).data
    columns = [c for c in {_feature(d) for d in dropped} if c in data.columns]
    return data.filter(pl.any_horizontal(pl.col(c).is_not_null() for c in columns)).select("nucleus_id")


def ablation_gains(
    entries: list[EntryResult],
    datasets: dict[int, Dataset],
    classes: list[str],
    plans: list[tuple[str, str, tuple[str, ...], str]],
) -> None:
    """In place: each ablation entry's `gain` (full model minus ablated model, paired, both metrics, on all
    test cells and on the cells with the features)."""
    from cellfeatures.benchmark.selective import paired_subsets

    by_name = {e.entry: e for e in entries}
    for name, base, dropped, group in plans:
        ablated, full = by_name.get(name), by_name.get(base)
        if ablated is None or full is None or ablated.kind != ABLATION:
            continue
        everywhere = differences_to(ablated, [full], datasets, classes)[0]
        present = _with_features(datasets, dropped)
        a = ablated.predictions.join(present, on="nucleus_id", how="semi")
        b = full.predictions.join(present, on="nucleus_id", how="semi")
        with_cells = paired_subsets(datasets, a, b, full.predictions, classes) if a.height else None
        ablated.gain = {
            "model": base,
            "group": group,
            "features": sorted({_feature(d) for d in dropped}),
            "all_cells": everywhere,
            "cells_with_features": with_cells,
            "test_cells_with_features": int(np.round(a.height / max(len(ablated.seeds), 1))),
            "test_cells": int(full.predictions.height / max(len(full.seeds), 1)),
        }
