"""Synthetic functional (area, coregistration, digital-twin properties) and proofreading tables, seeded on cells.

Generated, never real: every table written from here is labelled synthetic in its manifest."""

from __future__ import annotations

import numpy as np
import polars as pl

from cellfeatures.sources.synthetic.cells import PIA_Y_UM, VOXEL_NM, SyntheticSpec


def _circular(rng: np.random.Generator, centre: np.ndarray, spread: float, period: float) -> np.ndarray:
    return np.mod(centre + rng.normal(0, spread, centre.shape), period)


def generate_functional(
    cells: pl.DataFrame, spec: SyntheticSpec, real_nodes: pl.DataFrame | None = None
) -> dict[str, pl.DataFrame]:
    """Area assignment for every nucleus; coregistration (manual and auto) and digital-twin properties."""
    rng = np.random.default_rng([spec.seed, 3])
    n = cells.height
    x_um = cells["x_vx"].to_numpy() * VOXEL_NM[0] / 1000
    z_um = cells["z_vx"].to_numpy() * VOXEL_NM[2] / 1000
    # V1 below a slanted border in x; the higher visual areas split by z beyond it
    border_x = 1200 + 0.15 * (z_um - 850)
    v1 = x_um < border_x
    area = np.where(v1, "V1", np.where(z_um < 780, "RL", np.where(z_um < 950, "AL", "LM")))
    dist = np.abs(x_um - border_x) / np.sqrt(1 + 0.15**2)
    hva_dist = np.minimum(np.abs(z_um - 780), np.abs(z_um - 950))
    dist = np.where(v1, dist, np.minimum(dist, hva_dist))
    area_table = pl.DataFrame(
        {
            "id": np.arange(1, n + 1, dtype=np.int64),
            "valid": np.ones(n, dtype=bool),
            "target_id": cells["nucleus_id"],
            "tag": area,
            "value": np.round(dist, 3),
        }
    )
    roots = cells["root_id"].to_numpy()
    depth_um = cells["y_vx"].to_numpy() * VOXEL_NM[1] / 1000 - PIA_Y_UM
    eligible = np.flatnonzero((roots != 0) & (depth_um < 600))
    chosen = eligible[rng.random(len(eligible)) < spec.coregistered_fraction]
    n_rois = 1 + rng.poisson(1.5, len(chosen))
    cell_idx = np.repeat(chosen, n_rois)
    m = len(cell_idx)
    session = rng.choice([4, 5, 6, 7, 8, 9], m)
    scan_idx = rng.integers(1, 10, m)
    unit_id = np.arange(1, m + 1, dtype=np.int64) + rng.integers(0, 5, m) * 10_000
    roi = pl.DataFrame(
        {
            "pt_root_id": roots[cell_idx].astype(np.int64),
            "target_id": cells["nucleus_id"].to_numpy()[cell_idx],
            "session": session.astype(np.int64),
            "scan_idx": scan_idx.astype(np.int64),
            "unit_id": unit_id,
            "field": rng.integers(1, 9, m).astype(np.int64),
            "pt_position_x": cells["x_vx"].to_numpy()[cell_idx],
            "pt_position_y": cells["y_vx"].to_numpy()[cell_idx],
            "pt_position_z": cells["z_vx"].to_numpy()[cell_idx],
        }
    ).unique(["session", "scan_idx", "unit_id"], keep="first", maintain_order=True)
    m = roi.height
    manual_rows = rng.random(m) < 0.6

    def coreg(frame: pl.DataFrame, score_shift: float) -> pl.DataFrame:
        k = frame.height
        return frame.with_columns(
            pl.Series("id", np.arange(1, k + 1, dtype=np.int64)),
            pl.lit(True).alias("valid"),
            pl.Series("residual", np.round(rng.gamma(2.0, 2.5, k), 3)),
            pl.Series("score", np.round(np.clip(rng.normal(5 + score_shift, 2, k), 0, None), 3)),
        ).select(
            "id",
            "valid",
            "target_id",
            "pt_root_id",
            "pt_position_x",
            "pt_position_y",
            "pt_position_z",
            "session",
            "scan_idx",
            "unit_id",
            "field",
            "residual",
            "score",
        )

    manual = coreg(roi.filter(pl.Series(manual_rows)), 1.0)
    auto = coreg(roi.filter(pl.Series(rng.random(m) < 0.9) | pl.Series(manual_rows)), 0.0)
    # digital-twin properties per ROI: a per-cell preferred orientation/direction plus ROI noise
    cell_of_roi = roi["pt_root_id"].to_numpy()
    uniq, inverse = np.unique(cell_of_roi, return_inverse=True)
    pref_dir_cell = rng.uniform(0, 360, len(uniq))
    if real_nodes is not None and real_nodes.height:
        osi_pool = real_nodes["osi_cvt_monet_full"].drop_nulls().to_numpy()
        gosi_pool = real_nodes["gosi_cvt_monet_full"].drop_nulls().to_numpy()
        cc_pool = real_nodes["cc_norm_cvt"].drop_nulls().to_numpy()
    else:
        osi_pool, gosi_pool, cc_pool = rng.beta(2, 3, 50), rng.beta(2, 6, 50), rng.beta(4, 5, 50)

    def resample(pool: np.ndarray, k: int, jitter: float) -> np.ndarray:
        return np.clip(rng.choice(pool, k) + rng.normal(0, jitter, k), 0, 1)

    pref_dir = _circular(rng, pref_dir_cell[inverse], 12.0, 360.0)
    cc_norm = resample(cc_pool, m, 0.03)
    dt = pl.DataFrame(
        {
            "id": np.arange(1, m + 1, dtype=np.int64),
            "valid": np.ones(m, dtype=bool),
            "pt_root_id": cell_of_roi.astype(np.int64),
            "session": roi["session"],
            "scan_idx": roi["scan_idx"],
            "unit_id": roi["unit_id"],
            "cc_abs": np.round(cc_norm * rng.uniform(0.6, 0.9, m), 4),
            "cc_max": np.round(rng.uniform(0.7, 0.95, m), 4),
            "cc_norm": np.round(cc_norm, 4),
            "OSI": np.round(resample(osi_pool, m, 0.03), 4),
            "DSI": np.round(rng.beta(1.5, 6, m), 4),
            "gOSI": np.round(resample(gosi_pool, m, 0.02), 4),
            "gDSI": np.round(rng.beta(1.2, 8, m), 4),
            "pref_ori": np.round(np.mod(pref_dir, 180.0), 3),
            "pref_dir": np.round(pref_dir, 3),
            "readout_loc_x": np.round(rng.uniform(-1, 1, m), 4),
            "readout_loc_y": np.round(rng.uniform(-1, 1, m), 4),
        }
    )
    return {
        "nucleus_functional_area_assignment": area_table,
        "coregistration_manual_v4": manual,
        "coregistration_auto_phase3_fwd_apl_vess_combined_v2": auto,
        "digital_twin_properties_bcm_coreg_v4": dt,
    }


