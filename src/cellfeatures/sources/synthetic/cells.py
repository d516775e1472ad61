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
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import polars as pl

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


# ------------------------------------------------------------------ writing
