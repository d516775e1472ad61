"""Leakage-aware split strategies. Every strategy returns k folds of roles per cell.

A split is a frame: nucleus_id, then one column per fold `fold_<k>` with role `train`, `test`, `buffer`
(excluded from that fold's training because it sits too close to a test cell) or `locked` (the locked
test set: never used by cross-validation), then `locked` (role of the cell for the locked evaluation:
`test`, `buffer` or `train`) and `block` (the spatial block of the cell, or -1; bootstrap intervals
resample whole blocks). A single train/test split is fold 0. Why roles rather than a fold index: spatial
blocking needs a buffer that depends on which fold is tested.

Strategies:
- `stratified`: stratified group k-fold by label;
- `spatial`: cells binned into square blocks of `block_um` in the tangential x/z plane (y is depth, so a
  block is a cortical column segment); the grid is shifted by a seeded offset, so **a seed re-draws the
  blocks**; whole blocks go to folds greedily, largest first, each to the fold where it most reduces
  the imbalance of *class* counts against the per-class target (stratified by class, not only by size);
  then, per fold, training cells closer than `buffer_um` (default 15 um; None: the block size) to any test cell
  become `buffer`, so no training cell lies within that distance of a test cell;
- `column`: the V1 "minnie column" (an x/z box) against the rest: fold 0 tests inside, fold 1 outside.
Locked test set (`locked_fraction` > 0): the slab of cells at the high-x edge of the tangential plane
holding that fraction of cells, following the column's slant along depth so that it holds every layer,
the same for every seed, plus a band of cells within `buffer_um` of it (3-D distance) that no model
trains on.
Cross-validation never sees either; models are scored on it once.
Every strategy keeps the nuclei of one root together (`group_by_root`): a merged root is one object.
Same inputs, strategy and seed -> identical folds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import polars as pl

from cellfeatures.errors import ConfigError

STRATEGIES = ("stratified", "spatial", "column")


@dataclass(frozen=True)
class SplitSpec:
    strategy: str = "spatial"
    folds: int = 5
    seed: int = 0
    block_um: float = 50.0  # a labelled column is ~150 x 220 um in x/z: 100 um blocks leave folds empty
    buffer_um: float | None = 15.0  # None: the block size
    column_box_um: tuple[float, float, float, float] | None = None  # x_min, x_max, z_min, z_max
    group_by_root: bool = True
    locked_fraction: float = 0.0  # share of cells in the locked test slab (0: none)
    params: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __post_init__(self) -> None:
        # types first, each naming its key: "five" folds or "15%" used to surface as '<' not supported
        for key, kinds, what in (
            ("folds", (int,), "a whole number"),
            ("seed", (int,), "a whole number"),
            ("locked_fraction", (int, float), "a number like 0.15 (not a percentage)"),
            ("block_um", (int, float), "a number of micrometres"),
            ("buffer_um", (int, float, type(None)), "a number of micrometres"),
        ):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, kinds):
                raise ConfigError(f"split {key} must be {what}, got {value!r}")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"split strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.strategy != "column" and self.folds < 2:
            raise ConfigError("a split needs at least 2 folds")
        if not 0 <= self.locked_fraction < 0.5:
            raise ConfigError(f"locked_fraction must be in [0, 0.5), got {self.locked_fraction!r}")
        if self.block_um <= 0 or (self.buffer_um is not None and self.buffer_um < 0):
            raise ConfigError(f"block_um must be > 0 and buffer_um >= 0, got {self.block_um!r}, {self.buffer_um!r}")


def _groups(cells: pl.DataFrame, group_by_root: bool) -> np.ndarray:
    """Group id per cell: its root when shared and non-zero, else the cell itself."""
    if not group_by_root:
        return np.arange(cells.height)
    key = cells.select(
        pl.when(pl.col("root_id") != 0).then(pl.col("root_id")).otherwise(-pl.col("nucleus_id")).alias("g")
    )["g"]
    _, inverse = np.unique(key.to_numpy(), return_inverse=True)
    return inverse


def follow_first_member(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Give every cell its group's first member's value, so a group never straddles a boundary."""
    _, first = np.unique(groups, return_index=True)
    lookup = dict(zip(groups[first].tolist(), values[first].tolist(), strict=True))
    return np.array([lookup[g] for g in groups.tolist()], dtype=values.dtype)


