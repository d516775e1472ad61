"""Predict every cell: fit on all labelled cells of a dataset, write a CAVE-style cell-type table + model card.

Which cells: every cell of the dataset's feature version that passes the dataset's filters that do not
need a label (`attributable`, `proofread_*`). The `neurons` filter needs the label's class, so
unlabelled cells cannot be filtered by it: they are all predicted, and the card says so.

The table follows a CAVE reference cell-type table (id, valid, target_id = nucleus id, pt_root_id of
the feature version's materialization, classification_system, cell_type), plus the harmonised class /
subclass / type, `p_<class>` per class (calibrated: the method the baseline report chose on held-out
cross-validated predictions, see calibration.py), `max_p`, `max_p_uncalibrated`, `out_of_range` (a
feature value outside the training range), the shift measures of shift.py (`distance_to_labelled_um`,
`outside_labelled_region`, `feature_distance`, `feature_shift`: the prediction is an extrapolation)
and `labelled` (the cell was a training cell). Because it is a cell-type table,
`cellfeatures labels early_model <file>` compares it with the existing model tables.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandera.polars as pa
import polars as pl

from cellfeatures._util.atomic import publish_directory
from cellfeatures.benchmark.leaderboard import Leaderboard
from cellfeatures.datasets.selection import proofread_expr
from cellfeatures.errors import ConfigError, StoreError
from cellfeatures.identity import attributable_expr
from cellfeatures.schemas import validate
from cellfeatures.vocab import LEVELS, harmonise_expr


class PredictionTable(pa.DataFrameModel):
    """What `cellfeatures predict` writes: one row per predicted cell."""

    id: int = pa.Field(unique=True, ge=1)
    valid: bool
    target_id: int = pa.Field(unique=True)
    pt_root_id: int = pa.Field(ge=0)
    classification_system: str
    cell_type: str
    max_p: float = pa.Field(ge=0, le=1)
    max_p_uncalibrated: float = pa.Field(ge=0, le=1)
    out_of_range: bool
    distance_to_labelled_um: float = pa.Field(ge=0, nullable=True)
    outside_labelled_region: bool
    feature_distance: float = pa.Field(ge=0, nullable=True)
    feature_shift: bool
    labelled: bool

    class Config:
        strict = False
        coerce = True


def cells_to_predict(store: Any, dataset: Any) -> tuple[pl.DataFrame, list[str]]:
    """The feature matrix rows passing the dataset's label-free filters, and notes on what was applied."""
    version = dataset.card["feature_version"]
    matrix = store.load(version)
    notes = []
    for name in dataset.card["spec"]["filters"]:
        if name == "attributable":
            matrix = matrix.filter(attributable_expr())
        elif name in ("proofread_dendrite", "proofread_axon"):
            matrix = matrix.filter(proofread_expr(name, matrix.columns, version))
        elif name == "neurons":
            notes.append("the `neurons` filter needs a label: unlabelled cells of every class are predicted")
    return matrix, notes


POSITIONS = ("pos_x_nm", "pos_y_nm", "pos_z_nm")


def load_report(report: Path | None) -> Leaderboard | None:
    """The saved report at `report` (read once per `predict`: the table and the card both use it), or None."""
    if report is None or not (report / "entries.json").exists():
        return None
    return Leaderboard.load(report)


def _board_of(saved: Leaderboard | None, dataset: Any) -> Leaderboard | None:
    """This dataset's board of a report, or None when the report does not cover it."""
    if saved is None:
        return None
    try:
        return saved.board_of(dataset)
    except StoreError:
        return None


def best_model_name(report: Path | None, dataset: Any) -> str | None:
    """The report's best model on this dataset (by cross-validation), if `predict` can refit it by name."""
    from cellfeatures.benchmark.run import TRAINED_MODELS

    try:
        board = _board_of(load_report(report), dataset)
    except StoreError:
        return None
    best = board.best() if board is not None else None
    return best.entry if best is not None and best.entry in TRAINED_MODELS else None


def _positions_um(frame: pl.DataFrame) -> np.ndarray | None:
    if not all(c in frame.columns for c in POSITIONS):
        return None
    return frame.select(pl.col(c).cast(pl.Float64) / 1000.0 for c in POSITIONS).to_numpy()


