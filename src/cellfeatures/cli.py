"""Command line: thin commands over the library. `cellfeatures --help` lists them."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import polars as pl
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cellfeatures.config import Config, default_config, load_config
from cellfeatures.errors import CellFeaturesError, ConfigError, os_error_code

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,  # help texts name [store] and [dataset.<name>] sections: no markup may eat them
    help="Versioned per-cell feature matrices for CAVE connectome datastacks (MICrONS minnie65). "
    "Start with `cellfeatures run` (the embedded sample, offline), then `cellfeatures doctor` if anything fails.",
)


def _show_version(value: bool) -> None:
    if value:
        from cellfeatures import PIPELINE_CODE_VERSION, __version__

        print(f"cellfeatures {__version__} (pipeline code {PIPELINE_CODE_VERSION})")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_show_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    """Versioned per-cell feature matrices for CAVE connectome datastacks (MICrONS minnie65)."""


def _console(stderr: bool = False) -> Console:
    """Terminal width on a TTY; wide lines when piped or written to a file (names stay whole).

    Markup is off by default: table names, paths, messages and data are printed as they are (a
    `[source]` in a message must not vanish, a stray `[/` must not crash). The few lines that style
    text pass `markup=True` and put every interpolated value through `escape`.
    """
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, highlight=False, markup=False, width=None if stream.isatty() else 200)


console = _console()
err = _console(stderr=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML config (default: configs/sample.toml)")]
StoreOpt = Annotated[
    Path | None, typer.Option("--store", help="feature-store root (default: the config's [store] root)")
]


KEY_COLUMNS = {"feature", "table", "version", "family"}


def _table(columns: list[str] | tuple[str, ...], title: str | None = None) -> Table:
    """A table whose cells fold instead of being cut with '…': names must stay copy-pasteable."""
    table = Table(title=title, title_justify="left")
    for col in columns:
        if col in KEY_COLUMNS:  # identifiers are never wrapped: other columns give way
            table.add_column(col, no_wrap=True, min_width=12)
        else:
            table.add_column(col, overflow="fold")
    return table


def _config(path: Path | None) -> Config:
    return load_config(path) if path else default_config()


def _store(config: Config | None, store: Path | None) -> Any:
    """--store when given, else the store the config (or the project's default config) names."""
    from cellfeatures.store import FeatureStore

    return FeatureStore(store) if store else FeatureStore(config=config or default_config())


JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON on stdout (progress goes to stderr)")]


def _print_json(obj: Any) -> None:
    """Machine-readable output: plain JSON on stdout, no colours, no wrapping."""
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


# What a command turns into "error: ..." and exit code 2 instead of a traceback: our own errors, the
# operating system's (permissions, a full disk, a missing file) and data the engine could not read.
CLI_ERRORS = (CellFeaturesError, OSError, pl.exceptions.PolarsError, ValueError)


def describe_error(exc: BaseException) -> str:
    """One clear message: what failed and on which file, without a traceback."""
    import errno

    if isinstance(exc, CellFeaturesError):
        return str(exc)
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        code = os_error_code(exc)
        if code == errno.EROFS:
            return f"read-only file system{where}: write the store, datasets or output somewhere writable"
        if code == errno.ENOSPC:
            return f"no space left on the device{where}; nothing half-written was published: free space and rerun"
        if isinstance(exc, PermissionError) or code == errno.EACCES:
            return f"permission denied{where}: the store, dataset or output directory is not writable by you"
        return f"{exc.strerror or exc}{where}"
    if isinstance(exc, pl.exceptions.PolarsError):
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"the data could not be processed ({type(exc).__name__}: {first})"
    return f"{type(exc).__name__}: {exc}"


def _fail(exc: BaseException) -> None:
    err.print(f"[bold red]error:[/] {escape(describe_error(exc))}", markup=True)
    raise typer.Exit(code=2)


StrictOpt = Annotated[
    bool, typer.Option("--strict", help="fail when the source lacks a table the config names (default: skip it)")
]


SchedulerOpt = Annotated[
    str | None,
    typer.Option("--scheduler", help="run the big synapse plan on this Dask scheduler (tcp://host:8786)"),
]


def _with_scheduler(config: Config, address: str | None) -> Config:
    if not address:
        return config
    return config.with_value("execution.engine", "dask").with_value("execution.address", address)


def _build(config: Config, store: Path | None, strict: bool = False) -> Any:
    from cellfeatures.store import FeatureStore

    fs: FeatureStore = _store(config, store)
    with console.status("building features") as status:

        def progress(msg: str) -> None:
            status.update(msg)
            console.print(f"  [dim]·[/] {escape(msg)}", markup=True)

        def tick(what: str, done: int, total: int) -> None:  # a counter on the status line, a line when done
            status.update(f"{what}: {done:,} / {total:,} tasks")
            if done == total:
                console.print(f"  [dim]·[/] {escape(what)}: {total:,} / {total:,} done", markup=True)

        return fs, fs.build(config, progress=progress, strict=strict, tick=tick)


def _summary_table(manifest: dict[str, Any]) -> Table:
    table = _table(("family", "features", "origin", "inputs", "seconds"), f"feature version {manifest['version']}")
    for family, info in manifest["families"].items():
        names = [n for n, f in manifest["features"].items() if f["family"] == family]
        origins = sorted({manifest["features"][n]["origin"] for n in names})
        table.add_row(family, str(len(names)), "/".join(origins), ", ".join(info["inputs"]), f"{info['seconds']:.2f}")
    return table


def _html_of(report_md: Path) -> Path:
    """The report's REPORT.html, written now if an older report lacks it."""
    from cellfeatures.html_report import write_html_report

    html = report_md.parent / "REPORT.html"
    return html if html.exists() else write_html_report(report_md.parent)


@app.command()
def run(
    config: ConfigOpt = None, store: StoreOpt = None, strict: StrictOpt = False, scheduler: SchedulerOpt = None
) -> None:
    """The main job: build features, label agreement, datasets, baselines and the report (sample by default).

    Examples:

    \b
      cellfeatures run                    # the embedded sample, offline, ~3 minutes on 2 cores
      cellfeatures run --config configs/my_snapshot.toml
    """
    from cellfeatures.datasets import build_dataset
    from cellfeatures.report import baseline_report

    try:
        cfg = _with_scheduler(_config(config), scheduler)
        t0 = time.perf_counter()
        console.print(f"[bold]cellfeatures run[/] — config {escape(str(cfg.path))}", markup=True)
        fs, result = _build(cfg, store, strict)
        m = result.manifest
        console.print(_summary_table(m))
        ident = m["identity"]
        console.print(
            f"cells {m['rows']:,} · attributable {ident['attributable']:,} · multi-soma {ident['multi_soma']:,} · "
            f"no root {ident['missing_root']:,}"
        )
        real = [n for n, f in m["features"].items() if f["origin"] == "real"]
        console.print(
            f"real-data features: {len(real)} of {len(m['features'])} "
            f"(the others are derived or synthetic; see `cellfeatures show {result.version[:8]}`)"
        )
        console.print(f"{'built' if result.created else 'already built (no-op)'}: {result.path}")
        run_cfg = cfg.raw.get("run", {})
        if run_cfg.get("agreement"):
            a, b = run_cfg["agreement"]
            _la, _lb, raw, typed = _compare_labels(cfg, a, b, "type")
            console.print(
                f"labels {a} vs {b}: raw spellings agree on {raw.agreement:.1%} of {raw.shared:,} cells; "
                f"after harmonisation {typed.agreement:.1%} of {typed.shared:,} at type level "
                f"(`cellfeatures labels {a} {b}` shows the confusion)"
            )
        names = run_cfg.get("datasets", [])
        if names:
            built = []
            for name in names:  # on the version just built, not on whatever was built last
                spec = _dataset_spec(cfg, name, {"feature_version": result.version})
                ds = build_dataset(fs, spec, cfg.datasets_root, label_blocks=cfg.raw.get("labels"))
                built.append(ds)
                console.print(f"dataset {name}: {ds.card['cells']:,} cells, {len(ds.features)} features → {ds.path}")
            with _fit_progress() as progress:
                report, _created = baseline_report(
                    fs,
                    built[0],
                    seeds=tuple(run_cfg.get("seeds", [0, 1, 2])),
                    root=cfg.datasets_root,
                    extra=built[1:],
                    progress=progress,
                )
            _print_leaderboard(report.parent / "leaderboard.csv")
            console.print(f"report (Markdown): {report}")
            console.print(f"report (open in a browser): {_html_of(report)}")
        console.print(f"done in {time.perf_counter() - t0:.1f} s")
        first = names[0] if names else "column_types"
        console.print(
            "next: "
            f"`cellfeatures show {result.version[:8]}` (every feature and its origin) · "
            f"`cellfeatures export {first} --format parquet` · "
            f"`cellfeatures baseline {first} --model mylab.models:make_model` (your estimator on the same folds) · "
            "examples/quickstart.ipynb (the same in a notebook)"
        )
    except CLI_ERRORS as exc:
        _fail(exc)


@app.command()
def build(
    config: ConfigOpt = None,
    store: StoreOpt = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a value: features.x.y=VALUE (TOML)")] = None,
    strict: StrictOpt = False,
    scheduler: SchedulerOpt = None,
) -> None:
    """Build (or find) the feature version of a config; families whose tables the source lacks are skipped.

    Examples:

    \b
      cellfeatures build --config configs/sample.toml --set 'features.nucleus.depth_method="y_offset"'
      cellfeatures build --config configs/big.toml --scheduler tcp://scheduler:8786
    """
    try:
        cfg = _with_scheduler(_config(config), scheduler)
        for item in set_ or []:
            cfg = cfg.with_override(item)
        _fs, result = _build(cfg, store, strict)
        console.print(("published " if result.created else "already built, nothing to do: ") + result.version)
    except CLI_ERRORS as exc:
        _fail(exc)


@app.command("list")
def list_(store: StoreOpt = None, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Published feature versions, oldest first; `latest` marks the one built last.

    Examples:

    \b
      cellfeatures list --json | jq -r '.versions[-1].version'
    """
    try:
        fs = _store(_config(config) if config else None, store)
        rows = fs.list()
    except CLI_ERRORS as exc:
        _fail(exc)
        return
    damaged = fs.scan_versions()[1]
    for i, r in enumerate(rows):
        r["latest"] = i == len(rows) - 1
    if as_json:
        _print_json({"store": str(fs.root), "found_by": fs.found_by, "versions": rows, "damaged": damaged})
        return
    for problem in damaged:
        err.print(f"[yellow]skipped a damaged directory:[/] {escape(problem)}", markup=True)
    if not rows:
        console.print(f"no versions in {fs.root} (found by {fs.found_by}); build one with `cellfeatures build`")
        return
    table = _table([c for c in rows[0] if c != "latest"] + [""], f"feature versions in {fs.root}")
    for r in rows:
        table.add_row(*[str(v) for k, v in r.items() if k != "latest"], "latest" if r["latest"] else "")
    console.print(table)


@app.command()
def verify(
    version: Annotated[str | None, typer.Argument(help="version id or prefix (default: every version)")] = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Check published versions against their manifests: files, sizes, SHA-256, schema. Exit 1 if damaged.

    Examples:

    \b
      cellfeatures verify                 # every version
      cellfeatures verify 3f2a            # one version
    """
    try:
        fs = _store(_config(config) if config else None, store)
        good, damaged = fs.scan_versions()
        versions = [fs.resolve(version)] if version else [m["version"] for m in good]
        bad = 0 if version else len(damaged)
        for problem in [] if version else damaged:
            console.print(f"DAMAGED  {problem}")
        for v in versions:
            problems = fs.verify(v)
            bad += bool(problems)
            console.print(f"{'ok      ' if not problems else 'DAMAGED '} {v}" + "".join(f"\n  {p}" for p in problems))
    except CLI_ERRORS as exc:
        _fail(exc)
        return
    console.print(f"{len(versions) + (0 if version else len(damaged)) - bad} sound, {bad} damaged")
    if bad:
        raise typer.Exit(code=1)


@app.command()
def show(
    version: Annotated[str, typer.Argument(help="version id, unique prefix or 'latest'")] = "latest",
    store: StoreOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A version's manifest: inputs with origins, families, per-feature stats.

    Examples:

    \b
      cellfeatures show latest
      cellfeatures show 3f2a --json
    """
    try:
        m = _store(_config(config) if config else None, store).manifest(version)
    except CLI_ERRORS as exc:
        _fail(exc)
        return
    if as_json:
        _print_json(m)
        return
    console.print(_summary_table(m))
    inputs = _table(("table", "origin", "rows", "parts"), "inputs")
    for name, info in m["inputs"].items():
        parts = (
            ", ".join(f"{p['name']} ({p['origin']}, {p['rows']:,})" for p in info["parts"])
            if len(info["parts"]) > 1
            else ""
        )
        inputs.add_row(name, info["origin"], f"{info['rows']:,}", parts)
    console.print(inputs)
    feats = _table(("feature", "family", "unit", "origin", "null %", "min", "max"), "features")
    for name, f in m["features"].items():
        feats.add_row(
            name,
            f["family"],
            f["unit"],
            f["origin"],
            f"{100 * f['null_rate']:.1f}",
            _fmt(f.get("min")),
            _fmt(f.get("max")),
        )
    console.print(feats)


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


@app.command()
def diff(a: str, b: str, store: StoreOpt = None, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """What changed between two versions: cells, features, values, config, input tables.

    Examples:

    \b
      cellfeatures diff 3f2a 9c1e
      cellfeatures diff 3f2a latest --json
    """
    try:
        d = _store(_config(config) if config else None, store).diff(a, b)
    except CLI_ERRORS as exc:
        _fail(exc)
        return
    if as_json:
        _print_json(d.as_dict())
        return
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


@app.command()
def features(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """The feature catalogue of a config: every column with dtype, unit, family and meaning.

    Examples:

    \b
      cellfeatures features --config configs/minnie65_public.toml --json
    """
    from cellfeatures.pipelines import catalogue

    try:
        cfg = _config(config)
        specs = catalogue(cfg.features)
    except CLI_ERRORS as exc:
        _fail(exc)
        return
    if as_json:
        _print_json(
            [
                {"feature": s.name, "family": s.family, "dtype": s.dtype, "unit": s.unit, "description": s.description}
                for s in specs
            ]
        )
        return
    table = _table(("feature", "family", "dtype", "unit", "description"), f"feature catalogue ({cfg.name})")
    for s in specs:
        table.add_row(s.name, s.family, s.dtype, s.unit, s.description)
    console.print(table)


@app.command()
def fetch(
    config: ConfigOpt = None,
    version: Annotated[
        int | None, typer.Option(help="materialization version to pin (default: config, else latest)")
    ] = None,
    server: Annotated[str | None, typer.Option(help="CAVE server address (default: the config's)")] = None,
    out: Annotated[Path | None, typer.Option(help="snapshot directory (default: <cache_dir>/<datastack>/v<N>)")] = None,
    tables: Annotated[str | None, typer.Option(help="comma-separated tables (default: what the config needs)")] = None,
) -> None:
    """Fetch a pinned CAVE version into a local snapshot: row-cap-safe, retrying, resumable.

    Examples:

    \b
      CAVE_TOKEN=... cellfeatures fetch --config configs/minnie65_public.toml --tables nucleus_detection_v0
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from cellfeatures.sources.cave import fetch_tables

    try:
        cfg = _config(config)
        wanted = [t.strip() for t in tables.split(",") if t.strip()] if tables else cfg.tables_needed()
        with Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        ) as bars:
            tasks: dict[str, Any] = {}

            def progress(table: str, done: int, total: int) -> None:
                if table not in tasks:
                    tasks[table] = bars.add_task(table, total=total)
                bars.update(tasks[table], completed=done, total=total)

            path, reports, fetcher = fetch_tables(
                cfg.source,
                wanted,
                version=version,
                server=server,
                out=out,
                nucleus_table=cfg.identity["nucleus_table"],
                progress=progress,
            )
        for r in reports:
            console.print(
                f"{r.table}: {r.rows:,} rows, {r.chunks_downloaded} of {r.chunks} chunks downloaded "
                f"in {r.seconds:.1f} s"
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
    except CLI_ERRORS as exc:
        _fail(exc)


def _dataset_spec(cfg: Config, name: str, overrides: dict[str, Any]) -> Any:
    from cellfeatures.datasets import DatasetSpec

    blocks = cfg.raw.get("dataset", {})
    block = dict(blocks.get(name, {}))
    split = dict(block.pop("split", {}))
    for key in ("strategy", "folds", "seed", "block_um", "buffer_um"):
        if overrides.get(key) is not None:
            split[key] = overrides.pop(key)
    block.update({k: v for k, v in overrides.items() if v is not None})
    if not (set(block) - {"feature_version"}) and name not in blocks:
        import difflib

        close = difflib.get_close_matches(name, list(blocks), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            f"no [dataset.{name}] in {cfg.path}{hint}; give --label and --level to define a new one "
            f"(have: {', '.join(blocks) or 'none'})"
        )
    return DatasetSpec.from_dict(name, {**block, "split": split})


@app.command()
def dataset(
    name: Annotated[str, typer.Argument(help="a [dataset.<name>] block of the config, or a new name")] = "column_types",
    config: ConfigOpt = None,
    store: StoreOpt = None,
    label: Annotated[str | None, typer.Option(help="label source: manual, mtype, early_model, ...")] = None,
    level: Annotated[str | None, typer.Option(help="class | subclass | type | raw")] = None,
    split: Annotated[str | None, typer.Option(help="stratified | spatial | column")] = None,
    folds: int | None = None,
    seed: int | None = None,
    block_um: Annotated[float | None, typer.Option(help="spatial block size, um (default 50)")] = None,
    buffer_um: Annotated[float | None, typer.Option(help="buffer between train and test, um (default 15)")] = None,
    origins: Annotated[
        str | None, typer.Option(help="feature origins, comma-separated (default real,derived: no synthetic)")
    ] = None,
    exclude: Annotated[
        str | None, typer.Option(help="feature names or globs to leave out, comma-separated (default pos_*,qc_*)")
    ] = None,
    version: Annotated[
        str | None, typer.Option(help="feature version id or prefix (default: the config's own version)")
    ] = None,
) -> None:
    """Build a model-ready dataset: features + label + filters + leakage-aware split, with a card.

    Defaults are the headline settings (spatial 5-fold split, 50 um blocks, 15 um buffer, a locked test slab,
    real and derived features only) on the config's own feature version (built first if needed).

    Examples:

    \b
      cellfeatures dataset column_types
      cellfeatures dataset my_mtypes --label mtype --level raw --block-um 40 --exclude 'pos_*,syn_*'
    """
    from cellfeatures.datasets import build_dataset, fold_names_of

    def listed(text: str | None) -> list[str] | None:
        return [v.strip() for v in text.split(",") if v.strip()] if text is not None else None

    try:
        cfg = _config(config)
        fs = _store(cfg, store)
        if version is None:  # the config's own version (a no-op when built), not whatever was built last
            version = _build(cfg, store)[1].version
        spec = _dataset_spec(
            cfg,
            name,
            {
                "label": label,
                "level": level,
                "strategy": split,
                "folds": folds,
                "seed": seed,
                "block_um": block_um,
                "buffer_um": buffer_um,
                "origins": listed(origins),
                "exclude": listed(exclude),
                "feature_version": version,
            },
        )
        ds = build_dataset(fs, spec, cfg.datasets_root, label_blocks=cfg.raw.get("labels"))
        card = ds.card
        console.print(
            f"dataset {card['name']} {card['dataset_id']}: {card['cells']:,} cells, "
            f"{len(card['features'])} features, label {card['label']['column']}, "
            f"{len(fold_names_of(card))} folds → {ds.path}"
        )
        for risk in card["leakage_risks"]:
            console.print(f"  [yellow]risk:[/] {escape(risk)}", markup=True)
    except CLI_ERRORS as exc:
        _fail(exc)


@app.command()
def baseline(
    name: Annotated[str, typer.Argument(help="dataset name, <name>/<id>, id prefix or path")] = "column_types",
    config: ConfigOpt = None,
    store: StoreOpt = None,
    seeds: Annotated[str, typer.Option(help="comma-separated seeds (each re-draws the split)")] = "0,1,2",
    models: Annotated[str | None, typer.Option(help="comma-separated models (default: all)")] = None,
    model: Annotated[
        list[str] | None,
        typer.Option("--model", help="your own estimator: module:callable returning a scikit-learn estimator"),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Floors, trained baselines and every existing model table, scored alike; writes leaderboard + report.

    Examples:

    \b
      cellfeatures baseline column_types --seeds 0,1 --model mylab.models:make_knn
    """
    from cellfeatures.datasets import find_dataset
    from cellfeatures.report import baseline_report

    try:
        cfg = _config(config)
        ds = find_dataset(name, cfg.datasets_root)
        chosen = tuple(m.strip() for m in models.split(",")) if models else None
        custom = dict(_load_estimator(spec) for spec in model or [])
        err.print(
            f"dataset {ds.card['name']}/{ds.id} ({ds.card['cells']:,} cells, version {ds.card['feature_version']})"
        )
        with _fit_progress(err if as_json else console) as progress:
            report, created = baseline_report(
                _store(cfg, store),
                ds,
                seeds=_int_list(seeds, "--seeds"),
                models=chosen,
                custom=custom or None,
                root=cfg.datasets_root,
                progress=progress,
            )
        html = _html_of(report)
        if as_json:
            board = pl.read_csv(report.parent / "leaderboard.csv", infer_schema_length=None)
            _print_json({"report": str(report), "html": str(html), "created": created, "leaderboard": board.to_dicts()})
            return
        _print_leaderboard(report.parent / "leaderboard.csv")
        console.print(f"report: {report}" + ("" if created else " (already computed)"))
        console.print(f"report (open in a browser): {html}")
    except CLI_ERRORS as exc:
        _fail(exc)


@app.command()
def report(
    name: Annotated[str, typer.Argument(help="dataset name, <name>/<id>, id prefix, path, or a report folder")] = (
        "column_types"
    ),
    config: ConfigOpt = None,
) -> None:
    """Write (or rewrite) the self-contained HTML report of the newest baseline report covering a dataset.

    One file, everything embedded (figures, styles; no network): dataset card, leaderboard with intervals,
    confusion matrices, per-class metrics, calibration, feature distributions, depth profiles, feature origins.

    Examples:

    \b
      cellfeatures report column_types    # then open the printed REPORT.html in a browser
    """
    from cellfeatures.html_report import write_html_report
    from cellfeatures.saved_report import SavedReport

    try:
        cfg = _config(config)
        with console.status("writing the HTML report"):
            saved = SavedReport.load(name, cfg.datasets_root)
            path = write_html_report(saved.path)
    except CLI_ERRORS as exc:
        _fail(exc)
        return
    console.print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, self-contained: open it in any browser)")


def _load_estimator(spec: str) -> tuple[str, Any]:
    """`module:callable` -> (callable name, the estimator it returns); clear errors for each way it can fail."""
    import importlib

    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"--model needs module:callable (e.g. mylab.models:make_knn), got {spec!r}")
    if "" not in sys.path:
        sys.path.insert(0, "")  # the working directory, as `python -m` would
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"--model {spec}: cannot import {module_name!r} ({exc})") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ConfigError(f"--model {spec}: {module_name} has no callable {attr!r}")
    estimator = factory()
    if not (hasattr(estimator, "fit") and hasattr(estimator, "predict")):
        raise ConfigError(f"--model {spec}: {attr}() returned {type(estimator).__name__}, not an estimator")
    return attr, estimator


@app.command()
def score(
    predictions: Annotated[
        Path, typer.Argument(help="Parquet/CSV file: nucleus_id (or target_id, or pt_root_id) + cell_type")
    ],
    dataset_name: Annotated[
        str, typer.Option("--dataset", help="dataset name, <name>/<id>, id prefix or path")
    ] = "column_types",
    name: Annotated[str | None, typer.Option(help="entry name on the leaderboard (default: the file's stem)")] = None,
    materialization_version: Annotated[
        int | None, typer.Option(help="for a root-keyed file: the materialization version its root ids belong to")
    ] = None,
    config: ConfigOpt = None,
    store: StoreOpt = None,
) -> None:
    """Score anyone's prediction table on the dataset's test cells; add it to the latest report.

    Examples:

    \b
      cellfeatures score my_predictions.parquet --dataset column_types --name my-model
    """
    from cellfeatures.datasets import check_name, find_dataset
    from cellfeatures.saved_report import latest_report
    from cellfeatures.scoring import score_file

    try:
        cfg = _config(config)
        ds = find_dataset(dataset_name, cfg.datasets_root)
        entry = check_name(name or predictions.stem, "entry name")
        report = latest_report(ds, cfg.datasets_root)
        row = score_file(
            predictions, ds, _store(cfg, store), entry, report=report, materialization_version=materialization_version
        )
    except CLI_ERRORS as exc:
        _fail(exc)
        return
    console.print(
        f"{entry}: coverage {row['coverage']:.1%}; all test cells: accuracy {row['accuracy_mean']:.3f} "
        f"[{row['accuracy_ci_low']:.3f}, {row['accuracy_ci_high']:.3f}], balanced accuracy "
        f"{row['balanced_accuracy_mean']:.3f}; file SHA-256 {row['file_sha256'][:16]}"
    )
    if row.get("covered_accuracy") is not None:
        paired = (
            f"; {row['paired_vs']} on the same cells {row['paired_model_accuracy']:.3f} "
            f"(McNemar p {row['paired_p_value']:.4f})"
            if row.get("paired_vs")
            else ""
        )
        console.print(f"on the {row['covered_n']:,} cells it covers: accuracy {row['covered_accuracy']:.3f}{paired}")
    console.print(f"added to {report}" if report else "no baseline report yet: run `cellfeatures baseline` to compare")


@app.command()
def predict(
    dataset_name: Annotated[str, typer.Argument(help="dataset name, <name>/<id>, id prefix or path")] = "column_types",
    model: Annotated[str, typer.Option(help="a baseline model name, or module:callable")] = "hist_gradient_boosting",
    config: ConfigOpt = None,
    store: StoreOpt = None,
) -> None:
    """Fit on all labelled cells, predict every cell passing the dataset's filters; a CAVE-style table + card.

    Examples:

    \b
      cellfeatures predict column_types --model logistic_regression
    """
    from cellfeatures.datasets import find_dataset
    from cellfeatures.predict import write_predictions
    from cellfeatures.saved_report import latest_report

    try:
        cfg = _config(config)
        ds = find_dataset(dataset_name, cfg.datasets_root)
        estimator: Any = model
        name = model
        if ":" in model:
            name, estimator = _load_estimator(model)
        with console.status(f"fitting {name} on {ds.card['cells']:,} cells and predicting every cell"):
            path = write_predictions(_store(cfg, store), ds, estimator, name, latest_report(ds, cfg.datasets_root))
        table = pl.read_parquet(path)
    except CLI_ERRORS as exc:
        _fail(exc)
        return
    console.print(
        f"{table.height:,} cells predicted ({int(table['labelled'].sum()):,} were training cells, "
        f"{int(table['out_of_range'].sum()):,} outside the training range) → {path}"
    )
    console.print(f"model card: {path.parent / 'MODEL_CARD.md'}; compare: cellfeatures labels early_model {path}")


def _int_list(text: str, option: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{option} must be comma-separated integers, got {text!r}") from None


@contextmanager
def _fit_progress(on: Console | None = None) -> Iterator[Callable[[int, int, str], None]]:
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


def _print_leaderboard(path: Path) -> None:
    board = pl.read_csv(path)
    table = _table(
        ["dataset", "entry", "kind", "features", "balanced acc. [95% CI]", "accuracy [95% CI]", "macro-F1", "coverage"],
        "leaderboard (mean over seeds, bootstrap interval over spatial blocks; ranked by balanced accuracy)",
    )
    for r in board.iter_rows(named=True):
        flag = "" if r["headline"] else " [not headline]"
        coverage = f"{r['coverage']:.0%}" if r["coverage"] is not None else ""

        def cell(metric: str, row: dict[str, Any] = r) -> str:
            if row[f"{metric}_mean"] is None:
                return "-"
            if row[f"{metric}_ci_low"] is None:
                return f"{row[f'{metric}_mean']:.3f}"
            return f"{row[f'{metric}_mean']:.3f} [{row[f'{metric}_ci_low']:.3f}, {row[f'{metric}_ci_high']:.3f}]"

        table.add_row(
            f"{r['dataset']} ({r['level']})",
            r["entry"] + flag,
            r["kind"],
            r["feature_origins"],
            cell("balanced_accuracy"),
            cell("accuracy"),
            cell("macro_f1"),
            coverage,
        )
    console.print(table)


@app.command()
def export(
    name: Annotated[str, typer.Argument(help="dataset name, <name>/<id>, id prefix or path")],
    fmt: Annotated[str, typer.Option("--format", help="parquet | csv | arrow | npz")] = "parquet",
    out: Annotated[Path | None, typer.Option(help="output file")] = None,
    config: ConfigOpt = None,
    datasets_root: Annotated[
        Path | None, typer.Option("--datasets", help="datasets root (default: the config's)")
    ] = None,
) -> None:
    """Export a dataset (data + split roles) for other tools.

    Examples:

    \b
      cellfeatures export column_types --format npz --out column_types.npz
    """
    from cellfeatures.datasets import check_name, find_dataset

    try:
        ds = find_dataset(name, datasets_root or _config(config).datasets_root)
        target = out or Path(check_name(f"{ds.card['name']}-{ds.id}.{fmt}", "export file name"))
        ds.export(fmt, target)
        console.print(
            f"wrote {target}: dataset {ds.card['name']}/{ds.id} ({ds.card['cells']:,} cells, split seed "
            f"{ds.card['spec']['split']['seed']}, version {ds.card['feature_version']})"
        )
    except CLI_ERRORS as exc:
        _fail(exc)


def _compare_labels(cfg: Config, a: str, b: str, level: str) -> tuple[Any, Any, Any, Any]:
    """Two label sets of the config's source and their agreement, raw spellings and at `level`."""
    from cellfeatures.labels import LabelSourceSpec, agreement, label_sources, load_labels
    from cellfeatures.sources.factory import make_source
    from cellfeatures.sources.snapshot import SnapshotSource

    known = label_sources(cfg.raw.get("labels"))
    source: Any = None
    loaded = []
    for name in (a, b):
        path = Path(name)
        if name not in known and path.is_file():  # a prediction table written by `cellfeatures predict`
            table = path.name.split(".")[0]
            spec = LabelSourceSpec(table, (table,), "model", f"cell-type table {path}")
            loaded.append(load_labels(SnapshotSource(path.parent), spec))
            continue
        if name not in known:
            import difflib

            close = difflib.get_close_matches(name, list(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown label source {name!r}{hint}; known: {', '.join(known)} (or a table file)")
        source = source or make_source(cfg.source, cfg.tables_needed())
        loaded.append(load_labels(source, known[name]))
    la, lb = loaded
    return la, lb, agreement(la, lb, "raw"), agreement(la, lb, level)


@app.command()
def labels(
    a: Annotated[str, typer.Argument(help="label source")] = "manual",
    b: Annotated[str, typer.Argument(help="label source to compare with")] = "early_model",
    config: ConfigOpt = None,
    level: Annotated[str, typer.Option(help="class | subclass | type")] = "type",
    as_json: JsonOpt = False,
) -> None:
    """Agreement of two label sources, raw spellings first, then after harmonisation (with confusion).

    Examples:

    \b
      cellfeatures labels manual early_model --level class
      cellfeatures labels early_model datasets/.../predictions/column_types.parquet
    """
    try:
        la, lb, raw, harmonised = _compare_labels(_config(config), a, b, level)
        if as_json:
            _print_json(
                {
                    "a": a,
                    "b": b,
                    "level": level,
                    "raw": {"agreement": raw.agreement, "shared": raw.shared},
                    "harmonised": {
                        "agreement": harmonised.agreement,
                        "shared": harmonised.shared,
                        "kappa": harmonised.kappa,
                        "confusion": harmonised.confusion.to_dicts(),
                    },
                    "unmapped": {la.spec.name: la.unmapped, lb.spec.name: lb.unmapped},
                }
            )
            return
        for label_set in (la, lb):
            if label_set.unmapped:
                console.print(
                    f"[yellow]{escape(label_set.spec.name)}: unmapped spellings (reported, not guessed):[/] "
                    f"{escape(str(label_set.unmapped))}",
                    markup=True,
                )
        console.print(
            f"{a} vs {b}: raw spellings agree on {raw.agreement:.1%} of {raw.shared:,} shared cells; "
            f"after harmonisation, at {level} level: {harmonised.agreement:.1%} of {harmonised.shared:,} "
            f"(Cohen's kappa {harmonised.kappa:.3f})"
        )
        table = _table(
            ["", *[c for c in harmonised.confusion.columns if c != "a"]], f"confusion ({a} rows, {b} columns)"
        )
        for row in harmonised.confusion.iter_rows():
            table.add_row(*[str(v) for v in row])
        console.print(table)
    except CLI_ERRORS as exc:
        _fail(exc)


@app.command()
def sample(as_json: JsonOpt = False) -> None:
    """The embedded sample's tables, with origin (real / derived / synthetic) and rows.

    Examples:

    \b
      cellfeatures sample --json
    """
    from cellfeatures.sources.sample import SampleSource

    src = SampleSource(progress=lambda msg: err.print(msg))
    if as_json:
        tables = []
        for name in src.tables():
            info = src.info(name)
            tables.append(
                {
                    "table": name,
                    "origin": info.origin,
                    "kind": info.kind,
                    "rows": info.rows,
                    "source": info.source,
                    "parts": [{"origin": p.origin, "rows": p.rows} for p in info.parts],
                }
            )
        _print_json({"committed": str(src.committed_dir), "generated": str(src.synthetic_dir), "tables": tables})
        return
    table = _table(("table", "origin", "kind", "rows", "source"), "embedded sample")
    for name in src.tables():
        info = src.info(name)
        origin = (
            info.origin
            if len({p.origin for p in info.parts}) <= 1
            else " + ".join(f"{p.origin} {p.rows:,}" for p in info.parts)
        )
        table.add_row(name, origin, info.kind, f"{info.rows:,}", info.source[:70])
    console.print(table)
    console.print(f"committed: {src.committed_dir}\ngenerated: {src.synthetic_dir}")


@app.command()
def synthetic(
    out: Annotated[Path, typer.Option(help="snapshot directory to write")],
    cells: Annotated[int, typer.Option(help="number of nuclei")] = 2_000,
    synapses: Annotated[int, typer.Option(help="number of synapses")] = 200_000,
    seed: int = 0,
    chunk_rows: int = 2_000_000,
) -> None:
    """Write a synthetic snapshot of any size (partitioned synapses, bounded memory).

    Examples:

    \b
      cellfeatures synthetic --out /scratch/synth --cells 20000 --synapses 100000000
    """
    from cellfeatures.sources.synthetic import SyntheticSpec, write_synthetic_snapshot

    t0 = time.perf_counter()
    try:
        spec = SyntheticSpec(n_cells=cells, n_synapses=synapses, seed=seed, chunk_rows=chunk_rows)
        path = write_synthetic_snapshot(spec, out)
        rows = pl.scan_parquet(path / "synapses_pni_2" / "*.parquet").select(pl.len()).collect().item()
    except CLI_ERRORS as exc:
        _fail(exc)
        return
    console.print(f"wrote {path} ({rows:,} synapses) in {time.perf_counter() - t0:.1f} s")


@app.command()
def doctor(
    config: ConfigOpt = None,
    server: Annotated[
        str | None, typer.Option(help="CAVE server to try (default: the config's, else the public one)")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """What this installation sees: versions, config, store / datasets / cache folders and write access,
    CAVE token present or not (never shown), server reachable or not. Exit 1 only on a real problem.

    Examples:

    \b
      cellfeatures doctor
      cellfeatures doctor --config configs/minnie65_public.toml --json
    """
    from cellfeatures.doctor import as_json as checks_json
    from cellfeatures.doctor import run_checks

    checks = run_checks(config, server)
    if as_json:
        _print_json(checks_json(checks))
    else:
        marks = {"ok": "[green]ok     [/]", "note": "[yellow]note   [/]", "problem": "[bold red]problem[/]"}
        for c in checks:
            console.print(f"{marks[c.state]} {escape(c.name)}: {escape(c.detail)}", markup=True)
    if any(c.state == "problem" for c in checks):
        raise typer.Exit(code=1)


if __name__ == "__main__":  # pragma: no cover
    app()
