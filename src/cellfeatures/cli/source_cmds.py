"""Source commands: fetch (CAVE -> snapshot), sample (the embedded sample), synthetic, doctor."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import polars as pl
import typer
from rich.markup import escape

from cellfeatures.cli.app import app
from cellfeatures.cli.common import ConfigOpt, JsonOpt, clean_errors, config_of, console, err, listed, print_json
from cellfeatures.cli.render import bytes_progress, table, table_progress

ServerOpt = Annotated[str | None, typer.Option(help="CAVE server address (default: the config's)")]
TablesOpt = Annotated[str | None, typer.Option(help="comma-separated tables (default: what the config needs)")]
OutOpt = Annotated[Path | None, typer.Option(help="snapshot directory (default: <cache_dir>/<datastack>/v<N>)")]
VersionOpt = Annotated[int | None, typer.Option(help="materialization version to pin (default: config, else latest)")]

FETCH_HELP = """Fetch a pinned version into a local snapshot: from CAVE (row-cap-safe, retrying, resumable) or,
with [source] kind = "static", from the public static exports (no token; HTTP Range resume; streamed to Parquet).

Examples:

\b
  CAVE_TOKEN=... cellfeatures fetch --config configs/minnie65_public.toml --tables nucleus_detection_v0
  cellfeatures fetch --config configs/minnie65_static.toml
"""


@app.command(help=FETCH_HELP)
def fetch(
    config: ConfigOpt = None,
    version: VersionOpt = None,
    server: ServerOpt = None,
    out: OutOpt = None,
    tables: TablesOpt = None,
) -> None:
    from cellfeatures.sources.cave.snapshotter import fetch_tables

    with clean_errors():
        cfg = config_of(config)
        wanted = listed(tables) or cfg.tables_needed()
        if cfg.source.get("kind") == "static":  # --server names the exports' base URL
            _fetch_static(cfg if server is None else cfg.with_value("source.base_url", server), wanted, version, out)
            return
        with table_progress() as progress:
            nucleus = cfg.identity["nucleus_table"]
            path, reports, fetcher = fetch_tables(
                cfg.source, wanted, version=version, server=server, out=out, nucleus_table=nucleus, progress=progress
            )
        _print_fetch(path, reports, fetcher)


def _fetch_static(cfg: Any, wanted: list[str], version: int | None, out: Path | None) -> None:
    from cellfeatures.sources.static.fetch import fetch_static

    with bytes_progress() as progress:
        path, reports, settings = fetch_static(
            cfg.source, wanted, version=version, out=out, progress=progress, **cfg.table_roles()
        )
    for r in reports:
        if r.missing:
            console.print(f"{r.table}: not exported by this version (an optional label table): skipped")
            continue
        if r.skipped:
            console.print(f"{r.table}: {r.rows:,} rows, already converted")
            continue
        kept = f" (kept {r.rows:,} of {r.rows_read:,})" if r.rows != r.rows_read else ""
        rate = r.rows_read / r.seconds if r.seconds else 0.0
        console.print(
            f"{r.table}: {r.rows:,} rows{kept} in {r.parts} part(s); {r.input_bytes / 1e6:,.1f} MB of gzip "
            f"({r.downloaded_bytes / 1e6:,.1f} MB downloaded now), converted in {r.seconds:.1f} s ({rate:,.0f} rows/s)"
        )
    console.print(
        f"static exports of {settings.datastack} v{settings.version} in {path!s} — build with "
        f"`cellfeatures build --config {cfg.path or 'CONFIG'!s}`"
    )


def _print_fetch(path: Path, reports: list[Any], fetcher: Any) -> None:
    for r in reports:
        console.print(
            f"{r.table}: {r.rows:,} rows, {r.chunks_downloaded} of {r.chunks} chunks downloaded in {r.seconds:.1f} s"
        )
    if fetcher.learned_row_cap is not None:
        console.print(
            f"the server caps queries at {fetcher.learned_row_cap:,} rows (the config's row_limit "
            f"{fetcher.configured_row_limit:,} is an upper bound): learned from its Warning header and used "
            f"for every later chunk; set row_limit = {fetcher.learned_row_cap} in [source] to plan with it at once"
        )
    console.print(
        f"snapshot of {fetcher.datastack} v{fetcher.version} ({fetcher.timestamp:%Y-%m-%d %H:%M:%S} UTC) "
        f'in {path} — build from it with [source] kind = "snapshot", path = "{path}"'
    )


SAMPLE_HELP = """The embedded sample's tables, with origin (real / derived / synthetic) and rows.

