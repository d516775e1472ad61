"""Write a leaderboard as files a reviewer can recompute from, and a report people can read.

    leaderboard.csv     one row per (dataset, entry): mean over seeds, fold and seed spread, bootstrap
                        interval per metric; calibration; coverage, covered-cell accuracy and the paired
                        test; locked-test-set scores
    per_fold.csv        every (dataset, entry, seed, fold) metric row behind the means
    predictions.parquet every test prediction (dataset, entry, seed, fold, nucleus_id, truth, prediction,
                        class probabilities): any number here can be re-scored from it
    REPORT.md + figures/

Headline rows use no synthetic features (and prediction tables with enough coverage); the rest is kept
in a separate section. One ranking metric orders every table and picks "best". The report states our
numbers next to the published figure and spells out how the settings differ.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from cellfeatures.atomic import publish_directory
from cellfeatures.baselines import EXISTING, RANKING_METRIC, Evaluator, Leaderboard, best_entry, save_model
from cellfeatures.display import num

PUBLISHED = {
    "figure": "about 91% cross-validated accuracy",
    "source": "Elabbady et al. 2025 (Nature), soma and nucleus features, MICrONS minnie65",
}


def report_key(
    dataset_id: str, seeds: tuple[int, ...], models: tuple[str, ...], existing: tuple[str, ...] | None
) -> str:
    from cellfeatures.baselines import MODELS_VERSION

    blob = json.dumps(
        {"dataset": dataset_id, "seeds": seeds, "models": models, "existing": existing, "v": 2, "m": MODELS_VERSION}
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _pyplot() -> Any:
    """matplotlib's pyplot on the headless Agg backend (reports are written without a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_confusion(path: Path, title: str, labels: list[str], matrix: np.ndarray) -> None:
    plt = _pyplot()

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


def _plot_per_class(path: Path, per_class: dict[str, dict[str, float]], labels: list[str]) -> None:
    """Entries x classes heat map of F1: readable at any number of entries (grouped bars were ~3,000 px wide)."""
    plt = _pyplot()

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


def _plot_importances(path: Path, rows: list[dict[str, Any]], title: str) -> None:
    plt = _pyplot()

    top = rows[:15][::-1]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(top) + 1))
    ax.barh([r["feature"] for r in top], [r["mean"] for r in top], xerr=[r["std"] for r in top])
    ax.tick_params(axis="y", labelsize=8)
    ax.set_xlabel("drop in balanced accuracy when permuted (test split)")
    ax.set_title(title, fontsize=9)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _plot_reliability(path: Path, bins: list[dict[str, Any]], title: str) -> None:
    plt = _pyplot()

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


def _cell(row: dict[str, Any], metric: str) -> str:
    """mean [95% interval] (fold sd) for one metric of a leaderboard row."""
    mean = row.get(f"{metric}_mean")
    if mean is None:
        return "–"
    text = num(mean)
    if row.get(f"{metric}_ci_low") is not None:
        text += f" [{num(row[f'{metric}_ci_low'])}, {num(row[f'{metric}_ci_high'])}]"
    if row.get(f"{metric}_fold_std") is not None:
        text += f" (±{num(row[f'{metric}_fold_std'])})"
    return text


