"""What the commands print: tables, progress bars and summaries (rich), built from library objects.

Must not: compute results (it formats what the library returned) or print unescaped data with markup.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
from rich.console import Console
from rich.markup import escape
from rich.status import Status
from rich.table import Table

from cellfeatures.cli.common import console
from cellfeatures.display import interval

if TYPE_CHECKING:
    from cellfeatures.config.model import Config
    from cellfeatures.store.store import FeatureStore
    from cellfeatures.store.version import FeatureVersion

KEY_COLUMNS = {"feature", "table", "version", "family"}


def table(columns: list[str] | tuple[str, ...], title: str | None = None) -> Table:
    """A table whose cells fold instead of being cut with '…': names must stay copy-pasteable."""
    out = Table(title=title, title_justify="left")
    for col in columns:
        if col in KEY_COLUMNS:  # identifiers are never wrapped: other columns give way
            out.add_column(col, no_wrap=True, min_width=12)
        else:
            out.add_column(col, overflow="fold")
    return out


def rows_table(columns: list[str] | tuple[str, ...], rows: list[Any], title: str | None = None) -> Table:
    out = table(columns, title)
    for row in rows:
        out.add_row(*[str(v) for v in row])
    return out


def fmt(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def step(msg: str) -> None:
    console.print(f"  [dim]·[/] {escape(msg)}", markup=True)


def status_callbacks(status: Status) -> tuple[Callable[[str], None], Callable[[str, int, int], None]]:
    """(progress, tick) for a build: each step on the status line and as a line; long steps as a counter."""

    def progress(msg: str) -> None:
        status.update(msg)
        step(msg)

    def tick(what: str, done: int, total: int) -> None:  # a counter on the status line, a line when done
        status.update(f"{what}: {done:,} / {total:,} tasks")
        if done == total:
            step(f"{what}: {total:,} / {total:,} done")

    return progress, tick


def build_version(fs: FeatureStore, config: Config, strict: bool = False) -> FeatureVersion:
    """store.build with a status line and one line per step (and a counter for long steps)."""
    with console.status("building features") as status:
        progress, tick = status_callbacks(status)
        return fs.build(config, progress=progress, strict=strict, tick=tick)


def summary_table(manifest: dict[str, Any]) -> Table:
    out = table(("family", "features", "origin", "inputs", "seconds"), f"feature version {manifest['version']}")
    for family, info in manifest["families"].items():
        names = [n for n, f in manifest["features"].items() if f["family"] == family]
        origins = sorted({manifest["features"][n]["origin"] for n in names})
        out.add_row(family, str(len(names)), "/".join(origins), ", ".join(info["inputs"]), f"{info['seconds']:.2f}")
    return out


def print_manifest(m: dict[str, Any]) -> None:
    """`show`: families, inputs with origins, and every feature with its stats."""
    console.print(summary_table(m))
    inputs = table(("table", "origin", "rows", "parts"), "inputs")
    for name, info in m["inputs"].items():
        parts = info["parts"]
        joined = ", ".join(f"{p['name']} ({p['origin']}, {p['rows']:,})" for p in parts) if len(parts) > 1 else ""
        inputs.add_row(name, info["origin"], f"{info['rows']:,}", joined)
    console.print(inputs)
    feats = table(("feature", "family", "unit", "origin", "null %", "min", "max"), "features")
    for name, f in m["features"].items():
        null = f"{100 * f['null_rate']:.1f}"
        feats.add_row(name, f["family"], f["unit"], f["origin"], null, fmt(f.get("min")), fmt(f.get("max")))
    console.print(feats)


def synapse_coverage_line(c: dict[str, Any]) -> str:
    """'synapse features: X of N cells (...); none for ...' — why a cell has no synapse features."""
    why = [
        f"{c['multi_soma']:,} multi-soma (synapses cannot be attributed to one nucleus)",
        f"{c['root_0']:,} root 0 (nucleus outside the segmentation)",
    ]
    if c.get("cells_from"):
        why.append(
            f"{c['outside_fetched_cells']:,} outside the fetched cells (synapses kept for {c['cells_from']} only)"
        )
    return (
        f"synapse features: {c['with_synapse_features']:,} of {c['cells']:,} cells "
        f"({c['no_synapses']:,} of them with no synapse in the table: measured 0); none for " + ", ".join(why)
    )


def print_build_summary(version: FeatureVersion) -> None:
    """`run`: what was built, how many cells are attributable, how many features are real."""
    m = version.manifest
    console.print(summary_table(m))
    ident = m["identity"]
    console.print(
        f"cells {m['rows']:,} · attributable {ident['attributable']:,} · multi-soma {ident['multi_soma']:,} · "
        f"no root {ident['missing_root']:,}"
    )
    if m.get("synapse_coverage"):
        console.print(synapse_coverage_line(m["synapse_coverage"]))
    real = [n for n, f in m["features"].items() if f["origin"] == "real"]
    console.print(
        f"real-data features: {len(real)} of {len(m['features'])} "
        f"(the others are derived or synthetic; see `cellfeatures show {version.id[:8]}`)"
    )
    console.print(f"{'built' if version.created else 'already built (no-op)'}: {version.path}")


def print_diff(d: Any) -> None:
    console.print(f"[bold]{escape(d.a)}[/] → [bold]{escape(d.b)}[/]", markup=True)
    console.print(f"cells: +{d.cells_added} −{d.cells_removed}, re-rooted {d.cells_rerooted}")
    console.print(f"features: +{d.features_added or '[]'} −{d.features_removed or '[]'}")
    for c in d.config_changes:
        console.print(f"config {c['key']}: {c['a']!r} → {c['b']!r}")
    if d.tables_changed:
        console.print(f"input tables changed: {', '.join(d.tables_changed)}")
    changed = d.changed_features
    console.print(f"features with changed values: {len(changed)} of {len(d.drift)}")
    for entry in changed:
        extra = f", max |Δ| {entry['max_abs_change']:.4g}" if entry.get("max_abs_change") is not None else ""
        console.print(f"  {entry['feature']}: {entry['changed']:,} cells{extra}")


@contextmanager
def fit_progress(on: Console | None = None) -> Iterator[Callable[[int, int, str], None]]:
    """A bar for the baseline stage: fits done / total and the fit that just finished (on stdout or stderr)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("baselines", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[last]}", markup=False),
        console=on or console,
        transient=False,
    ) as bars:
        task = bars.add_task("fits", total=None, last="")

        def update(done: int, total: int, last: str) -> None:
            bars.update(task, completed=done, total=total, last=last)

        yield update


