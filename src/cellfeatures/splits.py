"""Leakage-aware split strategies. Every strategy returns k folds of roles per cell.

A split is a frame: nucleus_id, then one column per fold `fold_<k>` with role `train`, `test` or
`buffer` (excluded from that fold's training because it sits too close to a test cell). A single
train/test split is fold 0. Why roles rather than a fold index: spatial blocking needs a buffer that
depends on which fold is tested.

Strategies:
- `stratified`: stratified k-fold by label;
- `spatial`: cells binned into square blocks of `block_um` in the tangential x/z plane (y is depth, so a
  block is a cortical column segment); whole blocks go to folds, balanced by cell count; then, per fold,
  training cells closer than `buffer_um` (default: the block size) to any test cell become `buffer`, so no
  training cell lies within that distance of a test cell;
- `column`: the V1 "minnie column" (an x/z box) against the rest: fold 0 tests inside, fold 1 outside.
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
    block_um: float = 100.0
    buffer_um: float | None = None  # default: block_um
    column_box_um: tuple[float, float, float, float] | None = None  # x_min, x_max, z_min, z_max
    group_by_root: bool = True
    params: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"split strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.strategy != "column" and self.folds < 2:
            raise ConfigError("a split needs at least 2 folds")


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


def spatial_folds(
    x_um: np.ndarray, z_um: np.ndarray, groups: np.ndarray, folds: int, block_um: float, seed: int
) -> np.ndarray:
    """Whole x/z blocks to folds, largest first to the emptiest fold (ties broken by a seeded shuffle)."""
    bx = np.floor(x_um / block_um).astype(np.int64)
    bz = np.floor(z_um / block_um).astype(np.int64)
    block_keys, block = np.unique(np.stack([bx, bz], axis=1), axis=0, return_inverse=True)
    block = block.ravel()
    block = follow_first_member(block, groups)
    sizes = np.bincount(block, minlength=len(block_keys))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(block_keys))
    order = order[np.argsort(-sizes[order], kind="stable")]
    load = np.zeros(folds)
    fold_of_block = np.zeros(len(block_keys), dtype=np.int64)
    for b in order:
        k = int(np.argmin(load))
        fold_of_block[b] = k
        load[k] += sizes[b]
    return fold_of_block[block]


def buffer_roles(
    roles: dict[str, list[str]], x_um: np.ndarray, z_um: np.ndarray, buffer_um: float, groups: np.ndarray | None = None
) -> None:
    """In place: per fold, training cells within buffer_um (x/z) of a test cell become 'buffer'.

    With groups, a group with one buffered member is buffered whole (a merged root is one object).
    """
    from scipy.spatial import cKDTree

    points = np.stack([x_um, z_um], axis=1)
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


def make_split(cells: pl.DataFrame, label: str, spec: SplitSpec) -> pl.DataFrame:
    """cells: nucleus_id, root_id, pos_x_nm, pos_z_nm and the label column. Returns nucleus_id + fold roles."""
    cells = cells.sort("nucleus_id")
    groups = _groups(cells, spec.group_by_root)
    x_um = cells["pos_x_nm"].to_numpy() / 1000.0
    z_um = cells["pos_z_nm"].to_numpy() / 1000.0
    if spec.strategy == "stratified":
        roles = _roles(stratified_folds(cells[label].to_numpy(), groups, spec.folds, spec.seed), spec.folds)
    elif spec.strategy == "spatial":
        roles = _roles(spatial_folds(x_um, z_um, groups, spec.folds, spec.block_um, spec.seed), spec.folds)
        buffer_um = spec.buffer_um if spec.buffer_um is not None else spec.block_um
        buffer_roles(roles, x_um, z_um, buffer_um, groups if spec.group_by_root else None)
    else:
        box = spec.column_box_um
        if box is None:
            raise ConfigError("the column split needs column_box_um = [x_min, x_max, z_min, z_max] (um)")
        inside = (x_um >= box[0]) & (x_um <= box[1]) & (z_um >= box[2]) & (z_um <= box[3])
        inside = follow_first_member(inside, groups)
        roles = {
            "fold_0": np.where(inside, "test", "train").tolist(),
            "fold_1": np.where(inside, "train", "test").tolist(),
        }
    return pl.DataFrame({"nucleus_id": cells["nucleus_id"], **roles})


def fold_names(split: pl.DataFrame) -> list[str]:
    return [c for c in split.columns if c.startswith("fold_")]