Examples:

\b
  cellfeatures sample --json
"""


@app.command(help=SAMPLE_HELP)
def sample(as_json: JsonOpt = False) -> None:
    from cellfeatures.sources.sample import SampleSource

    src = SampleSource(progress=lambda msg: err.print(msg))
    infos = [src.info(name) for name in src.tables()]
    if as_json:
        tables = [
            {
                "table": i.name,
                "origin": i.origin,
                "kind": i.kind,
                "rows": i.rows,
                "source": i.source,
                "parts": [{"origin": p.origin, "rows": p.rows} for p in i.parts],
            }
            for i in infos
        ]
        print_json({"committed": str(src.committed_dir), "generated": str(src.synthetic_dir), "tables": tables})
        return
    out = table(("table", "origin", "kind", "rows", "source"), "embedded sample")
    for i in infos:
        mixed = len({p.origin for p in i.parts}) > 1
        origin = " + ".join(f"{p.origin} {p.rows:,}" for p in i.parts) if mixed else i.origin
        out.add_row(i.name, origin, i.kind, f"{i.rows:,}", i.source[:70])
    console.print(out)
    console.print(f"committed: {src.committed_dir}\ngenerated: {src.synthetic_dir}")


SYNTHETIC_HELP = """Write a synthetic snapshot of any size (partitioned synapses, bounded memory).

Examples:

\b
  cellfeatures synthetic --out /scratch/synth --cells 20000 --synapses 100000000
"""


@app.command(help=SYNTHETIC_HELP)
def synthetic(
    out: Annotated[Path, typer.Option(help="snapshot directory to write")],
    cells: Annotated[int, typer.Option(help="number of nuclei")] = 2_000,
    synapses: Annotated[int, typer.Option(help="number of synapses")] = 200_000,
    seed: int = 0,
    chunk_rows: int = 2_000_000,
) -> None:
    from cellfeatures.sources.synthetic.cells import SyntheticSpec
    from cellfeatures.sources.synthetic.snapshot import write_synthetic_snapshot

    t0 = time.perf_counter()
    with clean_errors():
        spec = SyntheticSpec(n_cells=cells, n_synapses=synapses, seed=seed, chunk_rows=chunk_rows)
        path = write_synthetic_snapshot(spec, out)
        rows = pl.scan_parquet(path / "synapses_pni_2" / "*.parquet").select(pl.len()).collect().item()
    console.print(f"wrote {path} ({rows:,} synapses) in {time.perf_counter() - t0:.1f} s")


DOCTOR_HELP = """What this installation sees: versions, config, store / datasets / cache folders and write access,
CAVE token present or not (never shown), server reachable or not. Exit 1 only on a real problem.

Examples:

\b
  cellfeatures doctor
  cellfeatures doctor --config configs/minnie65_public.toml --json
"""
DoctorServerOpt = Annotated[
    str | None, typer.Option(help="CAVE server to try (default: the config's, else the public one)")
]


@app.command(help=DOCTOR_HELP)
def doctor(config: ConfigOpt = None, server: DoctorServerOpt = None, as_json: JsonOpt = False) -> None:
    from cellfeatures.doctor import as_json as checks_json
    from cellfeatures.doctor import run_checks

    checks = run_checks(config, server)
    if as_json:
        print_json(checks_json(checks))
    else:
        marks = {"ok": "[green]ok     [/]", "note": "[yellow]note   [/]", "problem": "[bold red]problem[/]"}
        for c in checks:
            console.print(f"{marks[c.state]} {escape(c.name)}: {escape(c.detail)}", markup=True)
    if any(c.state == "problem" for c in checks):
        raise typer.Exit(code=1)