def baseline_report(
    store: Any,
    dataset: Any,
    *,
    seeds: tuple[int, ...] = (0, 1, 2),
    models: tuple[str, ...] | None = None,
    existing: tuple[str, ...] | None = None,
    root: str | Path | None = None,
    extra: list[Any] | None = None,
    custom: dict[str, Any] | None = None,
    progress: Any = None,
) -> tuple[Path, bool]:
    """Run baselines for a dataset (and optional extra datasets) and write the report once.

    Cached: the same datasets, seeds, models and existing tables give the same report directory, and
    a second call returns it without recomputing (custom estimators are keyed by name and parameters).
    Returns (REPORT.md path, created).
    """
    from cellfeatures.baselines import TRAINED_MODELS, run_baselines

    models = models or TRAINED_MODELS
    named = tuple(models) + tuple(f"{k}={v!r}" for k, v in sorted((custom or {}).items()))
    key = report_key("+".join([dataset.id, *[d.id for d in extra or []]]), seeds, named, existing)
    out = dataset.path / "baselines" / key
    if (out / "REPORT.md").exists():
        return out / "REPORT.md", False
    boards = [
        run_baselines(
            store, d, seeds=seeds, models=models, custom=custom, existing=existing, root=root, progress=progress
        )
        for d in [dataset, *(extra or [])]
    ]

    def write(tmp: Path) -> None:
        from cellfeatures.html_report import render

        write_report(boards[0], tmp, boards[1:])
        save_best_model(boards[0], tmp)
        (tmp / "REPORT.html").write_text(render(tmp, shown=out), encoding="utf-8")

    _, created = publish_directory(out, write, ready="REPORT.md")
    return out / "REPORT.md", created


def _stacked(boards: list[Leaderboard], part: str) -> pl.DataFrame:
    frames = []
    for b in boards:
        frame = getattr(b, part)()
        frames.append(
            frame.with_columns(
                pl.lit(b.dataset.card["name"]).alias("dataset"), pl.lit(b.dataset.id).alias("dataset_id")
            )
        )
    return pl.concat(frames, how="diagonal_relaxed")