@contextmanager
def table_progress() -> Iterator[Callable[[str, int, int], None]]:
    """One bar per table being fetched: chunks done / total."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as bars:
        tasks: dict[str, Any] = {}

        def progress(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = bars.add_task(name, total=total)
            bars.update(tasks[name], completed=done, total=total)

        yield progress


@contextmanager
def bytes_progress() -> Iterator[Callable[[str, int, int | None], None]]:
    """One bar per file being downloaded or converted: bytes, rate and time left."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bars:
        tasks: dict[str, Any] = {}

        def progress(name: str, done: int, total: int | None) -> None:
            if name not in tasks:
                tasks[name] = bars.add_task(name, total=total)
            bars.update(tasks[name], completed=done, total=total)

        yield progress


def print_leaderboard(board: pl.DataFrame) -> None:
    out = table(
        ["dataset", "entry", "kind", "features", "balanced acc. [95% CI]", "accuracy [95% CI]", "macro-F1", "coverage"],
        "leaderboard (mean over seeds, bootstrap interval over spatial blocks; ranked by balanced accuracy)",
    )
    for r in board.iter_rows(named=True):
        flag = "" if r["headline"] else " [not headline]"
        coverage = f"{r['coverage']:.0%}" if r["coverage"] is not None else ""
        out.add_row(
            f"{r['dataset']} ({r['level']})",
            r["entry"] + flag,
            r["kind"],
            r["feature_origins"],
            *(interval(r, m, missing="-") for m in ("balanced_accuracy", "accuracy", "macro_f1")),
            coverage,
        )
    console.print(out)


def html_of(report_md: Path) -> Path:
    """The report's REPORT.html, written now if an older report lacks it."""
    from cellfeatures.report.html import write_html_report

    html = report_md.parent / "REPORT.html"
    return html if html.exists() else write_html_report(report_md.parent)
