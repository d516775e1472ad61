"""REPORT.md and its figures, rendered from a saved Leaderboard (which owns leaderboard.csv, per_fold.csv,
predictions.parquet and entries.json: see benchmark/leaderboard.py).

Headline rows use no synthetic features (and prediction tables with enough coverage); the rest is kept
in a separate section, and entries scored from anyone's file in their own. One ranking metric orders
every table and picks "best". The report states our numbers next to the published figure and spells out
how the settings differ. Must not: train models or write the board's files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from cellfeatures.benchmark.entries import EntryResult, class_recalls
from cellfeatures.benchmark.evaluate import Evaluator
from cellfeatures.benchmark.models import EXISTING, EXTERNAL
from cellfeatures.benchmark.run import RANKING_METRIC, Leaderboard, best_entry
from cellfeatures.display import difference, interval, num
from cellfeatures.report.comparisons import covered_section, curve_section, gain_section, locked_section
from cellfeatures.report.contents import contents
from cellfeatures.report.figures import plot_confusion, plot_importances, plot_per_class, plot_reliability

PUBLISHED = {
    "figure": "about 91% cross-validated accuracy",
    "source": "Elabbady et al. 2025 (Nature), soma and nucleus features, MICrONS minnie65",
}


def write_report(board: Leaderboard, out: Path) -> Path:
    """REPORT.md and figures/ of a saved leaderboard (every dataset's board of the report)."""
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Baseline report",
        "",
        f"Ranking metric: **{RANKING_METRIC.replace('_', ' ')}** (orders every table; picks the best model, by "
        "cross-validation only). Each cell: mean over seeds of the pooled cross-validated value, its 95% "
        "bootstrap interval [resampling the first seed's spatial blocks, one draw for every seed] and (± the "
        "standard deviation over folds). `leaderboard.csv`, `per_fold.csv` and `predictions.parquet` hold "
        "every number and prediction.",
        "",
    ]
    for b in board.boards:
        lines += _board_section(b, figures)
    lines += external_section(board)  # before the published figure: scored entries belong with the boards
    lines += _published_section(board.boards)
    intro = lines.index("", 3) + 1  # after the title and the paragraph on how to read the numbers
    toc = ["## Contents", "", *contents(["## Contents", *lines[intro:]], levels=(2, 3))[1:], ""]
    lines = lines[:intro] + toc + lines[intro:]
    (out / "REPORT.md").write_text("\n".join(lines) + "\n")
    return out / "REPORT.md"


