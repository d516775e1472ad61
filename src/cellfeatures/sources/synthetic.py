"""A deterministic, seeded generator of CAVE-shaped tables, at any scale.

Used twice:
- by the embedded sample, to give the *real* sample cells synapses, functional data and proofreading
  status where nothing real exists (`generate_for_cells`);
- on its own (`SyntheticSpec` + `write_synthetic_snapshot`), to write a snapshot of any size, e.g. a
  partitioned 100M-row synapse table for benchmarks, chunk by chunk in bounded memory.

Distributions follow what the real extracts show: cell types by cortical depth (the real soma/nucleus
table's per-type depths), heavy-tailed (log-normal) per-cell synapse counts, partners that recur
(Zipf-like reuse of orphan axon fragments), spine-rich inputs onto excitatory cells and shaft-rich inputs
onto inhibitory ones, inhibitory outputs richer in soma/shaft targets, cleft sizes log-normal around the
real median (~3,700 voxels), ~2-3 ROIs per coregistered cell, tuning values resampled from the 50 real
functional rows when given. Everything a generator writes is labelled origin = synthetic.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from cellfeatures.atomic import publish_directory
from cellfeatures.errors import ConfigError
from cellfeatures.sources.snapshot import SnapshotSource

GENERATOR_VERSION = "1"
ROOT_BASE = 864_691_135_000_000_000  # cell roots (same prefix as minnie65 roots)
ORPHAN_BASE = 864_691_139_000_000_000  # roots of fragments without a nucleus; above every real root
SYNAPSE_ID_BASE = 1_000_000_000  # synthetic synapse ids; above the real ones (< 1e9)
VOXEL_NM = (4.0, 4.0, 40.0)
PIA_Y_UM = 302.0  # y (um) of pia in the minnie65 frame, roughly: depth = y - pia

# (type, class, depth range um, relative abundance) following the real v117 soma/nucleus table
TYPES: list[tuple[str, str, float, float, float]] = [
    ("23P", "excitatory", 80, 300, 17.6),
    ("4P", "excitatory", 250, 420, 15.9),
    ("5P-IT", "excitatory", 380, 560, 7.9),
    ("5P-ET", "excitatory", 420, 600, 1.8),
    ("5P-NP", "excitatory", 420, 580, 0.6),
    ("6P-IT", "excitatory", 550, 900, 3.2),
    ("6P-CT", "excitatory", 560, 920, 5.9),
    ("BC", "inhibitory", 120, 800, 3.0),
    ("MC", "inhibitory", 150, 850, 2.2),
    ("BPC", "inhibitory", 100, 600, 1.7),
    ("NGC", "inhibitory", 0, 200, 0.9),
]
# target tag probabilities (spine, shaft, soma) by (pre class, post class)
TAG_P: dict[tuple[str, str], tuple[float, float, float]] = {
    ("excitatory", "excitatory"): (0.78, 0.20, 0.02),
    ("excitatory", "inhibitory"): (0.10, 0.85, 0.05),
    ("inhibitory", "excitatory"): (0.20, 0.55, 0.25),
    ("inhibitory", "inhibitory"): (0.05, 0.75, 0.20),
    ("unknown", "excitatory"): (0.65, 0.31, 0.04),
    ("unknown", "inhibitory"): (0.08, 0.86, 0.06),
    ("excitatory", "unknown"): (0.60, 0.38, 0.02),
    ("inhibitory", "unknown"): (0.15, 0.60, 0.25),
    ("unknown", "unknown"): (0.50, 0.47, 0.03),
}
TAGS = np.array(["spine", "shaft", "soma"])
CLASS_CODE = {"unknown": 0, "excitatory": 1, "inhibitory": 2}


@dataclass(frozen=True)
class SyntheticSpec:
    """Size and shape of a synthetic snapshot. Same spec -> same tables, bit for bit."""

    n_cells: int = 2_000
    n_synapses: int = 200_000
    seed: int = 0
    chunk_rows: int = 2_000_000  # synapses generated and written per part file
    tagged_fraction: float = 0.85  # synapses with a spine/shaft/soma prediction
    cell_partner_fraction: float = 0.35  # partner side is a nucleus cell (else an orphan fragment)
    orphan_only_fraction: float = 0.3  # synapses between two fragments (most of the real table)
    autapse_fraction: float = 0.002
    multi_soma_fraction: float = 0.01  # nuclei sharing a root with another nucleus (merge errors)
    root_zero_fraction: float = 0.02  # nuclei outside the segmentation (pt_root_id == 0)
    coregistered_fraction: float = 0.3
    proofread_fraction: float = 0.05
    position_columns: bool = True  # pre/post/ctr positions (benchmarks can turn them off)

    def key(self) -> str:
        import hashlib

        blob = json.dumps({**asdict(self), "generator": GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ------------------------------------------------------------------ cells


def generate_cells(spec: SyntheticSpec) -> pl.DataFrame:
    """Nuclei with positions (voxels), volumes, a type drawn by depth and root ids (with merge errors)."""
    rng = np.random.default_rng([spec.seed, 1])
    n = spec.n_cells
    weights = np.array([t[4] for t in TYPES])
    kinds = rng.choice(len(TYPES), size=n, p=weights / weights.sum())
    lo = np.array([t[2] for t in TYPES])[kinds]
    hi = np.array([t[3] for t in TYPES])[kinds]
    depth = rng.uniform(lo, hi)
    x_um = rng.uniform(300, 1600, n)
    z_um = rng.uniform(600, 1100, n)
    y_um = depth + PIA_Y_UM
    volume = np.where(
        np.array([t[1] for t in TYPES])[kinds] == "inhibitory",
        rng.lognormal(np.log(180), 0.25, n),
        rng.lognormal(np.log(260), 0.2, n),
    )
    nucleus_id = np.sort(rng.choice(np.arange(100_000, 100_000 + 20 * n), size=n, replace=False))
    roots = ROOT_BASE + rng.choice(np.arange(1, 50 * n), size=n, replace=False)
    merged = rng.random(n) < spec.multi_soma_fraction
    if merged.any() and n > 1:  # a merged nucleus takes the root of another random nucleus
        roots[merged] = roots[rng.integers(0, n, merged.sum())]
    roots[rng.random(n) < spec.root_zero_fraction] = 0
    return pl.DataFrame(
        {
            "nucleus_id": nucleus_id.astype(np.int64),
            "root_id": roots.astype(np.int64),
            "x_vx": np.round(x_um * 1000 / VOXEL_NM[0]).astype(np.int64),
            "y_vx": np.round(y_um * 1000 / VOXEL_NM[1]).astype(np.int64),
            "z_vx": np.round(z_um * 1000 / VOXEL_NM[2]).astype(np.int64),
            "volume_um3": volume,
            "cell_type": np.array([t[0] for t in TYPES])[kinds],
            "cell_class": np.array([t[1] for t in TYPES])[kinds],
        }
    )


def _weights(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    return rng.lognormal(0.0, sigma, n)


# ------------------------------------------------------------------ synapses


def _synapse_chunk(
    cells: pl.DataFrame,
    anchor_in: np.ndarray,
    anchor_out: np.ndarray,
    n: int,
    first_id: int,
    rng: np.random.Generator,
    spec: SyntheticSpec,
    n_orphans: int,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """n synapses: each has an anchor cell (post with p=0.6, else pre) and a partner (cell or fragment)."""
    roots = cells["root_id"].to_numpy()
    cls = cells["cell_class"].replace_strict(CLASS_CODE, default=0, return_dtype=pl.Int8).to_numpy()
    pos = np.stack([cells[c].to_numpy() for c in ("x_vx", "y_vx", "z_vx")], axis=1).astype(np.float64)
    candidates = np.flatnonzero(roots != 0)
    post_anchor = rng.random(n) < 0.6
    a_post = rng.choice(len(roots), size=n, p=anchor_in)
    a_pre = rng.choice(len(roots), size=n, p=anchor_out)
    anchor = np.where(post_anchor, a_post, a_pre)
    partner_cell = candidates[rng.integers(0, len(candidates), n)] if len(candidates) else anchor
    is_cell_partner = rng.random(n) < spec.cell_partner_fraction
    # Zipf-like reuse of fragments: a few fragments make many synapses
    orphan = ORPHAN_BASE + np.minimum(rng.zipf(1.6, n), n_orphans).astype(np.int64) * 7919 + rng.integers(0, 3, n)
    partner_root = np.where(is_cell_partner, roots[partner_cell], orphan)
    partner_cls = np.where(is_cell_partner, cls[partner_cell], 0)
    anchor_root = roots[anchor]
    autapse = rng.random(n) < spec.autapse_fraction
    partner_root = np.where(autapse, anchor_root, partner_root)
    partner_cls = np.where(autapse, cls[anchor], partner_cls)
    pre = np.where(post_anchor, partner_root, anchor_root)
    post = np.where(post_anchor, anchor_root, partner_root)
    pre_cls = np.where(post_anchor, partner_cls, cls[anchor])
    post_cls = np.where(post_anchor, cls[anchor], partner_cls)
    both_orphan = rng.random(n) < spec.orphan_only_fraction
    if both_orphan.any():
        k = int(both_orphan.sum())
        pre[both_orphan] = ORPHAN_BASE + rng.integers(1, n_orphans, k) * 7919
        post[both_orphan] = ORPHAN_BASE + rng.integers(1, n_orphans, k) * 7919 + 1
        pre_cls[both_orphan] = 0
        post_cls[both_orphan] = 0
    size = np.maximum(40, rng.lognormal(np.log(3700), 0.75, n)).astype(np.int64)
    ids = np.arange(first_id, first_id + n, dtype=np.int64)
    columns: dict[str, Any] = {
        "id": ids,
        "valid": np.ones(n, dtype=bool),
        "pre_pt_supervoxel_id": (pre % 10**15 + 9 * 10**16).astype(np.int64),
        "pre_pt_root_id": pre.astype(np.int64),
        "post_pt_supervoxel_id": (post % 10**15 + 9 * 10**16 + 1).astype(np.int64),
        "post_pt_root_id": post.astype(np.int64),
        "size": size,
    }
    if spec.position_columns:
        spread_um = np.array([60.0, 120.0, 60.0])
        ctr = pos[anchor] + rng.normal(0, 1, (n, 3)) * spread_um * 1000 / np.array(VOXEL_NM)
        ctr = np.round(ctr).astype(np.int64)
        offset = rng.integers(-60, 61, (n, 3)) // np.array([1, 1, 10])
        for name, arr in (("pre", ctr + offset), ("post", ctr - offset), ("ctr", ctr)):
            for i, axis in enumerate("xyz"):
                columns[f"{name}_pt_position_{axis}"] = arr[:, i]
    synapses = pl.DataFrame(columns)
    # target tags: probabilities by (pre class, post class); untagged synapses get no row
    probs = _tag_probs(pre_cls, post_cls)
    u = rng.random(n)
    tag_idx = (u[:, None] > np.cumsum(probs, axis=1)).sum(axis=1).clip(0, 2)
    tagged = rng.random(n) < spec.tagged_fraction
    tags = pl.DataFrame({"target_id": ids[tagged], "tag": TAGS[tag_idx[tagged]]})
    return synapses, tags


def _tag_probs(pre_cls: np.ndarray, post_cls: np.ndarray) -> np.ndarray:
    names = {v: k for k, v in CLASS_CODE.items()}
    table = np.zeros((3, 3, 3))
    for a in range(3):
        for b in range(3):
            table[a, b] = TAG_P[(names[a], names[b])]
    return table[pre_cls.astype(int), post_cls.astype(int)]


def iter_synapse_chunks(
    cells: pl.DataFrame, spec: SyntheticSpec, n_synapses: int | None = None, anchor_mask: np.ndarray | None = None
) -> Iterator[tuple[pl.DataFrame, pl.DataFrame]]:
    """Yield (synapses, tags) chunks of at most spec.chunk_rows rows; chunk k is seeded by (seed, 100+k)."""
    total = spec.n_synapses if n_synapses is None else n_synapses
    rng = np.random.default_rng([spec.seed, 2])
    n_cells = cells.height
    w_in = _weights(rng, n_cells, 1.0)
    w_out = _weights(rng, n_cells, 1.2)
    mask = cells["root_id"].to_numpy() != 0
    if anchor_mask is not None:
        mask &= anchor_mask
    if not mask.any():
        raise ValueError("no cell can anchor synapses (all roots are 0 or masked out)")
    w_in, w_out = w_in * mask, w_out * mask
    w_in, w_out = w_in / w_in.sum(), w_out / w_out.sum()
    n_orphans = max(100, total // 20)
    done = 0
    k = 0
    while done < total:
        n = min(spec.chunk_rows, total - done)
        chunk_rng = np.random.default_rng([spec.seed, 100 + k])
        yield _synapse_chunk(cells, w_in, w_out, n, SYNAPSE_ID_BASE + done, chunk_rng, spec, n_orphans)
        done += n
        k += 1


# ------------------------------------------------------------------ functional and proofreading


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


# ------------------------------------------------------------------ writing


def nucleus_table(cells: pl.DataFrame) -> pl.DataFrame:
    n = cells.height
    return pl.DataFrame(
        {
            "id": cells["nucleus_id"],
            "valid": np.ones(n, dtype=bool),
            "volume": cells["volume_um3"],
            "pt_supervoxel_id": np.zeros(n, dtype=np.int64),
            "pt_root_id": cells["root_id"],
            "pt_position_x": cells["x_vx"],
            "pt_position_y": cells["y_vx"],
            "pt_position_z": cells["z_vx"],
        }
    )


def cell_type_table(cells: pl.DataFrame, system: str = "aibs_metamodel") -> pl.DataFrame:
    n = cells.height
    return pl.DataFrame(
        {
            "id": np.arange(1, n + 1, dtype=np.int64),
            "valid": np.ones(n, dtype=bool),
            "target_id": cells["nucleus_id"],
            "classification_system": cells["cell_class"].replace_strict(
                {"excitatory": "excitatory_neuron", "inhibitory": "inhibitory_neuron"}, default="nonneuron"
            ),
            "cell_type": cells["cell_type"],
            "pt_root_id": cells["root_id"],
            "pt_position_x": cells["x_vx"],
            "pt_position_y": cells["y_vx"],
            "pt_position_z": cells["z_vx"],
        }
    )


def write_tables(
    tmp: Path,
    cells: pl.DataFrame,
    spec: SyntheticSpec,
    *,
    n_synapses: int,
    anchor_mask: np.ndarray | None,
    real_nodes: pl.DataFrame | None,
    proofread_focus: np.ndarray | None,
) -> dict[str, int]:
    """Write synapses (partitioned), tags (partitioned), functional and proofreading tables into tmp."""
    rows: dict[str, int] = {}
    (tmp / "synapses_pni_2").mkdir()
    (tmp / "synapse_target_predictions_ssa").mkdir()
    tag_rows = 0
    for k, (syn, tags) in enumerate(iter_synapse_chunks(cells, spec, n_synapses, anchor_mask)):
        syn.write_parquet(
            tmp / "synapses_pni_2" / f"synthetic-{k:05d}.parquet", compression="zstd", row_group_size=256_000
        )
        first = SYNAPSE_ID_BASE + tag_rows + 1  # own id range: never collides with real annotation ids
        tags = tags.with_columns(
            pl.Series("id", np.arange(first, first + tags.height, dtype=np.int64)), pl.lit(True).alias("valid")
        ).select("id", "valid", "target_id", "tag")
        tags.write_parquet(
            tmp / "synapse_target_predictions_ssa" / f"synthetic-{k:05d}.parquet",
            compression="zstd",
            row_group_size=256_000,
        )
        rows["synapses_pni_2"] = rows.get("synapses_pni_2", 0) + syn.height
        tag_rows += tags.height
    rows["synapse_target_predictions_ssa"] = tag_rows
    for name, frame in generate_functional(cells, spec, real_nodes).items():
        frame.write_parquet(tmp / f"{name}.parquet")
        rows[name] = frame.height
    proof = generate_proofreading(cells, spec, proofread_focus)
    proof.write_parquet(tmp / "proofreading_status_and_strategy.parquet")
    rows["proofreading_status_and_strategy"] = proof.height
    return rows


# Generated feature tables follow each cell's latent class, which is also what the generated cell-type
# table says: a dataset labelled by that table must not train on them (leakage_check reads this).
SYNTHETIC_LABEL_TABLE = "aibs_metamodel_celltypes_v661"


def _manifest_tables(rows: dict[str, int], source: str) -> dict[str, Any]:
    tables: dict[str, Any] = {}
    for name, n in rows.items():
        tables[name] = {"origin": "synthetic", "kind": "cave", "rows": n, "source": source}
        if name not in ("nucleus_detection_v0", SYNTHETIC_LABEL_TABLE):
            tables[name]["conditioned_on"] = [SYNTHETIC_LABEL_TABLE]
    return tables


def write_synthetic_snapshot(spec: SyntheticSpec, out: str | os.PathLike[str]) -> Path:
    """Write a complete synthetic snapshot (cells, labels, synapses, tags, functional, proofreading)."""

    def write(tmp: Path) -> None:
        cells = generate_cells(spec)
        nucleus_table(cells).write_parquet(tmp / "nucleus_detection_v0.parquet")
        labelled = cells.filter(pl.col("root_id") != 0)
        cell_type_table(labelled).write_parquet(tmp / "aibs_metamodel_celltypes_v661.parquet")
        rows = write_tables(
            tmp, cells, spec, n_synapses=spec.n_synapses, anchor_mask=None, real_nodes=None, proofread_focus=None
        )
        rows["nucleus_detection_v0"] = cells.height
        rows["aibs_metamodel_celltypes_v661"] = labelled.height
        manifest = {
            "name": f"synthetic-{spec.key()}",
            "datastack": "synthetic",
            "materialization_version": None,
            "timestamp": None,
            "position_resolution_nm": list(VOXEL_NM),
            "generator": GENERATOR_VERSION,
            "spec": asdict(spec),
            "tables": _manifest_tables(rows, f"cellfeatures synthetic generator v{GENERATOR_VERSION}"),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")

    out = Path(out)
    if out.exists():
        try:
            existing = json.loads((out / "manifest.json").read_text()).get("spec")
        except (OSError, ValueError):
            existing = None
        if existing != asdict(spec):
            raise ConfigError(
                f"{out} already exists and holds something else than a synthetic snapshot of this spec "
                f"({'another spec' if existing else 'no synthetic manifest'}): choose another --out or remove it"
            )
    publish_directory(out, write)  # once, atomically
    return out


def default_cache_dir() -> Path:
    """Where generated tables are cached: $CELLFEATURES_CACHE, else ~/.cache/cellfeatures."""
    env = os.environ.get("CELLFEATURES_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cellfeatures"


class SyntheticSource(SnapshotSource):
    """A synthetic snapshot of the given spec, generated once into the cache and then read from disk."""

    def __init__(self, spec: SyntheticSpec | None = None, cache_dir: str | os.PathLike[str] | None = None) -> None:
        self.spec = spec or SyntheticSpec()
        root = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "synthetic"
        path = write_synthetic_snapshot(self.spec, root / self.spec.key())
        super().__init__(path)

    def fingerprint(self) -> dict[str, Any]:
        return {**super().fingerprint(), "kind": "synthetic", "spec": asdict(self.spec), "generator": GENERATOR_VERSION}

    def reopen_config(self) -> dict[str, Any]:
        return {"kind": "synthetic", **asdict(self.spec)}  # same spec -> same tables, bit for bit