def write_report(board: Leaderboard, out: Path, extra_boards: list[Leaderboard] | None = None) -> Path:
    """leaderboard.csv, per_fold.csv, predictions.parquet (all boards stacked), REPORT.md and figures/."""
    out.mkdir(parents=True, exist_ok=True)
    figures = out / "figures"
    figures.mkdir(exist_ok=True)
    boards = [board, *(extra_boards or [])]
    _stacked(boards, "frame").write_csv(out / "leaderboard.csv")
    _stacked(boards, "per_fold").write_csv(out / "per_fold.csv")
    _stacked(boards, "predictions").write_parquet(out / "predictions.parquet", compression="zstd")
    lines = [
        "# Baseline report",
        "",
        f"Ranking metric: **{RANKING_METRIC.replace('_', ' ')}** (orders every table; picks the best model, by "
        "cross-validation only). Each cell: mean over seeds of the pooled cross-validated value, its 95% "
        "bootstrap interval [resampling whole spatial blocks of every seed's split] and (± the standard deviation over "
        "folds). `leaderboard.csv`, `per_fold.csv` and `predictions.parquet` hold every number and prediction.",
        "",
    ]
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
        f"{split['strategy']} split, {len(ds.folds)} folds{blocks}; seeds {seeds} (each seed re-draws the blocks).",
        "",
    ]
    if card.get("folds_missing_classes"):
        lines += [f"- {f} has no test cell of {c}" for f, c in card["folds_missing_classes"].items()] + [""]
    if card.get("layer_features"):
        lines += [
            f"Features carrying laminar position: {', '.join(card['layer_features'])}. "
            "`hist_gradient_boosting_no_layer` is trained without them: the gap between the two is what "
            "position alone buys (learning the layer rather than the type).",
            "",
        ]
    for headline in (True, False):
        rows = frame.filter(pl.col("headline") == headline)
        if not rows.height:
            continue
        lines += [
            "### Headline (no synthetic features)"
            if headline
            else "### Not headline (synthetic features, or a prediction table covering under half the test cells)",
            "",
            "| entry | kind | features | balanced accuracy | accuracy | macro-F1 | log-loss | ECE | coverage |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows.iter_rows(named=True):
            coverage = f"{r['coverage']:.1%}" if r["coverage"] is not None else "100%"
            lines.append(
                f"| {r['entry']} | {r['kind']} | {r['feature_origins']} | {_cell(r, 'balanced_accuracy')} | "
                f"{_cell(r, 'accuracy')} | {_cell(r, 'macro_f1')} | {num(r['log_loss_mean'])} | {num(r['ece'])} | "
                f"{coverage} |"
            )
        lines.append("")
    tables = frame.filter(pl.col("covered_n").is_not_null())
    if tables.height:
        lines += [
            "### Prediction tables on the cells they cover (paired with the best model)",
            "",
            "Two views of each table: accuracy over every test cell (no prediction counts as wrong), and accuracy "
            "on only the cells it labels, where the best cross-validated model is scored on the very same cells; "
            "p: exact two-sided McNemar test on the discordant cells (first seed). A model table may have been "
            "trained on some of these labelled cells, which would make its score optimistic.",
            "",
            "| table | coverage | accuracy, all test cells | cells covered | table accuracy | model | model accuracy | "
            "p |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in tables.iter_rows(named=True):
            lines.append(
                f"| {r['entry']} | {r['coverage']:.1%} | {num(r['accuracy_mean'])} | {r['covered_n']:,} | "
                f"{num(r['covered_accuracy'])} | {r['paired_vs'] or '–'} | {num(r['paired_model_accuracy'])} | "
                f"{num(r['paired_p_value'], 4)} |"
            )
        lines.append("")
    locked = frame.filter(pl.col("locked_n").is_not_null())
    if locked.height:
        lines += [
            "### Locked test set (never used for model selection)",
            "",
            f"{locked['locked_n'][0]:,} cells in the high-x slab of the column (following its slant, so every layer); "
            "models refit on every "
            "cell outside the slab and its buffer band, scored once.",
            "",
            "| entry | balanced accuracy | accuracy |",
            "|---|---|---|",
        ]
        lines += [
            f"| {r['entry']} | {num(r['locked_balanced_accuracy'])} | {num(r['locked_accuracy'])} |"
            for r in locked.iter_rows(named=True)
        ]
        lines.append("")
    lines += _per_class_section(board, labels, name, figures)
    lines += _calibration_section(board, name, figures)
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


def _per_class_section(board: Leaderboard, labels: list[str], name: str, figures: Path) -> list[str]:
    """Per-class precision / recall / F1 of the best model and the prediction tables, plus confusion figures."""
    evaluator = Evaluator(board.dataset)
    best = best_entry(board.entries)
    shown = [e for e in board.entries if e is best or e.kind == EXISTING or e.kind == "external"]
    lines = ["### Per-class metrics (first seed, all folds pooled)", ""]
    header = "| class | support | " + " | ".join(f"{e.entry} P / R / F1" for e in shown) + " |"
    lines += [header, "|---|---|" + "---|" * len(shown)]
    metrics = {}
    for e in shown:
        first = e.predictions.filter(pl.col("seed") == e.seeds[0])
        preds = [None if p == "<none>" else p for p in first["y_pred"].to_list()]
        metrics[e.entry] = evaluator.eval(first["y_true"].to_numpy(), preds)
    for c in labels:
        support = metrics[shown[0].entry]["per_class"][c]["support"] if shown else 0
        cells = [
            f"{m['per_class'][c]['precision']:.2f} / {m['per_class'][c]['recall']:.2f} / {m['per_class'][c]['f1']:.2f}"
            for m in metrics.values()
        ]
        lines.append(f"| {c} | {support} | " + " | ".join(cells) + " |")
    lines += ["", "### Confusion matrices (first seed, all folds pooled)", ""]
    per_class: dict[str, dict[str, float]] = {}
    for e in board.entries:
        first = e.predictions.filter(pl.col("seed") == e.seeds[0])
        m = evaluator.eval(
            first["y_true"].to_numpy(), [None if p == "<none>" else p for p in first["y_pred"].to_list()]
        )
        per_class[e.entry] = {c: v["f1"] for c, v in m["per_class"].items()}
        png = f"{name}-confusion-{e.entry.replace(':', '_')}.png"
        _plot_confusion(
            figures / png, f"{e.entry} ({board.dataset.card['label']['level']})", labels, np.array(m["confusion"])
        )
        lines.append(f"![{e.entry}](figures/{png})")
    bars = f"{name}-per-class-f1.png"
    _plot_per_class(figures / bars, per_class, labels)
    return [*lines, "", f"![per-class F1](figures/{bars})", ""]


def _calibration_section(board: Leaderboard, name: str, figures: Path) -> list[str]:
    """ECE per entry with probabilities, and the reliability table and diagram of the best model."""
    rows = [(e, e.per_seed[0]["calibration"]) for e in board.entries if e.per_seed and "calibration" in e.per_seed[0]]
    if not rows:
        return []
    lines = [
        "### Calibration (first seed, pooled): expected calibration error of the top-class probability",
        "",
        "| entry | ECE | mean confidence | accuracy |",
        "|---|---|---|---|",
    ]
    for e, cal in rows:
        lines.append(
            f"| {e.entry} | {cal['ece']:.3f} | {cal['mean_confidence']:.3f} | {e.per_seed[0]['accuracy']:.3f} |"
        )
    best = best_entry(board.entries)
    if best is not None and "calibration" in best.per_seed[0]:
        bins = best.per_seed[0]["calibration"]["bins"]
        png = f"{name}-reliability-{best.entry}.png"
        _plot_reliability(figures / png, bins, f"{best.entry}: reliability (first seed)")
        lines += [
            "",
            f"Reliability of {best.entry}:",
            "",
            "| confidence bin | cells | mean confidence | accuracy |",
            "|---|---|---|---|",
            *[f"| {b['bin']} | {b['n']} | {b['confidence']:.3f} | {b['accuracy']:.3f} |" for b in bins],
            "",
            f"![reliability](figures/{png})",
        ]
    return [*lines, ""]


def _published_section(boards: list[Leaderboard]) -> list[str]:
    lines = ["## Against the published figure", ""]
    for b in boards:
        best = best_entry(b.entries)
        if best is None:
            continue
        s = best.summary(RANKING_METRIC)
        acc = best.summary("accuracy")
        card = b.dataset.card
        lines.append(
            f"- {card['label']['level']} level: best model by cross-validated {RANKING_METRIC.replace('_', ' ')} "
            f"**{best.entry}**: {s['mean']:.1%} [{s['ci_low']:.1%}, {s['ci_high']:.1%}] "
            f"(accuracy {acc['mean']:.1%} [{acc['ci_low']:.1%}, {acc['ci_high']:.1%}])."
        )
    lines += [
        f"- Published: {PUBLISHED['figure']} ({PUBLISHED['source']}).",
        "",
        "How the settings differ (why the numbers are not directly comparable):",
        "- **Features.** Ours are the 12 soma/nucleus morphology columns of the v117-era table shipped in the "
        "`cortical-layers` package plus cortical depth and nucleus volume; the published models use their own, "
        "larger and later feature set (including perisomatic features) computed on a later segmentation.",
        "- **Labels.** Ours: the manual column types of `allen_v1_column_types_slanted_ref`, harmonised to 11 types "
        "(or 2 classes), with `6P-U`, `WM-P` and `Unsure*` cells dropped at type level and classes under 5 cells "
        "dropped; the paper's label set and level differ.",
        "- **Evaluation.** Ours: spatial blocks in x/z with a buffer, so neighbouring cells never sit on both "
        "sides, class-balanced block assignment, a seed re-draws the blocks. A random stratified split is "
        "usually more optimistic.",
        "- **Cells.** Ours: the labelled column neurons whose root carries a single nucleus "
        "(counts per section above).",
        "",
    ]
    return lines


def save_best_model(board: Leaderboard, out: Path) -> Path | None:
    """Refit the best entry (by cross-validated ranking metric) on all cells and save it with its sidecar."""
    from cellfeatures.baselines import TRAINED_MODELS, make_model

    best = best_entry(board.entries)
    if best is None or best.entry not in TRAINED_MODELS:
        return None
    ds = board.dataset
    x, y, names = ds.xy()
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        model = make_model(best.entry, names, seed=0).fit(x, y)
    metrics = {f"{m}_{k}": v for m in ("accuracy", RANKING_METRIC, "macro_f1") for k, v in best.summary(m).items()}
    return save_model(model, out / "models" / f"{best.entry}.joblib", ds, names, metrics)
