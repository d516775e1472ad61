"""Report figures (matplotlib on the headless Agg backend): confusion matrices, per-class metrics, importances,
reliability diagrams, feature distributions and depth profiles. Draws; never trains, never reads reports."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from cellfeatures.datasets.dataset import Dataset

DEPTH_FEATURES = ("soma_depth_um", "depth_um")


def pyplot() -> Any:
    """matplotlib's pyplot on the headless Agg backend (reports are written without a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(path: Path, title: str, labels: list[str], matrix: np.ndarray) -> None:
    plt = pyplot()

    # sized for the number of classes, never below what a 2-class matrix with its labels and title needs
    side = max(3.6, 1.2 + 0.55 * len(labels))
    fig, ax = plt.subplots(figsize=(side, max(3.2, 1.0 + 0.5 * len(labels))))
    norm = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    for i in range(len(labels)):
        for j in range(len(labels)):
            if matrix[i, j]:
                ax.text(
                    j,
                    i,
                    str(int(matrix[i, j])),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black",
                )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=8)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_per_class(path: Path, per_class: dict[str, dict[str, float]], labels: list[str]) -> None:
    """Entries x classes heat map of F1: readable at any number of entries (grouped bars were ~3,000 px wide)."""
    plt = pyplot()

    entries = list(per_class)
    grid = np.array([[per_class[e].get(c, np.nan) for c in labels] for e in entries], dtype=float)
    fig, ax = plt.subplots(figsize=(2.8 + 0.55 * len(labels), 1.0 + 0.32 * max(len(entries), 2)))
    ax.imshow(grid, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(entries)), entries, fontsize=8)
    for i in range(len(entries)):
        for j in range(len(labels)):
            if grid[i, j] == grid[i, j]:
                colour = "black" if grid[i, j] > 0.6 else "white"
                ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=6.5, color=colour)
    ax.set_title("per-class F1 (first seed, folds pooled)", fontsize=9)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_importances(path: Path, rows: list[dict[str, Any]], title: str) -> None:
    plt = pyplot()

    top = rows[:15][::-1]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(top) + 1))
    ax.barh([r["feature"] for r in top], [r["mean"] for r in top], xerr=[r["std"] for r in top])
    ax.tick_params(axis="y", labelsize=8)
    ax.set_xlabel("drop in balanced accuracy when permuted (test split)")
    ax.set_title(title, fontsize=9)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_reliability(path: Path, bins: list[dict[str, Any]], title: str) -> None:
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--")
    ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], marker="o")
    ax.set_xlabel("mean confidence (top class)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=9)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def png_bytes(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    pyplot().close(fig)
    return buf.getvalue()


# nm-based units read as 1e12 offsets on an axis: figures show them in micrometres
MICRO_UNITS = (("_nm3", 1e9, "µm³"), ("_nm2", 1e6, "µm²"), ("_nm", 1e3, "µm"))


def in_micrometres(feature: str, values: np.ndarray) -> tuple[np.ndarray, str]:
    """Values of a `*_nm3` / `*_nm2` / `*_nm` feature in µm³ / µm² / µm, with the unit to print ("" if none)."""
    for suffix, factor, unit in MICRO_UNITS:
        if feature.endswith(suffix):
            return values / factor, unit
    return values, ""


def class_colours(n: int) -> list[Any]:
    """n distinct colours: matplotlib's default cycle repeats after 10, and the sample has 11 types."""
    plt = pyplot()
    if n > 20:
        return [plt.get_cmap("hsv")(i / n) for i in range(n)]
    paired = plt.get_cmap("tab20")  # pairs of dark and light shades: the ten dark hues first
    order = [*range(0, 20, 2), *range(1, 20, 2)]
    return [paired(order[i]) for i in range(n)]


def class_order(ds: Dataset) -> list[str]:
    return list(ds.card["class_counts"])


def feature_distributions(ds: Dataset, limit: int = 9) -> bytes | None:
    """Box plots of the first real (then derived) numeric features, one box per class."""
    origins = ds.card["feature_origins"]
    numeric = [f for f in ds.features if ds.data[f].dtype.is_numeric()]
    chosen = sorted(numeric, key=lambda f: {"real": 0, "derived": 1}.get(origins[f], 2))[:limit]
    if not chosen:
        return None
    classes = class_order(ds)
    plt = pyplot()
    cols = 3
    rows = (len(chosen) + cols - 1) // cols
    width = max(3.4, 0.32 * len(classes) + 1.0)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * width, rows * 2.8), squeeze=False)
    for ax, feature in zip(axes.flat, chosen, strict=False):
        groups = [
            ds.data.filter(pl.col(ds.label) == c)[feature].drop_nulls().cast(pl.Float64).to_numpy() for c in classes
        ]
        converted = [in_micrometres(feature, g) for g in groups]
        unit = converted[0][1] if converted else ""
        ax.boxplot([g for g, _u in converted], showfliers=False)
        ax.set_xticks(range(1, len(classes) + 1), classes, rotation=60, ha="right", fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
        ax.set_title(f"{feature}{f' in {unit}' if unit else ''} ({origins[feature]})", fontsize=8)
    for ax in list(axes.flat)[len(chosen) :]:
        ax.axis("off")
    fig.tight_layout()
    return png_bytes(fig)


def depth_profiles(ds: Dataset) -> bytes | None:
    """Where each type sits along cortical depth: one jittered column of cells per type, pia at the top."""
    depth = next((f for f in DEPTH_FEATURES if f in ds.data.columns), None)
    if depth is None:
        return None
    classes = class_order(ds)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(4.0, 0.55 * len(classes) + 1.5), 4.2))
    rng = np.random.default_rng(0)
    colours = class_colours(len(classes))
    for i, c in enumerate(classes):
        y = ds.data.filter(pl.col(ds.label) == c)[depth].drop_nulls().cast(pl.Float64).to_numpy()
        ax.scatter(i + rng.uniform(-0.25, 0.25, len(y)), y, s=4, alpha=0.5, color=colours[i])
        if len(y):
            ax.hlines(np.median(y), i - 0.35, i + 0.35, color="black", lw=1.2)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=8)
    ax.invert_yaxis()
    ax.set_ylabel(f"{depth} (pia at the top)")
    ax.set_title(f"depth profile per {ds.card['label']['level']} (line: median)", fontsize=9)
    return png_bytes(fig)


def plot_selective(path: Path, curves: dict[str, list[dict[str, Any]]], tables: dict[str, tuple[float, float]]) -> None:
    """Accuracy of the kept cells against coverage, one line per model; prediction tables as points."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    colours = class_colours(len(curves) + len(tables))
    for i, (name, rows) in enumerate(curves.items()):
        ax.plot(
            [r["coverage"] for r in rows], [r["accuracy"] for r in rows], marker="o", ms=3, label=name, color=colours[i]
        )
    for j, (name, (coverage, accuracy)) in enumerate(tables.items()):
        ax.scatter([coverage], [accuracy], marker="*", s=120, label=name, color=colours[len(curves) + j], zorder=3)
    ax.invert_xaxis()
    ax.set_xlabel("coverage (share of test cells kept)")
    ax.set_ylabel("accuracy of the kept cells")
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title("accuracy–coverage (mean over seeds)", fontsize=9)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
