"""Anyone's predictions, scored like ours: read a prediction file, key it by nucleus, harmonise, evaluate.

A prediction file is Parquet / CSV / Feather with one row per cell:
- a key: `nucleus_id`; or `target_id` (a CAVE cell-type table); or `pt_root_id` / `root_id` together
  with the materialization version it was made on, resolved through that version's nucleus <-> root map
  (root ids are valid for one version only, so a root-keyed file without its version is refused);
- a label: `cell_type`, `pred`, `prediction` or `label`, in any spelling the vocabulary knows
  (harmonised to the dataset's level; unknown spellings are refused, naming them);
- optionally `p_<class>` probabilities for the dataset's classes (then log-loss and calibration too).
Duplicate keys are refused. The file's SHA-256 goes with the entry wherever it is reported.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import polars as pl

from cellfeatures.checksums import file_sha256
from cellfeatures.errors import ConfigError, SchemaError
from cellfeatures.identity import attributable_expr
from cellfeatures.sources.snapshot import read_table_file
from cellfeatures.vocab import harmonise_expr, unmapped_values

LABEL_COLUMNS = ("cell_type", "pred", "prediction", "label")
ROOT_COLUMNS = ("pt_root_id", "root_id")


def read_predictions(
    path: str | os.PathLike[str],
    dataset: Any,
    store: Any,
    *,
    materialization_version: int | None = None,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """(nucleus_id, pred at the dataset's level, p_<class>...) and what was done to get there."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"prediction file {path} does not exist")
    frame = read_table_file(path).collect()
    name = str(path)
    label = next((c for c in LABEL_COLUMNS if c in frame.columns), None)
    if label is None:
        raise SchemaError(name, f"- no label column: expected one of {list(LABEL_COLUMNS)} (has {frame.columns})")
    info: dict[str, Any] = {"file": str(path), "sha256": file_sha256(path), "rows": frame.height}
    keyed = _key_by_nucleus(frame, name, dataset, store, materialization_version, info)
    duplicated = keyed.filter(pl.col("nucleus_id").is_duplicated())["nucleus_id"].unique().sort()
    if duplicated.len():
        raise SchemaError(
            name, f"- {duplicated.len()} nucleus id(s) predicted more than once, e.g. {duplicated.head(5).to_list()}"
        )
    unknown = unmapped_values(keyed[label].cast(pl.String))
    if unknown:
        raise SchemaError(name, f"- column {label!r}: spellings the vocabulary does not know: {unknown[:8]}")
    level = dataset.card["label"]["level"]
    pred = harmonise_expr(pl.col(label).cast(pl.String), level) if level != "raw" else pl.col(label)
    p_cols = [c for c in keyed.columns if c.startswith("p_")]
    out = keyed.select("nucleus_id", pred.alias("pred"), *p_cols)
    info.update({"label_column": label, "level": level, "probabilities": p_cols})
    return out, info


def _key_by_nucleus(
    frame: pl.DataFrame,
    name: str,
    dataset: Any,
    store: Any,
    version: int | None,
    info: dict[str, Any],
) -> pl.DataFrame:
    if "nucleus_id" in frame.columns:
        info["key"] = "nucleus_id"
        return frame.with_columns(pl.col("nucleus_id").cast(pl.Int64))
    if "target_id" in frame.columns:
        info["key"] = "target_id (CAVE reference table)"
        return frame.rename({"target_id": "nucleus_id"}).with_columns(pl.col("nucleus_id").cast(pl.Int64))
    root = next((c for c in ROOT_COLUMNS if c in frame.columns), None)
    if root is None:
        raise SchemaError(name, f"- no key column: expected nucleus_id, target_id or pt_root_id (has {frame.columns})")
    manifest = store.manifest(dataset.card["feature_version"])
    features_version = manifest["source"].get("materialization_version")
    if version is None:
        raise ConfigError(
            f"{name} is keyed by root id ({root}): say which materialization version it was made on "
            f"(--materialization-version); root ids are valid for one version only"
        )
    if features_version is not None and int(version) != int(features_version):
        raise ConfigError(
            f"{name} uses root ids of version {version}, but the dataset's features are of version "
            f"{features_version}: root ids cannot be compared across versions; key the file by nucleus_id"
        )
    attributable = store.load(dataset.card["feature_version"], columns=["root_id"]).filter(attributable_expr())
    keyed = frame.with_columns(pl.col(root).cast(pl.Int64)).join(
        attributable, left_on=root, right_on="root_id", how="inner"
    )
    info["key"] = f"{root} at materialization {version} (via the version's nucleus <-> root map)"
    info["roots_unmatched"] = frame.height - keyed.height
    return keyed


def score_file(
    path: str | os.PathLike[str],
    dataset: Any,
    store: Any,
    name: str,
    *,
    report: Path | None = None,
    materialization_version: int | None = None,
) -> dict[str, Any]:
    """Score a prediction file on the dataset's test cells; add it to the latest report when there is one."""
    from cellfeatures.baselines import (
        EXTERNAL,
        EntryResult,
        best_entry,
        compare_paired,
        entry_row,
        evaluate_predictions,
    )

    frame, info = read_predictions(path, dataset, store, materialization_version=materialization_version)
    seeds = _report_seeds(report) if report else [dataset.card["spec"]["split"]["seed"]]
    from cellfeatures.baselines import _sibling

    datasets = {s: _sibling(store, dataset, s, dataset.path.parent.parent) for s in seeds}
    entry = evaluate_predictions(datasets, frame, name, EXTERNAL, ["external"], source=info["sha256"])
    entries: list[EntryResult] = [entry]
    if report is not None and (report / "predictions.parquet").exists():
        entries.append(_best_from_report(report, dataset))
    compare_paired(entries)
    best = best_entry(entries)
    row = {**entry_row(entry, dataset), "file_sha256": info["sha256"], "key": info["key"]}
    if report is not None:
        _append_to_report(report, dataset, row, info, best.entry if best is not None else None)
    return row


def _report_seeds(report: Path) -> list[int]:
    seeds = pl.read_parquet(report / "predictions.parquet", columns=["seed"])["seed"].unique().sort()
    return [int(s) for s in seeds] or [0]


def _best_from_report(report: Path, dataset: Any) -> Any:
    """The report's best trained entry, rebuilt from its saved predictions (for the paired test)."""
    from cellfeatures.baselines import CUSTOM, TRAINED, EntryResult

    board = pl.read_csv(report / "leaderboard.csv").filter(
        (pl.col("dataset_id") == dataset.id) & pl.col("headline") & pl.col("kind").is_in([TRAINED, CUSTOM])
    )
    best = board.row(0, named=True)
    preds = pl.read_parquet(report / "predictions.parquet").filter(
        (pl.col("dataset_id") == dataset.id) & (pl.col("entry") == best["entry"])
    )
    per_seed = [{"seed": int(s), "balanced_accuracy": best["balanced_accuracy_mean"]} for s in preds["seed"].unique()]
    return EntryResult(
        best["entry"],
        best["kind"],
        sorted(int(s) for s in preds["seed"].unique()),
        per_seed,
        [],
        best["feature_origins"].split("+"),
        preds,
    )


def _append_to_report(report: Path, dataset: Any, row: dict[str, Any], info: dict[str, Any], best: str | None) -> None:
    """The scored entry joins the report's leaderboard.csv, REPORT.md and external/<name>.json (atomic writes)."""
    from cellfeatures.atomic import write_file_atomically

    board = pl.read_csv(report / "leaderboard.csv")
    board = board.filter(~((pl.col("entry") == row["entry"]) & (pl.col("dataset_id") == dataset.id)))
    new = {
        **{k: v for k, v in row.items() if k in board.columns},
        "headline": False,  # its training data is unknown: listed, never headlined
        "dataset": dataset.card["name"],
        "dataset_id": dataset.id,
        "source": row["file_sha256"],
    }
    merged = pl.concat([board, pl.DataFrame([new])], how="diagonal_relaxed")
    write_file_atomically(report / "leaderboard.csv", lambda tmp: merged.write_csv(tmp))
    (report / "external").mkdir(exist_ok=True)
    write_file_atomically(
        report / "external" / f"{row['entry']}.json",
        lambda tmp: tmp.write_text(json.dumps({"row": row, "input": info}, indent=2, default=str) + "\n"),
    )
    text = (report / "REPORT.md").read_text()
    marker = "## External entries (scored with `cellfeatures score`)"
    if marker not in text:
        text += (
            f"\n{marker}\n\nScored on the same test cells by the same evaluator; coverage, both views and the "
            "paired test against the best cross-validated model. Not headline: their training data is unknown.\n\n"
            "| dataset | entry | file SHA-256 | coverage | accuracy, all test cells | balanced accuracy | "
            "covered cells: entry / model (p) |\n|---|---|---|---|---|---|---|\n"
        )
    p = row.get("paired_p_value")
    text += (
        f"| {dataset.card['name']} | {row['entry']} | `{row['file_sha256'][:16]}` | {row['coverage']:.1%} | "
        f"{row['accuracy_mean']:.3f} | {row['balanced_accuracy_mean']:.3f} | "
        f"{_f(row.get('covered_accuracy'))} / {_f(row.get('paired_model_accuracy'))} ({best or '-'}, "
        f"p {_f(p, 4)}) |\n"
    )
    write_file_atomically(report / "REPORT.md", lambda tmp: tmp.write_text(text))


def _f(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
