"""Proofreading status per root and identity quality flags."""

from __future__ import annotations

import polars as pl

from cellfeatures.pipelines import proofreading
from tests.conftest import context, nucleus_frame


def test_status_strategy_root_change_and_quality_flags(snapshot) -> None:
    proof = pl.DataFrame(
        {
            "id": [1, 2, 3],
            "valid": ["t", "t", "t"],  # older servers send 't'/'f' strings
            "valid_id": [101, 555, 102],
            "pt_root_id": [101, 102, 102],
            "status_dendrite": ["t", "f", "t"],
            "status_axon": ["f", "f", "t"],
            "strategy_dendrite": ["dendrite_clean", "none", "dendrite_extended"],
            "strategy_axon": ["none", "none", "axon_fully_extended"],
        }
    )
    source = snapshot(
        {
            "nucleus_detection_v0": nucleus_frame(
                [
                    (1, 101, 0, 0, 0),
                    (2, 102, 0, 0, 0),
                    (3, 103, 0, 0, 0),
                    (4, 104, 0, 0, 0),
                    (5, 104, 0, 0, 0),
                    (6, 0, 0, 0, 0),
                ]
            ),
            "proofreading_status_and_strategy": proof,
        }
    )
    out = proofreading.build(context(source), {}).collect()
    rows = {r["nucleus_id"]: r for r in out.iter_rows(named=True)}
    assert rows[1]["proof_status_dendrite"] is True and rows[1]["proof_status_axon"] is False
    assert rows[1]["proof_root_changed"] is False
    assert rows[2]["proof_strategy_axon"] == "axon_fully_extended", "the latest assessment of a root wins"
    assert rows[2]["proof_root_changed"] is False
    assert rows[3]["proof_assessed"] is False and rows[3]["proof_status_axon"] is None, "not assessed != not proofread"
    assert rows[4]["qc_multi_soma"] and rows[4]["qc_nuclei_on_root"] == 2
    assert rows[6]["qc_missing_root"] and rows[6]["qc_nuclei_on_root"] == 0 and rows[6]["proof_assessed"] is False
    assert out.columns == ["nucleus_id", *[s.name for s in proofreading.features({})]]


def test_a_root_changed_since_assessment_is_flagged(snapshot) -> None:
    proof = pl.DataFrame(
        {
            "id": [1],
            "valid": [True],
            "valid_id": [999],
            "pt_root_id": [101],
            "status_dendrite": [True],
            "status_axon": [True],
            "strategy_dendrite": ["dendrite_clean"],
            "strategy_axon": ["axon_interareal"],
        }
    )
    source = snapshot(
        {"nucleus_detection_v0": nucleus_frame([(1, 101, 0, 0, 0)]), "proofreading_status_and_strategy": proof}
    )
    assert proofreading.build(context(source), {}).collect()["proof_root_changed"].to_list() == [True]
