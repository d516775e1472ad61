"""Dataset commands: dataset (build one), export (for other tools), labels (agreement of two label sources)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

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
    listed,
    print_json,
    store_of,
)
from cellfeatures.cli.render import build_version, table

NameArg = Annotated[str, typer.Argument(help="a [dataset.<name>] block of the config, or a new name")]
LabelOpt = Annotated[str | None, typer.Option(help="label source: manual, mtype, early_model, ...")]
LevelOpt = Annotated[str | None, typer.Option(help="class | subclass | type | raw")]
SplitOpt = Annotated[str | None, typer.Option(help="stratified | spatial | column")]
BlockOpt = Annotated[float | None, typer.Option(help="spatial block size, um (default 50)")]
BufferOpt = Annotated[float | None, typer.Option(help="buffer between train and test, um (default 15)")]
OriginsOpt = Annotated[
    str | None, typer.Option(help="feature origins, comma-separated (default real,derived: no synthetic)")
]
ExcludeOpt = Annotated[
    str | None, typer.Option(help="feature names or globs to leave out, comma-separated (default pos_*,qc_*)")
]
FeatureVersionOpt = Annotated[
    str | None, typer.Option(help="feature version id or prefix (default: the config's own version)")
]

DATASET_HELP = """Build a model-ready dataset: features + label + filters + leakage-aware split, with a card.

Defaults are the headline settings (spatial 5-fold split, 50 um blocks, 15 um buffer, a locked test slab,
real and derived features only) on the config's own feature version (built first if needed).

Examples:

\b
  cellfeatures dataset column_types
  cellfeatures dataset my_mtypes --label mtype --level raw --block-um 40 --exclude 'pos_*,syn_*'
"""


@app.command(help=DATASET_HELP)
def dataset(
    name: NameArg = "column_types",
    config: ConfigOpt = None,
    store: StoreOpt = None,
    label: LabelOpt = None,
    level: LevelOpt = None,
    split: SplitOpt = None,
    folds: int | None = None,
    seed: int | None = None,
    block_um: BlockOpt = None,
    buffer_um: BufferOpt = None,
    origins: OriginsOpt = None,
    exclude: ExcludeOpt = None,
    version: FeatureVersionOpt = None,
) -> None:
    from cellfeatures.datasets.build import build_dataset
    from cellfeatures.datasets.spec import spec_from_config

    with clean_errors():
        cfg = config_of(config)
        fs = store_of(cfg, store)
        given: dict[str, Any] = dict(label=label, level=level, strategy=split, folds=folds, seed=seed)
        given |= dict(block_um=block_um, buffer_um=buffer_um, origins=listed(origins), exclude=listed(exclude))
        spec = spec_from_config(cfg, name, given)  # a wrong [dataset] block is refused before a feature build
        version = version or build_version(fs, cfg).id  # the config's own version, not whatever was built last
        spec = replace(spec, feature_version=version)
        _print_dataset(build_dataset(fs, spec, cfg.datasets_root, label_blocks=cfg.raw.get("labels")))


def _print_dataset(ds: Any) -> None:
    from cellfeatures.datasets.card import fold_names_of

    card = ds.card
    console.print(
        f"dataset {card['name']} {card['dataset_id']}: {card['cells']:,} cells, {len(card['features'])} features, "
        f"label {card['label']['column']}, {len(fold_names_of(card))} folds → {ds.path}"
    )
    for risk in card["leakage_risks"]:
        console.print(f"  [yellow]risk:[/] {escape(risk)}", markup=True)


EXPORT_HELP = """Export a dataset (data + split roles) for other tools.

Examples:

\b
  cellfeatures export column_types --format npz --out column_types.npz
