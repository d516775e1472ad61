"""Write a leaderboard as leaderboard.csv + REPORT.md + figures (confusion matrices, per-class F1, importances).

Headline rows use no synthetic features; rows that do are kept in a separate section and flagged. The
report states our numbers next to the published figure for soma/nucleus-feature models and spells out
how the settings differ.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from cellfeatures.atomic import publish_directory
from cellfeatures.baselines import EXISTING, Evaluator, Leaderboard, save_model

PUBLISHED = {
    "figure": "about 91% cross-validated accuracy",
    "source": "Elabbady et al. 2025 (Nature), soma and nucleus features, MICrONS minnie65",
}


def report_key(
    dataset_id: str, seeds: tuple[int, ...], models: tuple[str, ...], existing: tuple[str, ...] | None
) -> str:
    blob = json.dumps({"dataset": dataset_id, "seeds": seeds, "models": models, "existing": existing, "v": 1})
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _pyplot() -> Any:
    """matplotlib's pyplot on the headless Agg backend (reports are written without a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_confusion(path: Path, title: str, labels: list[str], matrix: np.ndarray) -> None:
    plt = _pyplot()

    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * len(labels), 0.8 + 0.5 * len(labels)))
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
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_per_class(path: Path, per_class: dict[str, dict[str, float]], labels: list[str]) -> None:
    plt = _pyplot()

    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(labels) * max(1, len(per_class)) / 2), 3.6))
    width = 0.8 / max(len(per_class), 1)
    for i, (entry, scores) in enumerate(per_class.items()):
        ax.bar(np.arange(len(labels)) + i * width, [scores.get(c, 0.0) for c in labels], width, label=entry)
    ax.set_xticks(np.arange(len(labels)) + 0.4 - width / 2, labels, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("F1 (seed 0, pooled folds)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_importances(path: Path, rows: list[dict[str, Any]], title: str) -> None:
    plt = _pyplot()

    top = rows[:15][::-1]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(top) + 1))
    ax.barh([r["feature"] for r in top], [r["mean"] for r in top], xerr=[r["std"] for r in top])
    ax.tick_params(axis="y", labelsize=8)
    ax.set_xlabel("drop in balanced accuracy when permuted (test split)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fmt(mean: float, std: float) -> str:
    return "–" if mean != mean else f"{mean:.3f} ± {std:.3f}"


def baseline_report(
    store: Any,
    dataset: Any,
    *,
    seeds: tuple[int, ...] = (0, 1, 2),
    models: tuple[str, ...] | None = None,
    existing: tuple[str, ...] | None = None,
    root: str | Path = "datasets",
    extra: list[Any] | None = None,
) -> tuple[Path, bool]:
    """Run baselines for a dataset (and optional extra datasets) and write the report once.

    Cached: the same datasets, seeds, models and existing tables give the same report directory, and
    a second call returns it without recomputing. Returns (REPORT.md path, created).
    """
    from cellfeatures.baselines import TRAINED_MODELS, run_baselines

    models = models or TRAINED_MODELS
    key = report_key("+".join([dataset.id, *[d.id for d in extra or []]]), seeds, models, existing)
    out = dataset.path / "baselines" / key
    if (out / "REPORT.md").exists():
        return out / "REPORT.md", False
    boards = [
        run_baselines(store, d, seeds=seeds, models=models, existing=existing, root=root)
        for d in [dataset, *(extra or [])]
    ]

    def write(tmp: Path) -> None:
        write_report(boards[0], tmp, boards[1:])
        save_best_model(boards[0], tmp)

    _, created = publish_directory(out, write, ready="REPORT.md")
    return out / "REPORT.md", created


def write_report(board: Leaderboard, out: Path, extra_boards: list[Leaderboard] | None = None) -> Path:
    """leaderboard.csv (all boards stacked), REPORT.md and figures/ under out."""
    out.mkdir(parents=True, exist_ok=True)
    figures = out / "figures"
    figures.mkdir(exist_ok=True)
    boards = [board, *(extra_boards or [])]
    pl.concat(
        [
            b.frame().with_columns(
                pl.lit(b.dataset.card["name"]).alias("dataset"), pl.lit(b.dataset.id).alias("dataset_id")
            )
            for b in boards
        ],
        how="diagonal_relaxed",
    ).write_csv(out / "leaderboard.csv")

    lines = ["# Baseline report", ""]
    for b in boards:
        lines += _board_section(b, figures)
    lines += _published_section(boards)
    (out / "REPORT.md").write_text("\n".join(lines) + "\n")
    return out / "REPORT.md"


def _board_section(board: Leaderboard, figures: Path) -> list[str]:
    ds = board.dataset
    card = ds.card
    split = card["spec"]["split"]
    frame = board.frame()
    evaluator = Evaluator(ds)
    labels = evaluator.classes
    name = f"{card['name']}-{card['label']['level']}"
    buffer = split["buffer_um"] if split["buffer_um"] is not None else split["block_um"]
    blocks = f", blocks {split['block_um']:g} um, buffer {buffer:g} um" if split["strategy"] == "spatial" else ""
    seeds = ", ".join(str(s) for s in board.entries[0].seeds)
    lines = [
        f"## {card['name']}: {card['label']['column']} ({card['label']['level']} level, {len(labels)} classes)",
        "",
        f"Dataset `{ds.id}` on feature version `{card['feature_version']}`; {card['cells']:,} cells; "
        f"{split['strategy']} split, {len(card['folds'])} folds{blocks}; seeds {seeds} "
        "(mean ± std over seeds of pooled cross-validated metrics).",
        "",
    ]
    for headline in (True, False):
        rows = frame.filter(pl.col("headline") == headline)
        if not rows.height:
            continue
        lines += [
            "### Headline (no synthetic features)"
            if headline
            else "### Rows with synthetic features (not headline: they say nothing about real cells)",
            "",
            "| entry | kind | features | accuracy | balanced accuracy | macro-F1 | log-loss | coverage |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in rows.iter_rows(named=True):
            coverage = f"{r['coverage']:.1%}" if r["coverage"] is not None else "100%"
            lines.append(
                f"| {r['entry']} | {r['kind']} | {r['feature_origins']} | "
                f"{_fmt(r['accuracy_mean'], r['accuracy_std'])} | "
                f"{_fmt(r['balanced_accuracy_mean'], r['balanced_accuracy_std'])} | "
                f"{_fmt(r['macro_f1_mean'], r['macro_f1_std'])} | "
                f"{_fmt(r['log_loss_mean'], r['log_loss_std'])} | {coverage} |"
            )
        lines.append("")
    lines += [
        "Existing model tables are scored on the same test cells after harmonising their spellings; a cell "
        "they give no label at this level counts as wrong (coverage says how often). A model table may have been "
        "trained on some of these labelled cells, which would make its score here optimistic.",
        "",
    ]
    per_class: dict[str, dict[str, float]] = {}
    lines += ["### Confusion matrices (seed 0, all folds pooled)", ""]
    for entry in board.entries:
        if entry.predictions is None:
            continue
        metrics = evaluator.eval(
            entry.predictions["y_true"].to_numpy(),
            [None if p == "<none>" else p for p in entry.predictions["y_pred"].to_list()],
        )
        per_class[entry.entry] = {c: m["f1"] for c, m in metrics["per_class"].items()}
        png = f"{name}-confusion-{entry.entry.replace(':', '_')}.png"
        _plot_confusion(
            figures / png, f"{entry.entry} ({card['label']['level']})", labels, np.array(metrics["confusion"])
        )
        lines.append(f"![{entry.entry}](figures/{png})")
    bars = f"{name}-per-class-f1.png"
    _plot_per_class(figures / bars, per_class, labels)
    lines += ["", "### Per-class F1", "", f"![per-class F1](figures/{bars})", ""]
    for entry in board.entries:
        if entry.importances:
            png = f"{name}-importance-{entry.entry}.png"
            _plot_importances(figures / png, entry.importances, f"{entry.entry}: permutation importance (fold 0)")
            top = ", ".join(f"{r['feature']} ({r['mean']:.3f})" for r in entry.importances[:5])
            lines += [
                f"### Feature importance: {entry.entry}",
                "",
                f"Permutation importance on the test split of fold 0 (seed {entry.seeds[0]}): {top}.",
                "",
                f"![importance](figures/{png})",
                "",
            ]
    return lines


def _published_section(boards: list[Leaderboard]) -> list[str]:
    lines = ["## Against the published figure", ""]
    for b in boards:
        frame = b.frame().filter(pl.col("headline") & (pl.col("kind") == "trained"))
        if not frame.height:
            continue
        best = frame.sort("accuracy_mean", descending=True).row(0, named=True)
        existing = b.frame().filter(pl.col("kind") == EXISTING).sort("accuracy_mean", descending=True)
        card = b.dataset.card
        lines.append(
            f"- {card['label']['level']} level: best trained baseline **{best['entry']}** reaches "
            f"{best['accuracy_mean']:.1%} ± {best['accuracy_std']:.1%} accuracy "
            f"(balanced {best['balanced_accuracy_mean']:.1%})"
            + (
                f"; the best existing table ({existing['entry'][0]}) {existing['accuracy_mean'][0]:.1%}"
                if existing.height
                else ""
            )
            + "."
        )
    lines += [
        f"- Published: {PUBLISHED['figure']} ({PUBLISHED['source']}).",
        "",
        "How the settings differ (why the numbers are not directly comparable):",
        "- **Features.** Ours are the 13 soma/nucleus morphology columns of the v117-era table shipped in the "
        "`cortical-layers` package plus cortical depth (and nucleus volume); the published models use their own, "
        "larger and later feature set (including perisomatic features) computed on a later segmentation.",
        "- **Labels.** Ours: the manual column types of `allen_v1_column_types_slanted_ref`, harmonised to 11 types "
        "(or 2 classes), with `6P-U`, `WM-P` and `Unsure*` cells dropped at type level and classes under 5 cells "
        "dropped; the paper's label set and level differ.",
        "- **Evaluation.** Ours: spatial blocks in x/z with a buffer, so neighbouring cells never sit on both "
        "sides; mean over 3 split seeds. A random stratified split is usually more optimistic.",
        "- **Cells.** Ours: the labelled column neurons whose root carries a single nucleus "
        "(counts per section above).",
        "",
    ]
    return lines


def save_best_model(board: Leaderboard, out: Path) -> Path | None:
    """Refit the best trained entry on all cells of the dataset and save it with its sidecar."""
    from cellfeatures.baselines import make_model

    frame = board.frame().filter(pl.col("headline") & (pl.col("kind") == "trained"))
    if not frame.height:
        return None
    best = frame.sort("balanced_accuracy_mean", descending=True).row(0, named=True)
    ds = board.dataset
    x, y, names = ds.xy()
    model = make_model(best["entry"], ds.features, seed=0).fit(x, y)
    metrics = {k: best[k] for k in ("accuracy_mean", "balanced_accuracy_mean", "macro_f1_mean")}
    return save_model(model, out / "models" / f"{best['entry']}.joblib", ds, names, metrics)
