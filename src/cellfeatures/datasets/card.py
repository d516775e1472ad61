"""A dataset's card: card.json (everything needed to reproduce and judge it) and CARD.md (the same for people)."""

from __future__ import annotations

import fnmatch
from typing import Any

import polars as pl

from cellfeatures.datasets.selection import LAYER_FEATURES
from cellfeatures.datasets.spec import DatasetSpec
from cellfeatures.datasets.splits import fold_names
from cellfeatures.labels.sources import LabelSet

COVERAGE_GAP = 0.3  # a feature present for 90% of one class and under 60% of another: missingness is a label


def class_dependent_coverage(data: pl.DataFrame, label_col: str, features: list[str]) -> list[str]:
    """Features whose share of present values differs by more than COVERAGE_GAP between classes (of at least
    10 cells). Why: a model that treats a missing value as information (gradient boosting does) learns
    which cells someone measured, not what the cells are."""
    risks: list[str] = []
    counts = data.group_by(label_col).len()
    big = counts.filter(pl.col("len") >= 10)[label_col]
    rows = data.filter(pl.col(label_col).is_in(big.implode()))
    if not rows.height:
        return risks
    present = rows.group_by(label_col).agg(pl.col(f).is_not_null().mean() for f in features)
    for f in features:
        shares = dict(zip(present[label_col].to_list(), present[f].to_list(), strict=True))
        low, high = min(shares, key=shares.__getitem__), max(shares, key=shares.__getitem__)
        if round(shares[high] - shares[low], 9) > COVERAGE_GAP:  # 1.0 - 0.7 is 0.30000000000000004
            risks.append(
                f"{f} is present for {shares[high]:.0%} of {high} cells but {shares[low]:.0%} of {low} cells: "
                "a model that uses missing values (gradient boosting) can learn which cells were measured; "
                "imputing models (logistic regression, random forest) see the imputed value instead"
            )
    return risks


def _caveat_risks(features: list[str], manifest: dict[str, Any], spec: DatasetSpec) -> list[str]:
    """The manifest's caveats: of the features in this dataset (a risk) and of those its spec left out."""
    out = []
    for name, entry in manifest["features"].items():
        caveat = entry.get("caveat")
        if not caveat:
            continue
        if name in features:
            out.append(f"{name}: {caveat}")
        elif any(fnmatch.fnmatch(name, p) for p in spec.exclude):
            out.append(f"{name} is left out of this dataset (exclude): {caveat}")
    return out


def _card(
    spec: DatasetSpec,
    dataset_id: str,
    version: str,
    manifest: dict[str, Any],
    labels: LabelSet,
    label_col: str,
    features: list[str],
    leaks: list[str],
    steps: list[dict[str, Any]],
    data: pl.DataFrame,
    split: pl.DataFrame,
    categories: dict[str, list[str]],
) -> dict[str, Any]:
    joined = data.select("nucleus_id", label_col).join(split, on="nucleus_id")
    per_fold = {}
    all_classes = sorted(data[label_col].unique().to_list())
    missing: dict[str, list[str]] = {}
    for fold in [*fold_names(split), *(["locked"] if (split["locked"] == "test").any() else [])]:
        per_fold[fold] = {
            role: dict(sorted(joined.filter(pl.col(fold) == role).group_by(label_col).len().iter_rows()))
            for role in ("train", "test", "buffer")
        }
        absent = [c for c in all_classes if c not in per_fold[fold]["test"]]
        if absent:
            missing[fold] = absent
    origins = {f: manifest["features"][f]["origin"] for f in features}
    risks = []
    synthetic = [f for f, o in origins.items() if o == "synthetic"]
    if synthetic:
        risks.append(
            f"{len(synthetic)} features are computed from synthetic tables: results on them say nothing "
            f"about real cells and must not be reported as headline numbers"
        )
    if spec.split.strategy == "stratified":
        risks.append(
            "random (stratified) folds put neighbouring cells in train and test: spatially correlated "
            "features (depth, local synapse statistics) can inflate scores; prefer the spatial split"
        )
    if spec.split.strategy == "spatial":
        buffer = spec.split.buffer_um if spec.split.buffer_um is not None else spec.split.block_um
        risks.append(
            f"spatial blocks of {spec.split.block_um:g} um with a {buffer:g} um buffer: no training cell is "
            f"closer than {buffer:g} um (x/z) to a test cell of the same fold; depth (y) is not blocked"
        )
    partner_tables = {
        t
        for f in features
        for t in manifest["features"][f].get("inputs", [])
        if "frac_exc" in f or "frac_inh" in f or "partner_labelled" in f
    }
    if partner_tables:
        risks.append(
            f"partner-class features use label table(s) {sorted(partner_tables)}; they are not the "
            f"label's tables, but model labels of partners can carry the same biases"
        )
    if leaks:
        risks.append(f"features explicitly allowed despite sharing the label's tables: {leaks}")
    for fold, absent in missing.items():
        risks.append(f"{fold} has no test cell of {absent}: its per-fold scores ignore those classes")
    layer = [f for f in features if f in LAYER_FEATURES]
    if layer:
        risks.append(
            f"{layer} carry the cell's laminar position: a model can learn the layer rather than the type "
            f"(the report trains one model without them)"
        )
    if any(f.startswith("pos_") for f in features):
        risks.append("absolute positions are features: a model can memorise places instead of learning cells")
    risks += _caveat_risks(features, manifest, spec)
    risks += class_dependent_coverage(data, label_col, features)
    return {
        "dataset_id": dataset_id,
        "name": spec.name,
        "spec": spec.as_dict(),
        "feature_version": version,
        "source": manifest["source"],
        "label": {
            "source": labels.spec.name,
            "kind": labels.spec.kind,
            "level": spec.level,
            "column": label_col,
            "tables": labels.tables_used,
            "description": labels.spec.description,
            "unmapped_spellings": labels.unmapped,
            "conflicting_nuclei_dropped": labels.conflicting_nuclei,
        },
        "cells": data.height,
        "features": features,
        "feature_origins": origins,
        "categories": categories,
        "filters": steps,
        "class_counts": dict(sorted(data.group_by(label_col).len().iter_rows())),
        "folds": per_fold,
        "folds_missing_classes": missing,
        "layer_features": layer,
        "leakage_risks": risks,
        "synapse_coverage": _synapse_coverage(data, manifest),
    }


