"""Feature-store commands: build, list, verify, show, diff, features."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

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
    err,
    print_json,
    store_of,
    with_scheduler,
)
from cellfeatures.cli.render import build_version, print_diff, print_manifest, rows_table, synapse_coverage_line, table

SetOpt = Annotated[list[str] | None, typer.Option("--set", help="override a value: features.x.y=VALUE (TOML)")]
VersionArg = Annotated[str, typer.Argument(help="version id, unique prefix or 'latest'")]

BUILD_HELP = """Build (or find) the feature version of a config; families whose tables the source lacks are skipped.

Examples:

\b
  cellfeatures build --config configs/sample.toml --set 'features.nucleus.depth_method="y_offset"'
  cellfeatures build --config configs/big.toml --scheduler tcp://scheduler:8786
"""


@app.command(help=BUILD_HELP)
def build(
    config: ConfigOpt = None,
    store: StoreOpt = None,
    set_: SetOpt = None,
    strict: StrictOpt = False,
    scheduler: SchedulerOpt = None,
) -> None:
    with clean_errors():
        cfg = with_scheduler(config_of(config), scheduler)
        for item in set_ or []:
            cfg = cfg.with_override(item)
        version = build_version(store_of(cfg, store), cfg, strict)
        console.print(("published " if version.created else "already built, nothing to do: ") + version.id)
        if version.manifest.get("synapse_coverage"):
            console.print(synapse_coverage_line(version.manifest["synapse_coverage"]))


LIST_HELP = """Published feature versions, oldest first; `latest` marks the one built last.

Examples:

\b
  cellfeatures list --json | jq -r '.versions[-1].version'
"""


@app.command("list", help=LIST_HELP)
def list_(store: StoreOpt = None, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    with clean_errors():
        fs = store_of(config_of(config) if config else None, store)
        rows = fs.list()
    damaged = fs.scan_versions()[1]
    for i, r in enumerate(rows):
        r["latest"] = i == len(rows) - 1
        r["state"] = "DAMAGED (see verify)" if fs.verify(r["version"]) else "ok"  # sizes and SHA-256, as verify
    if as_json:
        print_json({"store": str(fs.root), "found_by": fs.found_by, "versions": rows, "damaged": damaged})
        return
    for problem in damaged:
        err.print(f"[yellow]skipped a damaged directory:[/] {escape(problem)}", markup=True)
    if not rows:
        console.print(f"no versions in {fs.root} (found by {fs.found_by}); build one with `cellfeatures build`")
        return
    columns = [c for c in rows[0] if c != "latest"] + [""]
    cells = [[*(v for k, v in r.items() if k != "latest"), "latest" if r["latest"] else ""] for r in rows]
    console.print(rows_table(columns, cells, f"feature versions in {fs.root}"))


VERIFY_HELP = """Check published versions against their manifests (files, sizes, SHA-256, schema) and every dataset
against its card (sizes, SHA-256). Exit 1 if anything is damaged.

Examples:

\b
  cellfeatures verify                 # every version
  cellfeatures verify 3f2a            # one version
"""


@app.command(help=VERIFY_HELP)
def verify(
    version: Annotated[str | None, typer.Argument(help="version id or prefix (default: every version)")] = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    with clean_errors():
        fs = store_of(config_of(config) if config else None, store)
        good, damaged = fs.scan_versions()
        versions = [fs.resolve(version)] if version else [m["version"] for m in good]
        bad = 0 if version else len(damaged)
        for problem in [] if version else damaged:
            console.print(f"DAMAGED  {problem}")
        for v in versions:
            problems = fs.verify(v)
            bad += bool(problems)
            console.print(f"{'ok      ' if not problems else 'DAMAGED '} {v}" + "".join(f"\n  {p}" for p in problems))
        checked, bad_datasets = (0, 0) if version else _verify_datasets(config_of(config).datasets_root)
    console.print(f"{len(versions) + (0 if version else len(damaged)) - bad} sound, {bad} damaged")
    if checked:
        console.print(f"datasets: {checked - bad_datasets} sound, {bad_datasets} damaged")
    if bad or bad_datasets:
        raise typer.Exit(code=1)


def _verify_datasets(root: str) -> tuple[int, int]:
    """Every dataset under `root` against its card's sizes and SHA-256: (checked, damaged)."""
    from cellfeatures.datasets.dataset import dataset_problems

    folders = sorted(p for p in Path(root).glob("*/*") if p.is_dir() and not p.name.startswith("."))
    folders = [p for p in folders if (p / "card.json").exists() or (p / "data.parquet").exists()]
    bad = 0
    for folder in folders:
        problems = dataset_problems(folder)
        bad += bool(problems)
        state = "ok      " if not problems else "DAMAGED "
        console.print(f"{state} dataset {folder.parent.name}/{folder.name}" + "".join(f"\n  {p}" for p in problems))
    return len(folders), bad


