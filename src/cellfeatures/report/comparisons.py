"""Report sections that compare on matched cells: prediction tables against every model on the cells each
table covers and at equal coverage, the accuracy–coverage curves, and the locked slab with intervals.
Renders saved results (benchmark/selective.py, entries.locked_intervals); computes nothing new."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cellfeatures.benchmark.entries import MIN_LOCKED_CLASS_CELLS, EntryResult
from cellfeatures.benchmark.selective import TABLE_KINDS
from cellfeatures.display import num, paired
from cellfeatures.report.figures import plot_selective


def _pair_cells(d: dict[str, Any]) -> str:
    return f"{num(d['a'])} | {num(d['b'])} | {paired(d)}"


def _rows(table: EntryResult, key: str) -> list[dict[str, Any]]:
    return list((table.covered or {}).get(key) or [])


def _table_rows(tables: list[EntryResult], key: str) -> list[str]:
    """One Markdown row per (table, model) of the comparisons stored under `key`."""
    return [
        f"| {t.entry} | {t.coverage:.1%} of test cells ({r.get('cells', (t.covered or {}).get('n', 0)):,}) | "
        f"{r['model']} | {_pair_cells(r['balanced_accuracy'])} | {_pair_cells(r['accuracy'])} |"
        for t in tables
        for r in _rows(t, key)
    ]


def covered_section(entries: list[EntryResult]) -> list[str]:
    """Every prediction table against every trained headline model on the cells the table labels, both
    metrics, paired; then the same with our models abstaining on as many cells as the table."""
    tables = [e for e in entries if e.kind in TABLE_KINDS and _rows(e, "models")]
    if not tables:
        return []
    head = (
        "| table | coverage | model | balanced accuracy: table | model | model − table [95%, paired] | "
        "accuracy: table | model | model − table [95%, paired] |"
    )
    rule = "|---|---|---|---|---|---|---|---|---|"
    lines = [
        "### Prediction tables against every model, on the cells each table labels",
        "",
        "A table that leaves cells unlabelled is scored on exactly the cells it labels, and so is every trained "
        "model, on both metrics (mean over seeds; the interval: the joint block bootstrap with the same draws "
        "for both sides). The table's cells may be its easiest: a table abstaining where types are hard to "
        "tell apart drops the hardest distinctions from its own score. A model table may also have been "
        "trained on some of these labelled cells, which would make its numbers optimistic.",
        "",
        head,
        rule,
    ]
    lines += _table_rows(tables, "models")
    mcnemar = [t for t in tables if (t.covered or {}).get("p_value") is not None]
    if mcnemar:
        lines += [
            "",
            "Exact McNemar test against the best model on the same cells (first seed, discordant cells): "
            + "; ".join(
                f"{t.entry}: {t.covered['table_only_right']} cells right only for the table, "  # type: ignore[index]
                f"{t.covered['model_only_right']} only for {t.covered['vs']}, p = {num(t.covered['p_value'], 4)}"  # type: ignore[index]
                for t in mcnemar
            )
            + ".",
        ]
    equal = [t for t in tables if _rows(t, "at_equal_coverage")]
    if equal:
        lines += [
            "",
            "### At equal coverage: each model abstains on as many cells as the table",
            "",
            "The model keeps its most confident cells (highest top-class probability) up to the table's coverage, "
            "per seed, and is scored on those; the table on the cells it labels. Same metrics and intervals as "
            "above: this asks whether the model, allowed to abstain as much, is better or worse than the table.",
            "",
            head,
            rule,
        ]
        lines += _table_rows(equal, "at_equal_coverage")
    return [*lines, ""]


def curve_section(entries: list[EntryResult], name: str, figures: Path) -> list[str]:
    """The accuracy–coverage curve of every trained model with probabilities, the tables as points."""
    curves = {e.entry: e.selective for e in entries if e.selective and e.headline}
    if not curves:
        return []
    points = {
        e.entry: (float(e.coverage), float(e.covered["accuracy"]))
        for e in entries
        if e.kind in TABLE_KINDS and e.coverage and e.covered and e.covered.get("accuracy") is not None
    }
    png = f"{name}-accuracy-coverage.png"
    plot_selective(figures / png, curves, points)
    coverages = [r["coverage"] for r in next(iter(curves.values()))]
    lines = [
        "### Accuracy–coverage curves (mean over seeds)",
        "",
        "Each model keeps its most confident share of the test cells (by top-class probability) and is scored on "
        "them; a prediction table is one point (its coverage, its accuracy on the cells it labels).",
        "",
        "| coverage | " + " | ".join(curves) + " |",
        "|---|" + "---|" * len(curves),
    ]
    for i, c in enumerate(coverages):
        lines.append(
            f"| {c:.0%} | "
            + " | ".join(
                f"{num(rows[i]['accuracy'])} / {num(rows[i]['balanced_accuracy'])}" for rows in curves.values()
            )
            + " |"
        )
    return [
        *lines,
        "",
        "Cells: accuracy / balanced accuracy of the kept cells.",
        "",
        f"![accuracy-coverage](figures/{png})",
        "",
    ]


def locked_section(entries: list[EntryResult]) -> list[str]:
    """Locked-slab scores with cell-bootstrap intervals, and the classes too thin on the slab to score."""
    shown = [e for e in entries if e.locked]
    if not shown:
        return []
    first = shown[0].locked or {}
    sparse = first.get("sparse_classes") or {}
    sparse_text = ", ".join(f"{c} ({n})" for c, n in sparse.items())
    lines = [
        "### Locked test set (never used for model selection)",
        "",
        f"{first['n']:,} cells in the high-x slab of the column (following its slant, so every layer); models "
        "refit on every cell outside the slab and its buffer band, scored once. Intervals: 1,000 bootstrap "
        "replicates of the slab's cells (one region: too few blocks to resample). "
        "`locked_predictions.parquet` holds every prediction, so each number here can be recomputed.",
        "",
    ]
    if sparse:
        lines += [
            f"Classes with fewer than {MIN_LOCKED_CLASS_CELLS} cells on the slab: {sparse_text}. Their recall is one "
            "or two cells right or wrong, so the last column leaves them out; read the slab as a check of the "
            "cross-validated ranking at the level of the other classes, not as a second headline.",
            "",
        ]
    header = "| entry | balanced accuracy [95%] | accuracy [95%] |" + (
        " balanced accuracy without the sparse classes |" if sparse else ""
    )
    lines += [header, "|---|---|---|" + ("---|" if sparse else "")]
    for e in shown:
        lk = e.locked or {}
        ci = lk.get("intervals") or {}

        def cell(metric: str, lk: dict[str, Any] = lk, ci: dict[str, Any] = ci) -> str:
            low, high = ci.get(metric, (None, None))
            return f"{num(lk.get(metric))} [{num(low)}, {num(high)}]" if low is not None else num(lk.get(metric))

        row = f"| {e.entry} | {cell('balanced_accuracy')} | {cell('accuracy')} |"
        if sparse:
            row += f" {num(lk.get('balanced_accuracy_without_sparse'))} |"
        lines.append(row)
    return [*lines, ""]


def gain_section(entries: list[EntryResult]) -> list[str]:
    """The paired gain of each ablated feature group: the full model minus the model without the group."""
    ablated = [e for e in entries if e.gain]
    if not ablated:
        return []
    lines = [
        "### What a feature group adds (the full model minus the model refitted without it)",
        "",
        "Same folds, seeds and cells; the interval is the paired joint block bootstrap. On all test cells, and on "
        "the test cells that have the group's features (elsewhere the group is missing and imputed, so it can "
        "only help where it is present).",
        "",
        "| features left out | model | test cells with them | balanced accuracy gain, all cells | accuracy gain, "
        "all cells | balanced accuracy gain, cells with them | accuracy gain, cells with them |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in ablated:
        g = e.gain or {}
        everywhere, present = g.get("all_cells") or {}, g.get("cells_with_features") or {}
        lines.append(
            f"| {', '.join(g['features'])} | {g['model']} | {g['test_cells_with_features']:,} of {g['test_cells']:,} | "
            f"{paired(everywhere.get('balanced_accuracy'))} | {paired(everywhere.get('accuracy'))} | "
            f"{paired(present.get('balanced_accuracy'))} | {paired(present.get('accuracy'))} |"
        )
    return [*lines, ""]