def _synapse_coverage(data: pl.DataFrame, manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The dataset's cells with synapse features, beside the version-wide count and reasons."""
    version_wide = manifest.get("synapse_coverage")
    if not version_wide:
        return None
    in_dataset = int(data.get_column("syn_in_count").is_not_null().sum()) if "syn_in_count" in data.columns else None
    return {"dataset_cells": data.height, "dataset_with_synapse_features": in_dataset, "version": version_wide}


def _md(text: object) -> str:
    """Text from data (feature, class, table names) made inert in Markdown shown as HTML: no tags, no table breaks."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")


def render_card(card: dict[str, Any]) -> str:
    label, split = card["label"], card["spec"]["split"]
    origin_counts = ", ".join(
        f"{o} {sum(1 for v in card['feature_origins'].values() if v == o)}" for o in ("real", "derived", "synthetic")
    )
    lines = [
        f"# Dataset `{card['name']}` ({card['dataset_id']})",
        "",
        f"- feature version: `{card['feature_version']}` ({card['source'].get('datastack')}, "
        f"materialization {card['source'].get('materialization_version') or card['source'].get('version_label')})",
        f"- label: `{label['column']}` — {label['kind']} source `{label['source']}` "
        f"({', '.join(label['tables'])}), level {label['level']}",
        f"- cells: {card['cells']:,}; features: {len(card['features'])} ({origin_counts})",
        f"- split: {split['strategy']}, {len(fold_names_of(card))} folds, seed {split['seed']}"
        + (f", locked test set {split.get('locked_fraction', 0):.0%} of cells" if "locked" in card["folds"] else ""),
        "",
        "## Filters",
        "",
        "| step | cells |",
        "|---|---|",
        *[f"| {s['step']} | {s['cells']:,} |" for s in card["filters"]],
        "",
        "## Class counts per fold (train / test / buffer)",
        "",
    ]
    classes = list(card["class_counts"])
    lines += ["| fold | " + " | ".join(_md(c) for c in classes) + " |", "|---|" + "---|" * len(classes)]
    for fold, roles in card["folds"].items():
        cells = [" / ".join(str(roles[r].get(c, 0)) for r in ("train", "test", "buffer")) for c in classes]
        lines.append(f"| {fold} | " + " | ".join(cells) + " |")
    coverage = card.get("synapse_coverage")
    if coverage and coverage.get("dataset_with_synapse_features") is not None:
        v = coverage["version"]
        lines += [
            "",
            f"Synapse features: {coverage['dataset_with_synapse_features']:,} of {coverage['dataset_cells']:,} cells "
            f"of this dataset; in the whole feature version {v['with_synapse_features']:,} of {v['cells']:,} "
            f"({v['no_synapses']:,} with no synapse in the table), none for {v['multi_soma']:,} multi-soma cells, "
            f"{v['root_0']:,} with root 0"
            + (
                f" and {v['outside_fetched_cells']:,} outside the cells fetched ({v['cells_from']})"
                if v.get("cells_from")
                else ""
            )
            + ".",
        ]
    if label.get("conflicting_nuclei_dropped"):
        lines += ["", f"{label['conflicting_nuclei_dropped']:,} nuclei with conflicting labels were dropped."]
    risks = [f"- {_md(r)}" for r in card["leakage_risks"]] or ["- none identified"]
    lines += ["", "## Known leakage risks", "", *risks, "", "## Features", "", "| feature | origin |", "|---|---|"]
    lines += [f"| {_md(f)} | {o} |" for f, o in card["feature_origins"].items()]
    return "\n".join(lines) + "\n"


def fold_names_of(card: dict[str, Any]) -> list[str]:
    return [f for f in card["folds"] if f.startswith("fold_")]