"""
FormatOpt = Annotated[str, typer.Option("--format", help="parquet | csv | arrow | npz | hf (a folder)")]
DatasetsRootOpt = Annotated[Path | None, typer.Option("--datasets", help="datasets root (default: the config's)")]


@app.command(help=EXPORT_HELP)
def export(
    name: DatasetArg,
    fmt: FormatOpt = "parquet",
    out: Annotated[Path | None, typer.Option(help="output file")] = None,
    config: ConfigOpt = None,
    datasets_root: DatasetsRootOpt = None,
) -> None:
    from cellfeatures._util.names import check_name
    from cellfeatures.datasets.dataset import find_dataset

    with clean_errors():
        ds = find_dataset(name, datasets_root or config_of(config).datasets_root)
        suffix = "-hf" if fmt == "hf" else f".{fmt}"
        target = out or Path(check_name(f"{ds.card['name']}-{ds.id}{suffix}", "export file name"))
        ds.export(fmt, target)
        console.print(
            f"wrote {target}: dataset {ds.card['name']}/{ds.id} ({ds.card['cells']:,} cells, split seed "
            f"{ds.card['spec']['split']['seed']}, version {ds.card['feature_version']})"
        )


LABELS_HELP = """Agreement of two label sources, raw spellings first, then after harmonisation (with confusion).

Examples:

\b
  cellfeatures labels manual early_model --level class
  cellfeatures labels early_model datasets/.../predictions/column_types.parquet
"""


@app.command(help=LABELS_HELP)
def labels(
    a: Annotated[str, typer.Argument(help="label source")] = "manual",
    b: Annotated[str, typer.Argument(help="label source to compare with")] = "early_model",
    config: ConfigOpt = None,
    level: Annotated[str, typer.Option(help="class | subclass | type")] = "type",
    as_json: JsonOpt = False,
) -> None:
    from cellfeatures.workflows import compare_labels

    with clean_errors():
        la, lb, raw, harmonised = compare_labels(config_of(config), a, b, level)
        if as_json:
            unmapped = {la.spec.name: la.unmapped, lb.spec.name: lb.unmapped}
            conflicts = {s.spec.name: s.conflicting_nuclei for s in (la, lb)}
            agreement = _agreement_json(raw, harmonised)
            print_json(
                {"a": a, "b": b, "level": level, **agreement, "unmapped": unmapped, "conflicting_nuclei": conflicts}
            )
            return
        _print_label_problems(la, lb)
        _print_agreement(a, b, level, raw, harmonised)


def _print_label_problems(*label_sets: Any) -> None:
    """Unmapped spellings and nuclei with conflicting labels (dropped from both sides), per source."""
    for s in label_sets:
        if s.unmapped:
            console.print(
                f"[yellow]{escape(s.spec.name)}: unmapped spellings (reported, not guessed):[/] "
                f"{escape(str(s.unmapped))}",
                markup=True,
            )
        if s.conflicting_nuclei:
            console.print(
                f"{s.spec.name}: {s.conflicting_nuclei:,} nuclei carry conflicting labels in "
                f"{', '.join(s.tables_used)} (dropped from the comparison, as datasets drop them)"
            )


def _agreement_json(raw: Any, harmonised: Any) -> dict[str, Any]:
    return {
        "raw": {"agreement": raw.agreement, "shared": raw.shared},
        "harmonised": {
            "agreement": harmonised.agreement,
            "shared": harmonised.shared,
            "kappa": harmonised.kappa,
            "confusion": harmonised.confusion.to_dicts(),
        },
    }


def _print_agreement(a: str, b: str, level: str, raw: object, harmonised: object) -> None:
    from cellfeatures.labels.agreement import Agreement

    assert isinstance(raw, Agreement) and isinstance(harmonised, Agreement)
    console.print(
        f"{a} vs {b}: raw spellings agree on {raw.agreement:.1%} of {raw.shared:,} shared cells; "
        f"after harmonisation, at {level} level: {harmonised.agreement:.1%} of {harmonised.shared:,} "
        f"(Cohen's kappa {harmonised.kappa:.3f})"
    )
    out = table(["", *[c for c in harmonised.confusion.columns if c != "a"]], f"confusion ({a} rows, {b} columns)")
    for row in harmonised.confusion.iter_rows():
        out.add_row(*[str(v) for v in row])
    console.print(out)
