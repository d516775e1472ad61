"""`cellfeatures run`: the main job (workflows.run_main_job) with a status line, a bar and a summary."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.status import Status

from cellfeatures.cli.app import app
from cellfeatures.cli.common import (
    ConfigOpt,
    JsonOpt,
    SchedulerOpt,
    StoreOpt,
    StrictOpt,
    clean_errors,
    config_of,
    console,
    print_json,
    store_of,
    with_scheduler,
)
from cellfeatures.cli.render import fit_progress, html_of, print_build_summary, print_leaderboard, status_callbacks

if TYPE_CHECKING:
    from cellfeatures.workflows import MainJobResult

RUN_HELP = """The main job: build features, label agreement, datasets, baselines and the report (sample by default).

Examples:

\b
  cellfeatures run                    # the embedded sample, offline, ~45 s on 2 cores
  cellfeatures run --config configs/my_snapshot.toml
  cellfeatures run --json             # the outcome and the seconds per stage as JSON on stdout
"""


@app.command(help=RUN_HELP)
def run(
    config: ConfigOpt = None,
    store: StoreOpt = None,
    strict: StrictOpt = False,
    scheduler: SchedulerOpt = None,
    as_json: JsonOpt = False,
) -> None:
    import contextlib
    import sys

    with clean_errors(), contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
        result = _run(config, store, strict, scheduler)
    if as_json:
        print_json(_outcome(result))


def _run(config: ConfigOpt, store: StoreOpt, strict: bool, scheduler: SchedulerOpt) -> MainJobResult:
    """The job with its terminal output (on stderr under --json: the console follows sys.stdout)."""
    from cellfeatures.workflows import run_main_job

    cfg = with_scheduler(config_of(config), scheduler)
    console.print(f"[bold]cellfeatures run[/] — config {escape(str(cfg.path))}", markup=True)
    status = console.status("building features")
    status.start()
    try:
        say, tick = status_callbacks(status)
        fs, events = store_of(cfg, store), _event_printer(status)
        result = run_main_job(cfg, fs, strict=strict, say=say, tick=tick, events=events, fit_progress=fit_progress)
    finally:
        status.stop()
    _print_outcome(result)
    return result


def _outcome(result: MainJobResult) -> dict[str, Any]:
    return {
        "version": result.version.id,
        "datasets": [{"name": d.card["name"], "id": d.id, "cells": d.card["cells"]} for d in result.datasets],
        "report": str(result.report) if result.report is not None else None,
        "html": str(html_of(result.report)) if result.report is not None else None,
        "seconds": result.seconds,
        "stages": result.stages.seconds,
    }


def _event_printer(status: Status) -> Callable[[str, Any], None]:
    """Prints each result of the main job as it arrives (the spinner stops once the build is done)."""

    def on_event(kind: str, what: Any) -> None:
        if kind == "built":
            status.stop()
            print_build_summary(what)
        elif kind == "labels":
            a, b, raw, typed = what
            console.print(
                f"labels {a} vs {b}: raw spellings agree on {raw.agreement:.1%} of {raw.shared:,} cells; "
                f"after harmonisation {typed.agreement:.1%} of {typed.shared:,} at type level "
                f"(`cellfeatures labels {a} {b}` shows the confusion)"
            )
        elif kind == "dataset":
            card = what.card
            console.print(
                f"dataset {card['name']}: {card['cells']:,} cells, {len(what.features)} features → {what.path}"
            )

    return on_event


def _print_outcome(result: MainJobResult) -> None:
    from cellfeatures.benchmark.leaderboard import Leaderboard

    if result.report is not None:
        print_leaderboard(Leaderboard.load(result.report.parent).frame())
        console.print(f"report (Markdown): {result.report}")
        console.print(f"report (open in a browser): {html_of(result.report)}")
    console.print(f"done in {result.seconds:.1f} s ({escape(result.stages.line())})")
    first = result.datasets[0].card["name"] if result.datasets else "column_types"
    console.print(
        "next: "
        f"`cellfeatures show {result.version.id[:8]}` (every feature and its origin) · "
        f"`cellfeatures export {first} --format parquet` · "
        f"`cellfeatures baseline {first} --model mylab.models:make_model` (your estimator on the same folds) · "
        "examples/quickstart.ipynb (the same in a notebook)"
    )
