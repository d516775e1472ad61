"""Agreement between two label sets on their shared cells: raw spellings or a harmonised level, with the
confusion table and Cohen's kappa. Reads label sets; loads nothing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from cellfeatures.labels.sources import LabelSet


@dataclass
class Agreement:
    """Two label sources compared on the cells both label."""

    a: str
    b: str
    level: str
    shared: int
    agreement: float | None
    kappa: float | None
    confusion: pl.DataFrame  # rows: a's labels, columns: b's labels, counts

    def as_dict(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "level": self.level,
            "shared_cells": self.shared,
            "agreement": self.agreement,
            "cohen_kappa": self.kappa,
            "confusion": self.confusion.to_dicts(),
        }


def agreement(a: LabelSet, b: LabelSet, level: str) -> Agreement:
    """Agreement and confusion of two label sets at one level ('raw' compares spellings as they are)."""
    left = a.at(level).rename({a.column(level): "a"})
    right = b.at(level).rename({b.column(level): "b"})
    both = left.join(right, on="nucleus_id", how="inner")
    if both.height == 0:
        return Agreement(a.spec.name, b.spec.name, level, 0, None, None, pl.DataFrame())
    agree = int((both["a"] == both["b"]).sum()) / both.height
    confusion = (
        both.group_by("a", "b")
        .len()
        .sort("a", "b")
        .pivot(on="b", index="a", values="len", sort_columns=True)
        .fill_null(0)
        .sort("a")
    )
    return Agreement(a.spec.name, b.spec.name, level, both.height, agree, _kappa(both["a"], both["b"]), confusion)


def _kappa(x: pl.Series, y: pl.Series) -> float | None:
    """Cohen's kappa from the contingency table (chance agreement from the marginals)."""
    labels = sorted(set(x.to_list()) | set(y.to_list()))
    index = {v: i for i, v in enumerate(labels)}
    table = np.zeros((len(labels), len(labels)))
    for u, v in zip(x.to_list(), y.to_list(), strict=True):
        table[index[u], index[v]] += 1
    n = table.sum()
    observed = np.trace(table) / n
    expected = float((table.sum(axis=0) * table.sum(axis=1)).sum() / n**2)
    return None if expected == 1 else float((observed - expected) / (1 - expected))
