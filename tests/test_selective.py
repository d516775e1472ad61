"""Tables that abstain, compared on matched cells: covered-cell comparisons, equal coverage and the
accuracy–coverage curve, each reproduced by hand on a planted example."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl

from cellfeatures.benchmark.entries import EntryResult
from cellfeatures.benchmark.models import EXISTING, TRAINED
from cellfeatures.benchmark.selective import covered_comparisons, selective_comparisons, selective_curve

CLASSES = ["A", "B"]
N = 40
SEEDS = [0, 1]


class Blocks:
    """The one thing the bootstrap reads of a dataset: which spatial block each cell is in."""

    def __init__(self, n: int) -> None:
        self.splits = pl.DataFrame({"nucleus_id": np.arange(1, n + 1), "block": np.arange(n) // 4})


def planted() -> tuple[EntryResult, EntryResult, np.ndarray, dict[int, np.ndarray], dict[int, np.ndarray]]:
    rng = np.random.default_rng(7)
    ids = np.arange(1, N + 1)
    truth = np.where(rng.random(N) < 0.6, "A", "B")
    frames, confidences = [], {}
    preds = {}
    for seed in SEEDS:
        p_a = np.clip(np.where(truth == "A", 0.75, 0.3) + rng.normal(0, 0.2, N), 0.01, 0.99)
        pred = np.where(p_a >= 0.5, "A", "B")
        preds[seed], confidences[seed] = pred, np.maximum(p_a, 1 - p_a)
        frames.append(
            pl.DataFrame(
                {
                    "seed": seed,
                    "fold": "0",
                    "nucleus_id": ids,
                    "y_true": truth,
                    "y_pred": pred,
                    "p_A": p_a,
                    "p_B": 1 - p_a,
                }
            )
        )
    model = EntryResult("model", TRAINED, SEEDS, [], [], ["real"], pl.concat(frames))
    # the table labels cells 1..30 (75%), right on 25 of them, and abstains on 31..40
    table_pred = np.where(np.arange(N) < 30, truth, "<none>")
    table_pred[[2, 9, 14, 21, 27]] = np.where(truth[[2, 9, 14, 21, 27]] == "A", "B", "A")
    rows = pl.concat(
        [
            pl.DataFrame({"seed": s, "fold": "0", "nucleus_id": ids, "y_true": truth, "y_pred": table_pred})
            for s in SEEDS
        ]
    )
    table = EntryResult("table:t", EXISTING, SEEDS, [], [], ["real"], rows, coverage=0.75, covered={"n": 30})
    return model, table, truth, preds, confidences


def balanced(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean([np.mean(p[y == c] == c) for c in CLASSES if (y == c).any()]))


def test_the_accuracy_coverage_curve_is_the_accuracy_of_the_most_confident_cells() -> None:
    model, _table, truth, preds, conf = planted()
    curve = selective_curve(model, CLASSES, (1.0, 0.75, 0.5))
    for row in curve:
        keep = math.ceil(N * row["coverage"])
        by_hand_acc, by_hand_bal = [], []
        for seed in SEEDS:
            order = np.lexsort((np.arange(1, N + 1), -conf[seed]))[:keep]  # most confident first, ties by id
            by_hand_acc.append(np.mean(preds[seed][order] == truth[order]))
            by_hand_bal.append(balanced(truth[order], preds[seed][order]))
        assert row["cells"] == keep
        assert abs(row["accuracy"] - np.mean(by_hand_acc)) < 1e-12
        assert abs(row["balanced_accuracy"] - np.mean(by_hand_bal)) < 1e-12


def test_a_table_that_abstains_on_a_known_subset_is_compared_on_exactly_those_cells() -> None:
    model, table, truth, preds, conf = planted()
    datasets: dict[int, Any] = {s: Blocks(N) for s in SEEDS}
    covered_comparisons([model, table], datasets, CLASSES)
    (row,) = table.covered["models"]  # type: ignore[index]
    cells = np.arange(30)
    assert row["cells"] == 30
    assert abs(row["accuracy"]["a"] - 25 / 30) < 1e-12  # the table: 25 right of the 30 it labels
    model_acc = np.mean([np.mean(preds[s][cells] == truth[cells]) for s in SEEDS])
    assert abs(row["accuracy"]["b"] - model_acc) < 1e-12
    assert abs(row["accuracy"]["diff"] - (model_acc - 25 / 30)) < 1e-12
    assert row["accuracy"]["low"] <= row["accuracy"]["diff"] <= row["accuracy"]["high"]

    # at equal coverage the model keeps its 30 most confident cells per seed, whichever they are
    selective_comparisons([model, table], datasets, CLASSES)
    (equal,) = table.covered["at_equal_coverage"]  # type: ignore[index]
    kept_acc = np.mean(
        [np.mean(preds[s][o] == truth[o]) for s in SEEDS for o in [np.lexsort((np.arange(N), -conf[s]))[:30]]]
    )
    assert abs(equal["accuracy"]["b"] - kept_acc) < 1e-12
    assert abs(equal["accuracy"]["a"] - 25 / 30) < 1e-12


def test_two_identical_prediction_sets_differ_by_exactly_zero_in_every_replicate() -> None:
    model, _table, _truth, _preds, _conf = planted()
    twin = EntryResult(
        "table:twin",
        EXISTING,
        SEEDS,
        [],
        [],
        ["real"],
        model.predictions.select("seed", "fold", "nucleus_id", "y_true", "y_pred"),
        coverage=1.0,
        covered={"n": N},
    )
    covered_comparisons([model, twin], {s: Blocks(N) for s in SEEDS}, CLASSES)
    (row,) = twin.covered["models"]  # type: ignore[index]
    for metric in ("accuracy", "balanced_accuracy"):
        assert row[metric]["diff"] == 0 and row[metric]["low"] == 0 and row[metric]["high"] == 0
        assert not row[metric]["distinguishable"]
