"""Dataset cards: risks computed from the data, checked on hand-built tables."""

from __future__ import annotations

import polars as pl

from cellfeatures.datasets.card import class_dependent_coverage


def test_a_feature_measured_for_most_cells_of_one_class_and_few_of_another_is_a_named_risk() -> None:
    data = pl.DataFrame(
        {
            "label": ["A"] * 10 + ["B"] * 10 + ["C"] * 3,
            # A: 9 of 10 present, B: 2 of 10 present (a 70-point gap); C has too few cells to count
            "counts": [1.0] * 9 + [None] + [1.0] * 2 + [None] * 8 + [None] * 3,
            # present for 6 of 10 in both classes: no gap
            "even": [1.0] * 6 + [None] * 4 + [1.0] * 6 + [None] * 4 + [1.0] * 3,
        }
    )
    (risk,) = class_dependent_coverage(data, "label", ["counts", "even"])
    assert risk.startswith("counts is present for 90% of A cells but 20% of B cells")


def test_a_gap_at_the_threshold_is_not_a_risk() -> None:
    data = pl.DataFrame({"label": ["A"] * 10 + ["B"] * 10, "x": [1.0] * 10 + [1.0] * 7 + [None] * 3})
    assert class_dependent_coverage(data, "label", ["x"]) == []
