"""Benchmark commands: baseline (leaderboard + report), report (HTML), score (anyone's file), predict."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import polars as pl
import typer
from rich.markup import escape

from cellfeatures.cli.app import app
from cellfeatures.cli.common import (
    ConfigOpt,
    DatasetArg,
    JsonOpt,
    StoreOpt,
    clean_errors,
    config_of,
    console,
    err,
    int_list,
    print_json,
    store_of,
)
from cellfeatures.cli.render import fit_progress, html_of, print_leaderboard

SeedsOpt = Annotated[str, typer.Option(help="comma-separated seeds (each re-draws the split)")]
ModelsOpt = Annotated[str | None, typer.Option(help="comma-separated models (default: all)")]
CustomOpt = Annotated[
    list[str] | None,
    typer.Option("--model", help="your own estimator: module:callable returning a scikit-learn estimator"),
]

BASELINE_HELP = """Floors, trained baselines and every existing model table, scored alike; writes leaderboard + report.

Examples:

\b
  cellfeatures baseline column_types --seeds 0,1 --model mylab.models:make_knn
"""


@app.command(help=BASELINE_HELP)
def baseline(
    name: DatasetArg = "column_types",
    config: ConfigOpt = None,
    store: StoreOpt = None,
    seeds: SeedsOpt = "0,1,2",
    models: ModelsOpt = None,
    model: CustomOpt = None,
    as_json: JsonOpt = False,
) -> None:
    from cellfeatures.benchmark.models import load_estimator
    from cellfeatures.datasets.dataset import find_dataset
    from cellfeatures.workflows import baseline_report

    with clean_errors():
        cfg = config_of(config)
        ds = find_dataset(name, cfg.datasets_root)
        chosen = tuple(m.strip() for m in models.split(",")) if models else None
        custom = dict(load_estimator(spec) for spec in model or []) or None
        err.print(
            f"dataset {ds.card['name']}/{ds.id} ({ds.card['cells']:,} cells, version {ds.card['feature_version']})"
        )
        with fit_progress(err if as_json else console) as progress:
            fs, chosen_seeds = store_of(cfg, store), int_list(seeds, "--seeds")
            report, created = baseline_report(
                fs, ds, seeds=chosen_seeds, models=chosen, custom=custom, root=cfg.datasets_root, progress=progress
            )
        _print_baseline(report, created, as_json)


def _print_baseline(report: Path, created: bool, as_json: bool) -> None:
    from cellfeatures.benchmark.leaderboard import Leaderboard

    html, frame = html_of(report), Leaderboard.load(report.parent).frame()
    if as_json:
        print_json({"report": str(report), "html": str(html), "created": created, "leaderboard": frame.to_dicts()})
        return
    print_leaderboard(frame)
    console.print(f"report: {report}" + ("" if created else " (already computed)"))
    console.print(f"report (open in a browser): {html}")


REPORT_HELP = """Write (or rewrite) the self-contained HTML report of the newest baseline report covering a dataset.

One file, everything embedded (figures, styles; no network): dataset card, leaderboard with intervals,
confusion matrices, per-class metrics, calibration, feature distributions, depth profiles, feature origins.

Examples:

\b
  cellfeatures report column_types    # then open the printed REPORT.html in a browser
"""
ReportArg = Annotated[str, typer.Argument(help="dataset name, <name>/<id>, id prefix, path, or a report folder")]


@app.command(help=REPORT_HELP)
def report(name: ReportArg = "column_types", config: ConfigOpt = None) -> None:
    from cellfeatures.benchmark.leaderboard import Leaderboard
    from cellfeatures.report.html import write_html_report

    with clean_errors():
        cfg = config_of(config)
        with console.status("writing the HTML report"):
            board = Leaderboard.load(name, cfg.datasets_root)
            path = write_html_report(board.path or Path(name))
    console.print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, self-contained: open it in any browser)")


SCORE_HELP = """Score anyone's prediction table on the dataset's test cells; add it to the latest report.

Examples:

\b
  cellfeatures score my_predictions.parquet --dataset column_types --name my-model