def predict_cells(
    store: Any, dataset: Any, model: Any, model_name: str, saved: Leaderboard | None = None
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Fit `model` (a name of baselines.TRAINED_MODELS or an estimator) on all labelled cells; predict all.

    With a baseline report (`saved`) holding this model's held-out calibration, the probabilities are
    calibrated by it; without one they are the estimator's own and the card says so."""
    from sklearn.base import clone
    from threadpoolctl import threadpool_limits

    from cellfeatures.benchmark.calibration import apply_calibrator
    from cellfeatures.benchmark.models import make_model
    from cellfeatures.benchmark.run import TRAINED_MODELS
    from cellfeatures.benchmark.shift import shift_measures

    x_train, y_train, names = dataset.xy()
    if isinstance(model, str):
        if model not in TRAINED_MODELS:
            raise ConfigError(f"unknown model {model!r}; known: {', '.join(TRAINED_MODELS)}")
        estimator = make_model(model, names, seed=0)
    else:
        estimator = clone(model)
    cells, notes = cells_to_predict(store, dataset)
    x_all, _ = dataset.design(cells)
    with threadpool_limits(limits=1):
        estimator.fit(x_train, y_train)
        raw = estimator.predict_proba(x_all)
    classes = [str(c) for c in estimator.classes_]
    board = _board_of(saved, dataset)
    entry = next((e for e in board.entries if e.entry == model_name), None) if board is not None else None
    calibration = entry.calibration if entry is not None and entry.calibration else None
    if calibration is not None and calibration.get("classes") == classes:
        proba = apply_calibrator(calibration["calibrator"], raw)
    else:
        why = "the report's calibration is not for these classes" if calibration else "no baseline report holds one"
        proba, calibration = raw, None
        notes.append(f"probabilities are not calibrated: {why}")
    lo, hi = np.nanmin(x_train, axis=0), np.nanmax(x_train, axis=0)
    outside = ((x_all < lo) | (x_all > hi)) & ~np.isnan(x_all)
    level = dataset.card["label"]["level"]
    pred = np.array(classes, dtype=object)[proba.argmax(axis=1)]
    labelled = cells["nucleus_id"].is_in(dataset.data["nucleus_id"].implode())
    training_cells = dataset.data.select("nucleus_id").join(cells, on="nucleus_id", how="left", maintain_order="left")
    train_pos, all_pos = _positions_um(training_cells), _positions_um(cells)
    if train_pos is None or all_pos is None or np.isnan(train_pos).any():
        notes.append("no nucleus positions: distance_to_labelled_um is empty and outside_labelled_region False")
        train_pos, all_pos = np.zeros((len(x_train), 1)), np.zeros((len(x_all), 1))
    shift, limits = shift_measures(train_pos, all_pos, x_train, x_all, labelled.to_numpy())
    system = f"cellfeatures_{model_name}_{level}"
    table = pl.DataFrame(
        {
            "id": np.arange(1, cells.height + 1),
            "valid": np.ones(cells.height, dtype=bool),
            "target_id": cells["nucleus_id"],
            "pt_root_id": cells["root_id"],
            "classification_system": [system] * cells.height,
            "cell_type": pred.astype(str),
            **{f"p_{c}": proba[:, j] for j, c in enumerate(classes)},
            "max_p": proba.max(axis=1),
            "max_p_uncalibrated": raw.max(axis=1),
            "out_of_range": outside.any(axis=1),
            **shift,
            "labelled": labelled,
        }
    )
    if level in LEVELS:
        table = table.with_columns(*(harmonise_expr(pl.col("cell_type"), lv).alias(lv) for lv in LEVELS))
    table = validate(table, PredictionTable, f"predictions of {model_name}")
    unlabelled = table.filter(~pl.col("labelled"))
    info = {
        "model": model_name,
        "classification_system": system,
        "cells_predicted": table.height,
        "cells_labelled": int(table["labelled"].sum()),
        "out_of_range": int(table["out_of_range"].sum()),
        "outside_labelled_region": int(unlabelled["outside_labelled_region"].sum()),
        "feature_shift": int(unlabelled["feature_shift"].sum()),
        "shift_thresholds": limits,
        "calibration": None
        if calibration is None
        else {k: calibration[k] for k in ("method", "ece_before", "ece_after", "held_out", "cells", "groups")},
        "median_max_p": {
            "calibrated": float(np.median(proba.max(axis=1))),
            "uncalibrated": float(np.median(raw.max(axis=1))),
        },
        "classes": classes,
        "notes": notes,
        "features": names,
    }
    return table, info


def model_card(
    dataset: Any, info: dict[str, Any], report: Path | None, saved: Leaderboard | None = None
) -> dict[str, Any]:
    """Feature version, dataset, CV scores with intervals, calibration and known confusions (from the report)."""
    card: dict[str, Any] = {
        **info,
        "dataset": dataset.card["name"],
        "dataset_id": dataset.id,
        "feature_version": dataset.card["feature_version"],
        "source": dataset.card["source"],
        "label": dataset.card["label"]["column"],
        "leakage_risks": dataset.card["leakage_risks"],
    }
    if report is None or not (report / "entries.json").exists():
        card["cross_validation"] = "no baseline report for this dataset yet: run `cellfeatures baseline` first"
        return card
    saved = saved if saved is not None else Leaderboard.load(report)
    board = saved.frame().filter((pl.col("dataset_id") == dataset.id) & (pl.col("entry") == info["model"]))
    if board.height:
        row = board.row(0, named=True)
        card["cross_validation"] = {
            k: row[k] for k in row if k.split("_")[0] in ("accuracy", "balanced", "macro", "ece", "locked")
        }
    preds = saved.predictions().filter((pl.col("dataset_id") == dataset.id) & (pl.col("entry") == info["model"]))
    if preds.height:
        first = preds.filter(pl.col("seed") == preds["seed"].min())
        wrong = first.filter(pl.col("y_true") != pl.col("y_pred")).group_by("y_true", "y_pred").len()
        card["known_confusions"] = [
            {"true": t, "predicted": p, "cells": n} for t, p, n in wrong.sort("len", descending=True).head(8).rows()
        ]
    card["report"] = str(report)
    return card


def render_model_card(card: dict[str, Any]) -> str:
    lines = [
        f"# Model card: {card['model']} on `{card['dataset']}` ({card['dataset_id']})",
        "",
        f"- feature version `{card['feature_version']}`; label `{card['label']}`; features: {len(card['features'])}",
        f"- cells predicted: {card['cells_predicted']:,} (of them training cells: {card['cells_labelled']:,}); "
        f"with a feature outside the training range: {card['out_of_range']:,}",
        f"- of the {card['cells_predicted'] - card['cells_labelled']:,} cells without a label: "
        f"{card['outside_labelled_region']:,} lie outside the labelled region (nearest training cell farther "
        f"than {_number(card['shift_thresholds']['distance_to_labelled_um'])} µm, the 99th percentile of the "
        f"training cells' own nearest-neighbour distances) and {card['feature_shift']:,} are shifted in feature "
        f"space (standardised distance over {_number(card['shift_thresholds']['feature_distance'])}): their "
        f"predictions extrapolate; filter on `outside_labelled_region` / `feature_shift`",
        _calibration_line(card),
        "- the cross-validated scores below come from folds that trained on fewer cells than this model",
        *[f"- note: {n}" for n in card["notes"]],
        "",
        "## Cross-validated scores",
        "",
    ]
    cv = card.get("cross_validation")
    if isinstance(cv, dict):
        lines += [f"- {k}: {v:.4f}" if isinstance(v, float) else f"- {k}: {v}" for k, v in cv.items()]
    else:
        lines.append(f"- {cv}")
    if card.get("known_confusions"):
        lines += ["", "## Known confusions (first seed, cross-validated)", ""]
        lines += [f"- {c['true']} predicted as {c['predicted']}: {c['cells']} cells" for c in card["known_confusions"]]
    lines += ["", "## Leakage risks of the training dataset", "", *[f"- {r}" for r in card["leakage_risks"]]]
    return "\n".join(lines) + "\n"


def _number(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) and value == value else "–"


def _calibration_line(card: dict[str, Any]) -> str:
    c = card.get("calibration")
    medians = card["median_max_p"]
    if not c:
        return f"- probabilities not calibrated (median max_p {medians['uncalibrated']:.3f})"
    return (
        f"- probabilities calibrated by {c['method']} (chosen by held-out ECE on the cross-validated predictions "
        f"of {c['cells']:,} cells, {c['groups']} folds of whole spatial blocks): ECE {c['ece_before']:.3f} "
        f"before, {c['ece_after']:.3f} after; median max_p {medians['uncalibrated']:.3f} before, "
        f"{medians['calibrated']:.3f} after"
    )


def write_predictions(store: Any, dataset: Any, model: Any, model_name: str, report: Path | None = None) -> Path:
    """Predict every cell and publish `<dataset>/predictions/<model>/` atomically; returns the table's path."""
    saved = load_report(report)
    table, info = predict_cells(store, dataset, model, model_name, saved)
    card = model_card(dataset, info, report, saved)
    name = info["classification_system"]
    final = dataset.path / "predictions" / model_name

    def write(tmp: Path) -> None:
        table.write_parquet(tmp / f"{name}.parquet", compression="zstd")
        (tmp / "model_card.json").write_text(json.dumps(card, indent=2, default=str) + "\n")
        (tmp / "MODEL_CARD.md").write_text(render_model_card(card))

    _drop_if_stale(final, card)
    publish_directory(final, write, ready="model_card.json")  # the same card: the same table, kept
    return final / f"{name}.parquet"


def _drop_if_stale(final: Path, card: dict[str, Any]) -> None:
    """Remove a published prediction folder whose card differs from `card` (e.g. a newer report brought a
    different calibration): renamed away first, so a reader sees the old folder or none, never a mix."""
    published = final / "model_card.json"
    if not published.exists():
        return
    try:
        same = json.loads(published.read_text()) == json.loads(json.dumps(card, default=str))
    except (OSError, ValueError):
        same = False
    if not same:
        stale = final.parent / f".stale-{final.name}-{os.getpid()}"
        os.rename(final, stale)
        shutil.rmtree(stale, ignore_errors=True)