SHOW_HELP = """A version's manifest: inputs with origins, families, per-feature stats.

Examples:

\b
  cellfeatures show latest
  cellfeatures show 3f2a --json
"""


@app.command(help=SHOW_HELP)
def show(
    version: VersionArg = "latest", store: StoreOpt = None, config: ConfigOpt = None, as_json: JsonOpt = False
) -> None:
    with clean_errors():
        m = store_of(config_of(config) if config else None, store).manifest(version)
    if as_json:
        print_json(m)
    else:
        print_manifest(m)


DIFF_HELP = """What changed between two versions: cells, features, values, config, input tables.

Examples:

\b
  cellfeatures diff 3f2a 9c1e
  cellfeatures diff 3f2a latest --json
"""


@app.command(help=DIFF_HELP)
def diff(a: str, b: str, store: StoreOpt = None, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    with clean_errors():
        d = store_of(config_of(config) if config else None, store).diff(a, b)
    if as_json:
        print_json(d.as_dict())
    else:
        print_diff(d)


FEATURES_HELP = """The feature catalogue of a config: every column with dtype, unit, family and meaning.

Examples:

\b
  cellfeatures features --config configs/minnie65_public.toml --json
"""


@app.command(help=FEATURES_HELP)
def features(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    from cellfeatures.pipelines import catalogue

    with clean_errors():
        cfg = config_of(config)
        specs = catalogue(cfg.features)
    rows = [
        {"feature": s.name, "family": s.family, "dtype": s.dtype, "unit": s.unit, "description": s.description}
        for s in specs
    ]
    if as_json:
        print_json(rows)
        return
    out = table(("feature", "family", "dtype", "unit", "description"), f"feature catalogue ({cfg.name})")
    for r in rows:
        out.add_row(*r.values())
    console.print(out)


LOOKUP_HELP = """Features of the cells you name: one row per input row, in input order, with a `match` column
(ok, root_not_in_version, root_multi_soma, no_nucleus, unknown_id) and a count of each.

FILE is Parquet/CSV/Feather with `nucleus_id`, or `root_id` (+ --materialization-version or a
`materialization_version` column), or a CAVE table (`target_id`, `pt_root_id`).

Examples:

\b
  cellfeatures lookup my_cells.csv --features 'syn_*,nucleus' --out my_cells_features.parquet
  cellfeatures lookup roots.parquet --materialization-version 1300
"""


@app.command(help=LOOKUP_HELP)
def lookup(
    file: Annotated[Path, typer.Argument(help="the cells: a Parquet, CSV or Feather file")],
    version: Annotated[str | None, typer.Option(help="feature version (default: the newest that fits)")] = None,
    materialization_version: Annotated[int | None, typer.Option(help="the materialization of root ids")] = None,
    features: Annotated[str | None, typer.Option(help="names, globs, families or origins, comma-separated")] = None,
    out: Annotated[Path | None, typer.Option(help="write the result (.parquet or .csv)")] = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    from cellfeatures._util.atomic import write_file_atomically
    from cellfeatures.store.retrieval import match_counts

    with clean_errors():
        fs = store_of(config_of(config) if config else None, store)
        result = fs.get_features(file, features, version, materialization_version)
        if out is not None:  # atomically: a full disk never leaves a truncated file
            write = result.write_csv if out.suffix == ".csv" else result.write_parquet
            write_file_atomically(out, lambda tmp: write(tmp))
    counts = match_counts(result)
    console.print(f"{result.height:,} rows: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    console.print(f"written to {out}" if out is not None else str(result.head(20)))