"""
PredictionsArg = Annotated[
    Path, typer.Argument(help="Parquet/CSV file: nucleus_id (or target_id, or pt_root_id) + cell_type")
]
DatasetOpt = Annotated[str, typer.Option("--dataset", help="dataset name, <name>/<id>, id prefix or path")]
EntryOpt = Annotated[str | None, typer.Option(help="entry name on the leaderboard (default: the file's stem)")]
MatVersionOpt = Annotated[
    int | None, typer.Option(help="for a root-keyed file: the materialization version its root ids belong to")
]


@app.command(help=SCORE_HELP)
def score(
    predictions: PredictionsArg,
    dataset_name: DatasetOpt = "column_types",
    name: EntryOpt = None,
    materialization_version: MatVersionOpt = None,
    config: ConfigOpt = None,
    store: StoreOpt = None,
) -> None:
    from cellfeatures._util.names import check_name
    from cellfeatures.datasets.dataset import find_dataset
    from cellfeatures.workflows import score_predictions

    with clean_errors():
        cfg = config_of(config)
        ds = find_dataset(dataset_name, cfg.datasets_root)
        entry = check_name(name or predictions.stem, "entry name")
        result = score_predictions(
            store_of(cfg, store),
            ds,
            predictions,
            entry,
            materialization_version=materialization_version,
            datasets_root=cfg.datasets_root,
        )
    _print_score(entry, result.row, result.report)


def _print_score(entry: str, row: dict[str, Any], report: Path | None) -> None:
    console.print(
        f"{entry}: coverage {row['coverage']:.1%}; all test cells: accuracy {row['accuracy_mean']:.3f} "
        f"[{row['accuracy_ci_low']:.3f}, {row['accuracy_ci_high']:.3f}], balanced accuracy "
        f"{row['balanced_accuracy_mean']:.3f} [{row['balanced_accuracy_ci_low']:.3f}, "
        f"{row['balanced_accuracy_ci_high']:.3f}]; file SHA-256 {row['file_sha256'][:16]}"
    )
    if row.get("covered_accuracy") is not None:
        paired = (
            f"; {row['paired_vs']} on the same cells {row['paired_model_accuracy']:.3f} "
            f"(McNemar p {row['paired_p_value']:.4f})"
            if row.get("paired_vs")
            else ""
        )
        console.print(f"on the {row['covered_n']:,} cells it covers: accuracy {row['covered_accuracy']:.3f}{paired}")
    if report:
        folder = report.parent  # the report's REPORT.md
        console.print(f"added to {escape(str(folder))}: REPORT.md and REPORT.html there now list it")
    else:
        console.print("no baseline report yet: run `cellfeatures baseline` to compare")


def prediction_summary(table: pl.DataFrame, path: Path) -> str:
    """One line: how many cells were predicted and how many of them extrapolate (shift measures)."""
    unlabelled = table.filter(~pl.col("labelled"))
    return (
        f"{table.height:,} cells predicted ({int(table['labelled'].sum()):,} were training cells; of the others "
        f"{int(unlabelled['outside_labelled_region'].sum()):,} outside the labelled region, "
        f"{int(unlabelled['feature_shift'].sum()):,} shifted in feature space, "
        f"{int(unlabelled['out_of_range'].sum()):,} outside a feature's training range) → {escape(str(path))}"
    )


FALLBACK_MODEL = "hist_gradient_boosting"  # when no report names a best model yet
PREDICT_HELP = (
    "Fit on all labelled cells, predict every cell passing the dataset's filters; a CAVE-style table + card.\n"
    """
Examples:

\b
  cellfeatures predict column_types --model logistic_regression
"""
)
ModelOpt = Annotated[
    str | None,
    typer.Option(help="a baseline model name, or module:callable (default: the report's best model)"),
]


@app.command(help=PREDICT_HELP)
def predict(
    dataset_name: DatasetArg = "column_types",
    model: ModelOpt = None,
    config: ConfigOpt = None,
    store: StoreOpt = None,
) -> None:
    from cellfeatures.benchmark.models import load_estimator
    from cellfeatures.benchmark.predict import best_model_name, write_predictions
    from cellfeatures.datasets.dataset import find_dataset
    from cellfeatures.datasets.layout import latest_report

    with clean_errors():
        cfg = config_of(config)
        ds = find_dataset(dataset_name, cfg.datasets_root)
        report = latest_report(ds, cfg.datasets_root)
        if model is None:
            best = best_model_name(report, ds)
            model = best or FALLBACK_MODEL
            why = "the report's best model" if best else "no baseline report names a best model yet"
            console.print(f"model: {escape(model)} ({why}; choose another with --model)")
        name, estimator = load_estimator(model) if ":" in model else (model, model)
        with console.status(f"fitting {name} on {ds.card['cells']:,} cells and predicting every cell"):
            path = write_predictions(store_of(cfg, store), ds, estimator, name, report)
    console.print(prediction_summary(pl.read_parquet(path), path))
    console.print(f"model card: {path.parent / 'MODEL_CARD.md'}; compare: cellfeatures labels early_model {path}")