def generate_proofreading(cells: pl.DataFrame, spec: SyntheticSpec, focus: np.ndarray | None = None) -> pl.DataFrame:
    """proofreading_status_and_strategy rows ('t'/'f' strings, as older servers send) for some cells."""
    rng = np.random.default_rng([spec.seed, 4])
    roots = cells["root_id"].to_numpy()
    pick = rng.random(cells.height) < spec.proofread_fraction
    if focus is not None:
        pick |= focus & (rng.random(cells.height) < 0.9)
    pick &= roots != 0
    idx = np.flatnonzero(pick)
    k = len(idx)
    # distinct roots only: the table is keyed by root
    _, first = np.unique(roots[idx], return_index=True)
    idx = idx[np.sort(first)]
    k = len(idx)
    axon_strategy = rng.choice(
        ["none", "axon_partially_extended", "axon_fully_extended", "axon_interareal"],
        k,
        p=[1459 / 1865, 149 / 1865, 130 / 1865, 127 / 1865],
    )
    dendrite_strategy = rng.choice(["none", "dendrite_clean", "dendrite_extended"], k, p=[0.1, 0.3, 0.6])
    changed = rng.random(k) < 0.12
    valid_id = np.where(changed, roots[idx] + 17, roots[idx])
    return pl.DataFrame(
        {
            "id": np.arange(1, k + 1, dtype=np.int64),
            "valid": np.full(k, "t"),
            "valid_id": valid_id.astype(np.int64),
            "pt_root_id": roots[idx].astype(np.int64),
            "pt_position_x": cells["x_vx"].to_numpy()[idx],
            "pt_position_y": cells["y_vx"].to_numpy()[idx],
            "pt_position_z": cells["z_vx"].to_numpy()[idx],
            "status_dendrite": np.where(dendrite_strategy != "none", "t", "f"),
            "status_axon": np.where(axon_strategy != "none", "t", "f"),
            "strategy_dendrite": dendrite_strategy,
            "strategy_axon": axon_strategy,
        }
    )
