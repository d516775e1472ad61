"""Label sources: harmonised, conflicts dropped and counted, agreement before and after harmonisation."""

from __future__ import annotations

import polars as pl
import pytest
from sklearn.metrics import cohen_kappa_score

from cellfeatures.labels.agreement import agreement
from cellfeatures.labels.sources import LabelSourceSpec, load_labels
from tests.conftest import cell_type_frame


def test_conflicts_are_dropped_and_unknown_spellings_reported(snapshot) -> None:
    source = snapshot({"a": cell_type_frame([(1, "23P"), (2, "BC"), (2, "MC"), (3, "5P-PT"), (4, "blob")])})
    labels = load_labels(source, LabelSourceSpec("x", ("a", "missing_table"), "manual"))
    assert labels.tables_used == ["a"] and labels.conflicting_nuclei == 1 and labels.unmapped == ["blob"]
    assert labels.at("type").rows() == [(1, "23P"), (3, "5P-ET")], "nucleus 2 conflicts; 'blob' has no type"
    assert labels.at("raw")["label_x_raw"].to_list() == ["23P", "5P-PT", "blob"]


def test_agreement_raw_versus_harmonised_on_a_hand_built_case(snapshot) -> None:
    source = snapshot(
        {
            "m": cell_type_frame([(1, "5P-PT"), (2, "6P-IT"), (3, "23P"), (4, "BC"), (5, "MC")]),
            "e": cell_type_frame([(1, "5P_PT"), (2, "6IT"), (3, "23P"), (4, "MC"), (6, "4P")]),
        }
    )
    a = load_labels(source, LabelSourceSpec("m", ("m",), "manual"))
    b = load_labels(source, LabelSourceSpec("e", ("e",), "model"))
    raw, typed = agreement(a, b, "raw"), agreement(a, b, "type")
    assert (raw.shared, raw.agreement) == (4, 0.25), "only 23P is spelled the same"
    assert (typed.shared, typed.agreement) == (4, 0.75), "5P-PT=5P_PT and 6P-IT=6IT after harmonisation"
    assert typed.kappa == pytest.approx(
        cohen_kappa_score(["5P-ET", "6P-IT", "23P", "BC"], ["5P-ET", "6P-IT", "23P", "MC"])
    )
    assert typed.confusion.filter(pl.col("a") == "BC")["MC"].item() == 1


def test_sample_manual_versus_early_model_agreement(sample_source) -> None:
    manual, early = load_labels(sample_source, "manual"), load_labels(sample_source, "early_model")
    raw, typed = agreement(manual, early, "raw"), agreement(manual, early, "type")
    assert raw.shared == 1327 and typed.shared == 1123
    assert raw.agreement == pytest.approx(677 / 1327) and typed.agreement == pytest.approx(909 / 1123)
    conf = typed.confusion
    assert conf.filter(pl.col("a") == "23P")["23P"].item() == 311, "the published golden count"
    assert conf.filter(pl.col("a") == "5P-ET")["5P-ET"].item() == 29, "5P-PT and 5P_PT meet only after harmonisation"