def _roles(test_fold: np.ndarray, folds: int) -> dict[str, list[str]]:
    return {f"fold_{k}": np.where(test_fold == k, "test", "train").tolist() for k in range(folds)}


def stratified_folds(labels: np.ndarray, groups: np.ndarray, folds: int, seed: int) -> np.ndarray:
    from sklearn.model_selection import StratifiedGroupKFold

    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    fold = np.full(len(labels), -1)
    for k, (_, test) in enumerate(splitter.split(np.zeros(len(labels)), labels, groups)):
        fold[test] = k
    return fold


def spatial_blocks(x_um: np.ndarray, z_um: np.ndarray, groups: np.ndarray, block_um: float, seed: int) -> np.ndarray:
    """Block index per cell on an x/z grid shifted by a seeded offset (a seed re-draws the blocks)."""
    offset = np.random.default_rng([seed, 71]).uniform(0, block_um, size=2)
    bx = np.floor((x_um + offset[0]) / block_um).astype(np.int64)
    bz = np.floor((z_um + offset[1]) / block_um).astype(np.int64)
    _, block = np.unique(np.stack([bx, bz], axis=1), axis=0, return_inverse=True)
    return follow_first_member(block.ravel(), groups)


def assign_blocks(block: np.ndarray, labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold per block: largest blocks first, each to the fold whose class counts it brings closest to target.

    The cost of a fold is the sum over classes of (count / target)^2, target = class total / folds; the
    block goes where the cost grows least (ties: the emptier fold, then the lower index). Seeded order
    among equal-size blocks.
    """
    classes, y = np.unique(labels.astype(str), return_inverse=True)
    n_blocks = int(block.max()) + 1 if len(block) else 0
    counts = np.zeros((n_blocks, len(classes)))
    np.add.at(counts, (block, y.ravel()), 1)
    target = np.maximum(counts.sum(axis=0) / folds, 1e-9)
    sizes = counts.sum(axis=1)
    order = np.random.default_rng([seed, 72]).permutation(n_blocks)
    order = order[np.argsort(-sizes[order], kind="stable")]
    load = np.zeros((folds, len(classes)))
    fold_of_block = np.zeros(n_blocks, dtype=np.int64)
    for b in order:
        grow = (((load + counts[b]) / target) ** 2).sum(axis=1) - ((load / target) ** 2).sum(axis=1)
        k = int(np.lexsort((np.arange(folds), load.sum(axis=1), np.round(grow, 9)))[0])
        fold_of_block[b] = k
        load[k] += counts[b]
    return fold_of_block


def spatial_folds(
    x_um: np.ndarray,
    z_um: np.ndarray,
    groups: np.ndarray,
    folds: int,
    block_um: float,
    seed: int,
    labels: np.ndarray | None = None,
) -> np.ndarray:
    """Test fold per cell: whole seeded blocks, assigned to balance class counts (see assign_blocks)."""
    block = spatial_blocks(x_um, z_um, groups, block_um, seed)
    labels = labels if labels is not None else np.zeros(len(block))
    return assign_blocks(block, labels, folds, seed)[block]


def buffer_roles(
    roles: dict[str, list[str]],
    x_um: np.ndarray,
    z_um: np.ndarray,
    buffer_um: float,
    groups: np.ndarray | None = None,
    y_um: np.ndarray | None = None,
) -> None:
    """In place: per fold, training cells within buffer_um (x/z, or 3-D with y) of a test cell become 'buffer'.

    With groups, a group with one buffered member is buffered whole (a merged root is one object).
    """
    from scipy.spatial import cKDTree

    points = np.stack([x_um, z_um] if y_um is None else [x_um, y_um, z_um], axis=1)
    for name, fold_roles in roles.items():
        arr = np.array(fold_roles, dtype=object)  # not a fixed-width str dtype: "buffer" must not become "buffe"
        test = np.flatnonzero(arr == "test")
        train = np.flatnonzero(arr == "train")
        if len(test) == 0 or len(train) == 0:
            continue
        dist, _ = cKDTree(points[test]).query(points[train], k=1, distance_upper_bound=buffer_um)
        near = train[dist < buffer_um]
        if groups is not None and len(near):
            near = np.flatnonzero(np.isin(groups, groups[near]) & (arr == "train"))
        arr[near] = "buffer"
        roles[name] = arr.tolist()


def locked_slab(x_um: np.ndarray, groups: np.ndarray, fraction: float, y_um: np.ndarray | None = None) -> np.ndarray:
    """Cells of the locked test set: the high-x edge slab holding `fraction` of the cells (seed-free).

    With depths (y), x is first detrended along depth: a cortical column is slanted, so a plain high-x
    slab would hold mostly deep cells (measured on the sample: 56% layer 6 against 26% overall); the
    slab that follows the slant holds every layer.
    """
    if fraction <= 0 or len(x_um) == 0:
        return np.zeros(len(x_um), dtype=bool)
    coordinate = x_um
    if y_um is not None and len(y_um) > 1 and np.nanvar(y_um) > 0:
        slope = np.cov(x_um, y_um)[0, 1] / np.var(y_um, ddof=1)
        coordinate = x_um - slope * y_um
    cut = np.quantile(coordinate, 1 - fraction)
    return follow_first_member(coordinate >= cut, groups)


def make_split(cells: pl.DataFrame, label: str, spec: SplitSpec) -> pl.DataFrame:
    """cells: nucleus_id, root_id, pos_x_nm, pos_z_nm and the label column.

    Returns nucleus_id, fold_<k> roles, `locked` role and `block` (see the module doc).
    """
    cells = cells.sort("nucleus_id")
    groups = _groups(cells, spec.group_by_root)
    x_all = cells["pos_x_nm"].to_numpy() / 1000.0
    z_all = cells["pos_z_nm"].to_numpy() / 1000.0
    buffer_um = spec.buffer_um if spec.buffer_um is not None else spec.block_um
    y_all = cells["pos_y_nm"].to_numpy() / 1000.0 if "pos_y_nm" in cells.columns else None
    locked = locked_slab(x_all, groups, spec.locked_fraction, y_all)
    locked_roles = {"locked": np.where(locked, "test", "train").tolist()}
    if locked.any():
        # 3-D distance: the slab is slanted through depth, so an x/z-only band would swallow whole layers
        buffer_roles(locked_roles, x_all, z_all, buffer_um, groups if spec.group_by_root else None, y_all)
    held = np.array(locked_roles["locked"], dtype=object) != "train"
    keep = np.flatnonzero(~held)
    x_um, z_um, groups_cv = x_all[keep], z_all[keep], groups[keep]
    labels = cells[label].to_numpy()[keep]
    block = np.full(cells.height, -1, dtype=np.int64)
    if spec.strategy == "stratified":
        roles = _roles(stratified_folds(labels, groups_cv, spec.folds, spec.seed), spec.folds)
    elif spec.strategy == "spatial":
        blocks = spatial_blocks(x_um, z_um, groups_cv, spec.block_um, spec.seed)
        block[keep] = blocks
        roles = _roles(assign_blocks(blocks, labels, spec.folds, spec.seed)[blocks], spec.folds)
        buffer_roles(roles, x_um, z_um, buffer_um, groups_cv if spec.group_by_root else None)
    else:
        box = spec.column_box_um
        if box is None:
            raise ConfigError("the column split needs column_box_um = [x_min, x_max, z_min, z_max] (um)")
        inside = (x_um >= box[0]) & (x_um <= box[1]) & (z_um >= box[2]) & (z_um <= box[3])
        inside = follow_first_member(inside, groups_cv)
        roles = {
            "fold_0": np.where(inside, "test", "train").tolist(),
            "fold_1": np.where(inside, "train", "test").tolist(),
        }
    columns: dict[str, Any] = {"nucleus_id": cells["nucleus_id"]}
    for name, fold_roles in roles.items():
        full = np.full(cells.height, "locked", dtype=object)
        full[keep] = np.array(fold_roles, dtype=object)
        columns[name] = full.tolist()
    columns["locked"] = locked_roles["locked"]
    columns["block"] = block
    return pl.DataFrame(columns, schema_overrides={"block": pl.Int64})


def fold_names(split: pl.DataFrame) -> list[str]:
    return [c for c in split.columns if c.startswith("fold_")]