def external_section(board: Leaderboard) -> list[str]:
    """Entries scored with `cellfeatures score` (or `add_predictions`): listed apart, never headline."""
    rows = [(b, r) for b in board.boards for r in b.own("frame").iter_rows(named=True) if r["kind"] == EXTERNAL]
    if not rows:
        return []
    lines = [
        "## External entries (scored with `cellfeatures score`)",
        "",
        "Scored on the same test cells by the same evaluator; coverage, both views and the "
        "paired test against the best cross-validated model. Not headline: their training data is unknown.",
        "",
        "| dataset | entry | file SHA-256 | coverage | accuracy, all test cells [95%] | balanced accuracy [95%] | "
        "balanced accuracy minus the best model's [95%, paired] | covered cells: entry / model (p) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for b, r in rows:
        best = b.best()
        sha = f"`{r['source'][:16]}`" if r.get("source") else "–"
        lines.append(
            f"| {b.dataset.card['name']} | {r['entry']} | {sha} | {r['coverage']:.1%} | "
            f"{interval(r, 'accuracy')} | {interval(r, 'balanced_accuracy')} | {difference(r, RANKING_METRIC)} | "
            f"{num(r.get('covered_accuracy'), missing='-')} / {num(r.get('paired_model_accuracy'), missing='-')} "
            f"({best.entry if best is not None else '-'}, p {num(r.get('paired_p_value'), 4, missing='-')}) |"
        )
    return [*lines, ""]


def _board_section(board: Leaderboard, figures: Path) -> list[str]:
    ds = board.dataset
    card = ds.card
    split = card["spec"]["split"]
    frame = board.own("frame")
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
    lines += _folds_section(card)
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
            "| entry | kind | features | balanced accuracy | accuracy | macro-F1 | log-loss | ECE | coverage | "
            "balanced accuracy minus the best model's [95%, paired] |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows.iter_rows(named=True):
            coverage = f"{r['coverage']:.1%}" if r["coverage"] is not None else "100%"
            lines.append(
                f"| {r['entry']} | {r['kind']} | {r['feature_origins']} | "
                + " | ".join(interval(r, m, spread=True) for m in ("balanced_accuracy", "accuracy", "macro_f1"))
                + f" | {num(r['log_loss_mean'])} | {num(r['ece'])} | {coverage} | {difference(r, RANKING_METRIC)} |"
            )
        lines.append("")
    clusters = [int(c) for c in frame["clusters"].drop_nulls().to_list()]
    if clusters:
        lines += [
            f"Intervals: 1,000 bootstrap replicates, each drawing the {max(clusters)} spatial blocks of the first "
            "seed's split once and applying that draw to every seed (all seeds score the same cells). The last "
            "column is each entry minus the best model on the same cells, with the interval of the paired "
            "bootstrap (the same draws for both): where it holds zero, the data do not order the two.",
            "",
        ]
    order = {entry: i for i, entry in enumerate(frame["entry"].to_list())}
    ranked = sorted(board.entries, key=lambda e: order.get(e.entry, len(order)))
    lines += covered_section(ranked)
    lines += curve_section(ranked, name, figures)
    lines += gain_section(ranked)
    lines += locked_section(ranked)
    lines += _per_class_section(board, labels, name, figures)
    lines += _calibration_section(board, name, figures)
    best = best_entry(board.entries)
    for entry in sorted(board.entries, key=lambda e: e is not best):  # run_baselines says which entries have them
        if entry.importances:
            png = f"{name}-importance-{entry.entry}.png"
            plot_importances(figures / png, entry.importances, f"{entry.entry}: permutation importance (fold 0)")
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


def _folds_section(card: dict[str, Any]) -> list[str]:
    """Cells per fold and role (first seed), and the fold-class pairs too small to say anything alone.

    Why in the report: a fold trains on fewer cells than the model `predict` deploys, and a class with
    one test cell in a fold makes that fold's per-class numbers noise; the reader should see both.
    """
    folds = card.get("folds") or {}
    if not folds:
        return []
    rows, thin, trains = [], [], []
    for fold, roles in folds.items():
        count = {role: sum((roles.get(role) or {}).values()) for role in ("train", "test", "buffer")}
        small = sorted(c for c, n in (roles.get("test") or {}).items() if n <= 1)
        thin += [f"{fold} {c}" for c in small]
        trains += [count["train"]] if fold != "locked" else []
        rows.append(
            f"| {fold} | {count['train']:,} | {count['test']:,} | {count['buffer']:,} | {', '.join(small) or '–'} |"
        )
    trains = trains or [0]
    return [
        "### Folds (first seed)",
        "",
        f"Each cross-validation fold trains on {min(trains):,}-{max(trains):,} cells (the locked row: the "
        "refit scored on the slab); `cellfeatures predict` fits on all "
        f"{card['cells']:,} labelled cells, so the cross-validated numbers describe a model trained on less data "
        f"than the one it deploys. {len(thin)} fold-class pair(s) hold at most one test cell.",
        "",
        "| fold | training cells | test cells | buffer cells | classes with at most 1 test cell |",
        "|---|---|---|---|---|",
        *rows,
        "",
    ]


SMALL_CLASS = 20  # labelled cells under which a class's recall is too uncertain to decide a comparison


def _recall_section(board: Leaderboard, labels: list[str], best: EntryResult | None) -> list[str]:
    """Recall per class with intervals for the best model and the trained models it cannot be told apart
    from: where a lead in balanced accuracy comes from, and whether small classes carry it."""
    if best is None:
        return []
    rivals = [
        e
        for e in board.entries
        if e.kind == best.kind and e is not best and e.vs_best and not e.vs_best[RANKING_METRIC]["distinguishable"]
    ]
    shown = [best, *rivals]
    classes = Evaluator(board.dataset).classes
    recalls = [class_recalls(e, board.datasets or {0: board.dataset}, classes) for e in shown]
    counts = board.dataset.card["class_counts"]
    lines = [
        "### Recall per class (mean over seeds [95% joint block bootstrap])",
        "",
        f"For the best model and the trained models not distinguishable from it. Classes with fewer than "
        f"{SMALL_CLASS} labelled cells are marked *small*: their recall rests on a few test cells, so a "
        "difference there should not decide which model is better.",
        "",
        "| class | labelled cells | test cells per seed | " + " | ".join(e.entry for e in shown) + " |",
        "|---|---|---|" + "---|" * len(shown),
    ]
    for c in labels:
        small = " *small*" if counts.get(c, 0) < SMALL_CLASS else ""
        cells = [f"{num(r[c]['mean'])} [{num(r[c]['low'])}, {num(r[c]['high'])}]" for r in recalls]
        lines.append(
            f"| {c}{small} | {counts.get(c, 0):,} | {recalls[0][c]['test_cells']} | " + " | ".join(cells) + " |"
        )
    return [*lines, ""]


def _per_class_section(board: Leaderboard, labels: list[str], name: str, figures: Path) -> list[str]:
    """Per-class precision / recall / F1 of the best model and the prediction tables, plus confusion figures."""
    evaluator = Evaluator(board.dataset)
    best = best_entry(board.entries)
    shown = [e for e in board.entries if e is best or e.kind == EXISTING or e.kind == "external"]
    lines = _recall_section(board, labels, best)
    lines += ["### Per-class metrics (first seed, all folds pooled)", ""]
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
    lines += [
        "",
        "### Confusion matrices (first seed, all folds pooled)",
        "",
        "Colour: the share of each true class (rows sum to 1), so a small class that is mostly right looks as dark "
        "as a large one; numbers: cells. Drawn for the best model and the prediction tables; every entry's "
        "per-class F1 is in the figure below.",
        "",
    ]
    per_class: dict[str, dict[str, float]] = {}
    drawn = {e.entry for e in shown if e.headline}
    for e in board.entries:
        first = e.predictions.filter(pl.col("seed") == e.seeds[0])
        m = evaluator.eval(
            first["y_true"].to_numpy(), [None if p == "<none>" else p for p in first["y_pred"].to_list()]
        )
        per_class[e.entry] = {c: v["f1"] for c, v in m["per_class"].items()}
        if e.entry not in drawn:
            continue
        png = f"{name}-confusion-{e.entry.replace(':', '_')}.png"
        plot_confusion(
            figures / png, f"{e.entry} ({board.dataset.card['label']['level']})", labels, np.array(m["confusion"])
        )
        lines.append(f"![{e.entry}](figures/{png})")
    bars = f"{name}-per-class-f1.png"
    plot_per_class(figures / bars, per_class, labels)
    return [*lines, "", f"![per-class F1](figures/{bars})", ""]


def _calibration_section(board: Leaderboard, name: str, figures: Path) -> list[str]:
    """ECE per entry with probabilities, and the reliability table and diagram of the best model."""
    rows = [(e, e.per_seed[0]["calibration"]) for e in board.entries if e.per_seed and "calibration" in e.per_seed[0]]
    if not rows:
        return []
    lines = [
        "### Calibration (first seed, pooled): expected calibration error of the top-class probability",
        "",
        "Held out: each calibration (none, temperature scaling, per-class isotonic) is fitted on the "
        "cross-validated predictions of four fifths of the spatial blocks and scored on the rest; the one with "
        "the lowest held-out ECE is what `cellfeatures predict` applies to this model's probabilities.",
        "",
        "| entry | ECE | mean confidence | accuracy | held-out ECE: none / temperature / isotonic | applied |",
        "|---|---|---|---|---|---|",
    ]
    for e, cal in rows:
        held = (e.calibration or {}).get("held_out") or {}
        held_text = " / ".join(num((held.get(m) or {}).get("ece")) for m in ("none", "temperature", "isotonic"))
        applied = (e.calibration or {}).get("method", "–")
        lines.append(
            f"| {e.entry} | {cal['ece']:.3f} | {cal['mean_confidence']:.3f} | {e.per_seed[0]['accuracy']:.3f} | "
            f"{held_text if held else '–'} | {applied} |"
        )
    best = best_entry(board.entries)
    if best is not None and "calibration" in best.per_seed[0]:
        bins = best.per_seed[0]["calibration"]["bins"]
        png = f"{name}-reliability-{best.entry}.png"
        plot_reliability(figures / png, bins, f"{best.entry}: reliability (first seed)")
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
