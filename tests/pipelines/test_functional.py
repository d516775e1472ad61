"""Functional features equal a brute-force recomputation; circular statistics respect their periods."""

from __future__ import annotations

import math

import polars as pl
import pytest

from cellfeatures.pipelines import functional
from tests.conftest import context, nucleus_frame

NUCLEI = [(1, 101, 0, 0, 0), (2, 102, 0, 0, 0), (3, 103, 0, 0, 0), (4, 104, 0, 0, 0), (5, 104, 0, 0, 0)]
CFG = {"coregistration_table": "coreg", "digital_twin_table": "dt"}
# (root, session, scan, unit, cc_abs, OSI, pref_ori, pref_dir)
ROIS = [
    (101, 4, 1, 10, 0.50, 0.2, 179.0, 359.0),  # cell 1 straddles 0/180 and 0/360
    (101, 4, 2, 11, 0.70, 0.4, 1.0, 1.0),
    (101, 5, 1, 12, 0.70, 0.6, 3.0, 5.0),  # ties with unit 11 on cc_abs: smaller (session, scan, unit) wins
    (102, 4, 1, 20, None, 0.3, 90.0, 270.0),  # cell 2: cc_abs unknown
    (102, 4, 1, 21, 0.10, 0.1, 80.0, 260.0),
    (104, 6, 1, 40, 0.90, 0.9, 45.0, 45.0),  # merged root: withheld
]
COREG_ONLY = [(103, 7, 1, 30)]  # cell 3 coregistered, no digital-twin row


def tables() -> dict[str, pl.DataFrame]:
    coreg_rows = [r[:4] for r in ROIS] + COREG_ONLY + [ROIS[0][:4]]  # a duplicated ROI row
    coreg = pl.DataFrame(
        {
            "id": range(1, len(coreg_rows) + 1),
            "valid": [True] * len(coreg_rows),
            "pt_root_id": [r[0] for r in coreg_rows],
            "session": [r[1] for r in coreg_rows],
            "scan_idx": [r[2] for r in coreg_rows],
            "unit_id": [r[3] for r in coreg_rows],
        }
    )
    n = len(ROIS)
    dt = pl.DataFrame(
        {
            "id": range(1, n + 1),
            "valid": [True] * n,
            "pt_root_id": [r[0] for r in ROIS],
            "session": [r[1] for r in ROIS],
            "scan_idx": [r[2] for r in ROIS],
            "unit_id": [r[3] for r in ROIS],
            "cc_abs": [r[4] for r in ROIS],
            "cc_max": [0.9] * n,
            "cc_norm": [0.5] * n,
            "OSI": [r[5] for r in ROIS],
            "DSI": [0.1] * n,
            "gOSI": [0.2] * n,
            "gDSI": [0.05] * n,
            "pref_ori": [r[6] for r in ROIS],
            "pref_dir": [r[7] for r in ROIS],
        },
        schema_overrides={"cc_abs": pl.Float64},
    )
    return {"nucleus_detection_v0": nucleus_frame(NUCLEI), "coreg": coreg, "dt": dt}


def circ(angles: list[float], period: float) -> tuple[float, float]:
    k = 2 * math.pi / period
    c = sum(math.cos(a * k) for a in angles) / len(angles)
    s = sum(math.sin(a * k) for a in angles) / len(angles)
    return (math.atan2(s, c) / k) % period, math.hypot(c, s)


@pytest.fixture
def result(snapshot) -> dict[int, dict]:
    out = functional.build(context(snapshot(tables())), CFG).collect()
    assert out.columns == ["nucleus_id", *[s.name for s in functional.features(CFG)]]
    return {r["nucleus_id"]: r for r in out.iter_rows(named=True)}


def test_roi_counts_and_best_roi(result) -> None:
    assert result[1]["func_roi_count"] == 3, "the duplicated coregistration row counts once"
    assert result[1]["func_best_cc_abs"] == 0.70 and result[1]["func_best_osi"] == 0.4, "tie -> smaller unit"
    assert result[2]["func_best_cc_abs"] == 0.10, "null cc_abs never wins"
    assert result[3]["func_roi_count"] == 1 and result[3]["func_dt_roi_count"] == 0
    assert result[3]["func_osi_mean"] is None
    assert result[4]["func_roi_count"] == 0 and result[5]["func_best_osi"] is None, "merged root withheld"


def test_means_and_circular_statistics_match_brute_force(result) -> None:
    for nid, root in ((1, 101), (2, 102)):
        rois = [r for r in ROIS if r[0] == root]
        assert result[nid]["func_osi_mean"] == pytest.approx(sum(r[5] for r in rois) / len(rois))
        ori, ori_r = circ([r[6] for r in rois], 180.0)
        direction, dir_r = circ([r[7] for r in rois], 360.0)
        assert result[nid]["func_pref_ori_circmean_deg"] == pytest.approx(ori, abs=1e-9)
        assert result[nid]["func_pref_ori_resultant"] == pytest.approx(ori_r, abs=1e-12)
        assert result[nid]["func_pref_dir_circmean_deg"] == pytest.approx(direction, abs=1e-9)
        assert result[nid]["func_pref_dir_resultant"] == pytest.approx(dir_r, abs=1e-12)


def test_orientations_straddling_zero_average_near_zero_not_ninety(result) -> None:
    ori = result[1]["func_pref_ori_circmean_deg"]
    assert min(ori, 180 - ori) < 2.0, f"179, 1 and 3 deg average to ~1 deg, got {ori}"
    direction = result[1]["func_pref_dir_circmean_deg"]
    assert min(direction, 360 - direction) < 3.0
    assert result[1]["func_pref_ori_resultant"] > 0.99
