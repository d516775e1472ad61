"""Model-ready datasets: a feature version + a label column + filters + a split + a seed, written once.

    datasets/<name>/<dataset_id>/data.parquet    nucleus_id, root_id, the label, the features
    datasets/<name>/<dataset_id>/splits.parquet  nucleus_id, fold_0..fold_k-1 roles (train/test/buffer)
    datasets/<name>/<dataset_id>/card.json       everything needed to reproduce and judge it
    datasets/<name>/<dataset_id>/CARD.md         the same for people

The id is a content hash of (feature version, spec), so the same spec and seed give the same files, and
building again is a no-op. A dataset refuses features that leak the label: label columns, and features
computed from the label's own tables (e.g. partner composition from the same model table, or a model's
own prediction column), unless the spec names them in `allow_leaky`.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from cellfeatures import display
from cellfeatures.atomic import publish_directory, write_file_atomically
from cellfeatures.errors import CellFeaturesError, ConfigError, StoreError
from cellfeatures.identity import attributable_expr
from cellfeatures.labels import LabelSet, label_sources, load_labels
from cellfeatures.splits import SplitSpec, fold_names, make_split
from cellfeatures.store import FeatureStore
from cellfeatures.vocab import EXC, INH

FILTERS = {
    "neurons": "label class is excitatory or inhibitory",
    "attributable": "the nucleus has its own root (no merge, inside the segmentation)",
    "proofread_dendrite": "dendrite proofread (proof_status_dendrite)",
    "proofread_axon": "axon proofread (proof_status_axon)",
}
EXPORT_FORMATS = ("parquet", "csv", "arrow", "npz")


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def check_name(name: str, what: str) -> str:
    """A name that becomes a directory or file name: letters, digits, `_ . -`; never a path (`../x`, `/x`)."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise ConfigError(
            f"{what} {name!r} is not allowed: use letters, digits, '_', '.', '-' (it names a directory; "
            f"paths such as '../x' or '/x' would escape the root)"
        )
    return name


class LeakageError(CellFeaturesError):
    """The dataset's features would reveal its label."""


# A dataset's split when its spec says nothing: the headline settings of configs/sample.toml (spatial,
# 5 folds, 50 um blocks, 15 um buffer; SplitSpec's defaults) plus the locked test slab.
HEADLINE_SPLIT: dict[str, Any] = {"locked_fraction": 0.15}


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    label: str = "manual"
    level: str = "type"
    feature_version: str = "latest"
    filters: tuple[str, ...] = ("neurons", "attributable")
    origins: tuple[str, ...] = ("real", "derived")  # synthetic features only when asked for
    families: tuple[str, ...] = ()
    include: tuple[str, ...] = ()  # explicit feature names or globs (after origin/family selection)
    exclude: tuple[str, ...] = ("pos_*", "qc_*")  # positions would let a model memorise places; qc flags are constant
    min_class_size: int = 5
    allow_leaky: tuple[str, ...] = ()
    split: SplitSpec = field(default_factory=lambda: SplitSpec(**HEADLINE_SPLIT))

    def __post_init__(self) -> None:
        check_name(self.name, "dataset name")

    @classmethod
    def from_dict(cls, name: str, block: dict[str, Any]) -> DatasetSpec:
        block = dict(block)
        split_block = block.pop("split", {})
        if split_block.get("column_box_um") is not None:
            split_block["column_box_um"] = tuple(split_block["column_box_um"])
        try:
            split = SplitSpec(**{**HEADLINE_SPLIT, **split_block})
            tuples = {k: tuple(v) for k, v in block.items() if isinstance(v, list)}
            return cls(name=name, split=split, **{**block, **tuples})
        except TypeError as exc:
            raise ConfigError(f"[dataset.{name}]: {exc}") from None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def proofread_expr(name: str, columns: list[str], version: str) -> pl.Expr:
    """The `proofread_dendrite` / `proofread_axon` filter; a version without the proofreading family is refused."""
    column = "proof_status_" + name.split("_")[1]
    if column not in columns:
        raise ConfigError(f"filter {name!r} needs the proofreading family in feature version {version}")
    return pl.col(column).fill_null(False)


def _select_features(manifest: dict[str, Any], spec: DatasetSpec) -> list[str]:
    chosen = []
    for name, info in manifest["features"].items():
        if info["origin"] not in spec.origins:
            continue
        if spec.families and info["family"] not in spec.families:
            continue
        if spec.include and not any(fnmatch.fnmatch(name, p) for p in spec.include):
            continue
        if any(fnmatch.fnmatch(name, p) for p in spec.exclude):
            continue
        chosen.append(name)
    if not chosen:
        raise ConfigError(
            f"dataset {spec.name!r}: the feature selection is empty (origins {spec.origins}, "
            f"families {spec.families}, include {spec.include}, exclude {spec.exclude})"
        )
    return chosen


def leakage_check(features: list[str], manifest: dict[str, Any], labels: LabelSet, allow: tuple[str, ...]) -> list[str]:
    """Features that reveal the label: label columns, computed from the label source's tables, or computed
    from tables a generator made by looking at the label's tables (`conditioned_on` in their provenance)."""
    label_tables = set(labels.tables_used) | set(labels.spec.tables)
    leaks, why = [], {}
    for name in features:
        inputs = set(manifest["features"][name].get("inputs", []))
        seen = {t for i in inputs for t in manifest.get("inputs", {}).get(i, {}).get("conditioned_on", [])}
        if name.startswith("label_"):
            why[name] = "a label column"
        elif inputs & label_tables:
            why[name] = f"computed from the label's table(s) {sorted(inputs & label_tables)}"
        elif seen & label_tables:
            why[name] = (
                f"computed from generated tables whose generator saw the label's table(s) {sorted(seen & label_tables)}"
            )
        else:
            continue
        leaks.append(name)
    unallowed = [f for f in leaks if f not in allow]
    if unallowed:
        shown = "; ".join(f"{f}: {why[f]}" for f in unallowed[:8]) + (" ..." if len(unallowed) > 8 else "")
        raise LeakageError(
            f"{len(unallowed)} feature(s) would let a model read the answer ({shown}). Exclude them "
            f"(exclude = [...], or origins without 'synthetic') or, if you know why it is fine, list them in "
            f"allow_leaky."
        )
    return leaks


# Features that carry the cell's laminar position: a model using them can "learn the layer" rather than
# the type. Reports name them and train one model without them.
LAYER_FEATURES = ("soma_depth_um", "pos_y_nm")


@dataclass
class Dataset:
    """A built dataset on disk. Its files never change once published, so each is read once.

    Example (on the sample)::

        >>> ds = cf.Dataset.load("column_types")
        >>> x, y, names = ds.xy(0, "train")
        >>> x.shape[1] == len(names) and len(y) == x.shape[0]
        True
        >>> sorted(ds.frame()["fold_0"].unique())
        ['buffer', 'locked', 'test', 'train']
    """

    path: Path

    @classmethod
    def load(cls, name: str, root: str | os.PathLike[str] | None = None) -> Dataset:
        """A dataset by name (the most recently built), `<name>/<id>`, id prefix or path.

        Without `root`, the datasets root of the project's config (found from the working directory up).
        """
        if root is None:
            from cellfeatures.config import default_config

            root = default_config().datasets_root
        return find_dataset(name, root)

    def __repr__(self) -> str:
        return display.dataset_text(self.card, self.path)

    def _repr_html_(self) -> str:
        return display.dataset_html(self.card, self.path)

    @cached_property
    def card(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.path / "card.json").read_text())
        return data

    @property
    def id(self) -> str:
        return str(self.card["dataset_id"])

    @property
    def features(self) -> list[str]:
        return list(self.card["features"])

    @property
    def label(self) -> str:
        return str(self.card["label"]["column"])

    @cached_property
    def data(self) -> pl.DataFrame:
        return pl.read_parquet(self.path / "data.parquet")

    @cached_property
    def splits(self) -> pl.DataFrame:
        return pl.read_parquet(self.path / "splits.parquet")

    @property
    def folds(self) -> list[str]:
        return fold_names(self.splits)

    @cached_property
    def _frame(self) -> pl.DataFrame:
        return self.data.join(self.splits, on="nucleus_id", how="left")

    def frame(self) -> pl.DataFrame:
        """Data with the split roles joined (one column per fold)."""
        return self._frame

    @property
    def has_locked(self) -> bool:
        """True when the split holds a locked test set (see splits.py)."""
        return "locked" in self.splits.columns and bool((self.splits["locked"] == "test").any())

    def fold(self, k: int | str = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
        """(train, test) frames of fold k, or of the locked evaluation (k="locked"); buffer cells are in neither."""
        f = self.frame()
        role = pl.col(k if isinstance(k, str) else f"fold_{k}")
        return f.filter(role == "train"), f.filter(role == "test")

    def design(self, frame: pl.DataFrame | None = None) -> tuple[np.ndarray, list[str]]:
        """Numeric design matrix: floats and ints as is, booleans 0/1, strings one-hot (`name=value`); null -> NaN."""
        frame = self.data if frame is None else frame
        categories = self.card.get("categories", {})
        columns, names = [], []
        for name in self.features:
            col = frame[name]
            if col.dtype == pl.String:
                for value in categories.get(name, []):
                    columns.append((col == value).cast(pl.Float64).fill_null(float("nan")).to_numpy())
                    names.append(f"{name}={value}")
            else:
                columns.append(col.cast(pl.Float64).fill_null(float("nan")).to_numpy())
                names.append(name)
        return np.column_stack(columns) if columns else np.zeros((frame.height, 0)), names

    def xy(self, k: int | str | None = None, part: str = "train") -> tuple[np.ndarray, np.ndarray, list[str]]:
        """X, y and feature names: the whole dataset (k=None), one part of fold k, or of k="locked"."""
        frame = self.data if k is None else dict(zip(("train", "test"), self.fold(k), strict=True))[part]
        x, names = self.design(frame)
        return x, frame[self.label].to_numpy(), names

    def to_pandas(self) -> Any:
        return self.frame().to_pandas()

    def export(self, fmt: str, out: str | os.PathLike[str]) -> Path:
        """Write the dataset (data + split roles) as parquet, csv, arrow (IPC) or npz (X, y, names, folds).

        Atomic: written under a hidden name and renamed, so a full disk never leaves a truncated file.
        """
        if fmt not in EXPORT_FORMATS:
            raise ConfigError(f"export format must be one of {EXPORT_FORMATS}, got {fmt!r}")
        frame = self.frame()

        def write(tmp: Path) -> None:
            if fmt == "parquet":
                frame.write_parquet(tmp)
            elif fmt == "csv":
                frame.write_csv(tmp)
            elif fmt == "arrow":
                frame.write_ipc(tmp)
            else:
                x, names = self.design(frame)
                arrays: dict[str, Any] = {f: frame[f].to_numpy().astype(str) for f in self.folds}
                arrays.update(
                    X=x,
                    y=frame[self.label].to_numpy().astype(str),
                    feature_names=np.array(names),
                    nucleus_id=frame["nucleus_id"].to_numpy(),
                )
                with tmp.open("wb") as fh:
                    np.savez_compressed(fh, **arrays)

        return write_file_atomically(Path(out), write)


def _dataset_id(version: str, spec: DatasetSpec) -> str:
    blob = json.dumps({"version": version, "spec": spec.as_dict(), "format": 1}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def build_dataset(
    store: FeatureStore,
    spec: DatasetSpec,
    root: str | os.PathLike[str] | None = None,
    source: Any = None,
    label_blocks: dict[str, Any] | None = None,
) -> Dataset:
    """Build (or find) a dataset; atomic like feature versions.

    `root` defaults to the datasets root of the store's config (or of the project's config).
    """
    if root is None:
        from cellfeatures.config import default_config

        root = (store.config or default_config()).datasets_root
    version = store.resolve(spec.feature_version)
    manifest = store.manifest(version)
    dataset_id = _dataset_id(version, spec)
    final = Path(root) / spec.name / dataset_id
    if (final / "card.json").exists():
        return Dataset(final)
    if label_blocks is None and store.config is not None:
        label_blocks = store.config.raw.get("labels")
    sources = label_sources(label_blocks)
    if spec.label not in sources:
        raise ConfigError(f"unknown label source {spec.label!r}; known: {', '.join(sources)}")
    if source is None:
        source = store.source_of(version, sources[spec.label].tables)
    labels = load_labels(source, sources[spec.label], strict=True)
    label_col = labels.column(spec.level)
    features = _select_features(manifest, spec)
    leaks = leakage_check(features, manifest, labels, spec.allow_leaky)

    matrix = store.load(version)
    attributable = matrix.filter(attributable_expr())["nucleus_id"]
    frame = matrix.join(labels.at(spec.level), on="nucleus_id", how="inner")
    classes = labels.frame.select("nucleus_id", pl.col("class").alias("_class"))
    frame = frame.join(classes, on="nucleus_id", how="left")
    steps = [{"step": f"cells with a {spec.label} label at level {spec.level}", "cells": frame.height}]
    for name in spec.filters:
        if name == "neurons":
            frame = frame.filter(pl.col("_class").is_in([EXC, INH]))
        elif name == "attributable":  # from the matrix itself: every nucleus of the version is in it
            frame = frame.filter(pl.col("nucleus_id").is_in(attributable.implode()))
        elif name in ("proofread_dendrite", "proofread_axon"):
            frame = frame.filter(proofread_expr(name, frame.columns, version))
        else:
            raise ConfigError(f"unknown filter {name!r}; known: {', '.join(FILTERS)}")
        steps.append({"step": f"filter {name}: {FILTERS[name]}", "cells": frame.height})
    counts = frame.group_by(label_col).len()
    rare = sorted(counts.filter(pl.col("len") < spec.min_class_size)[label_col].to_list())
    frame = frame.filter(~pl.col(label_col).is_in(rare))
    dropped = f"classes with fewer than {spec.min_class_size} cells dropped: {rare}"
    steps.append({"step": dropped, "cells": frame.height})
    if frame.height == 0:
        raise StoreError(f"dataset {spec.name!r} has no cells left after filtering: {steps}")

    position = [c for c in ("pos_x_nm", "pos_y_nm", "pos_z_nm") if c in frame.columns]
    split = make_split(frame.select("nucleus_id", "root_id", *position, label_col), label_col, spec.split)
    for fold in fold_names(split):
        roles = split[fold].value_counts()
        count = dict(zip(roles[fold].to_list(), roles["count"].to_list(), strict=True))
        if not count.get("train") or not count.get("test"):
            raise ConfigError(
                f"dataset {spec.name!r}: {fold} has {count.get('train', 0)} training and {count.get('test', 0)} "
                f"test cells ({count.get('buffer', 0)} buffered) — {frame.height:,} cells cannot fill "
                f"{spec.split.folds} folds of {spec.split.block_um:g} um blocks with a "
                f"{spec.split.buffer_um if spec.split.buffer_um is not None else spec.split.block_um:g} um buffer; "
                f"use smaller blocks, a smaller buffer or fewer folds"
            )
    data = frame.select("nucleus_id", "root_id", label_col, *features).sort("nucleus_id")
    categories = {f: sorted(data[f].drop_nulls().unique().to_list()) for f in features if data[f].dtype == pl.String}
    card = _card(
        spec, dataset_id, version, manifest, labels, label_col, features, leaks, steps, data, split, categories
    )

    def write(tmp: Path) -> None:
        data.write_parquet(tmp / "data.parquet", compression="zstd")
        split.write_parquet(tmp / "splits.parquet", compression="zstd")
        (tmp / "card.json").write_text(json.dumps(card, indent=2, default=str) + "\n")
        (tmp / "CARD.md").write_text(render_card(card))

    publish_directory(final, write, ready="card.json")
    return Dataset(final)


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
    }


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
    lines += ["| fold | " + " | ".join(classes) + " |", "|---|" + "---|" * len(classes)]
    for fold, roles in card["folds"].items():
        cells = [" / ".join(str(roles[r].get(c, 0)) for r in ("train", "test", "buffer")) for c in classes]
        lines.append(f"| {fold} | " + " | ".join(cells) + " |")
    risks = [f"- {r}" for r in card["leakage_risks"]] or ["- none identified"]
    lines += ["", "## Known leakage risks", "", *risks, "", "## Features", "", "| feature | origin |", "|---|---|"]
    lines += [f"| {f} | {o} |" for f, o in card["feature_origins"].items()]
    return "\n".join(lines) + "\n"


def fold_names_of(card: dict[str, Any]) -> list[str]:
    return [f for f in card["folds"] if f.startswith("fold_")]


def find_dataset(name_or_path: str, root: str | os.PathLike[str] = "datasets") -> Dataset:
    """A dataset by path, by `<name>/<id>`, by id prefix, or by name (the most recently built)."""
    path = Path(name_or_path)
    if (path / "card.json").exists():
        return Dataset(path)
    root = Path(root)
    candidates = [p for p in root.glob("*/*") if (p / "card.json").exists() and not p.name.startswith(".")]
    matches = [
        p
        for p in candidates
        if p.parent.name == name_or_path
        or p.name.startswith(name_or_path)
        or f"{p.parent.name}/{p.name}" == name_or_path
    ]
    if not matches:
        import difflib

        names = sorted({p.parent.name for p in candidates})
        close = difflib.get_close_matches(name_or_path, names, n=1)
        raise StoreError(
            f"no dataset {name_or_path!r} under {root}{f' (did you mean {close[0]!r}?)' if close else ''} (have: "
            f"{', '.join(sorted(f'{p.parent.name}/{p.name}' for p in candidates)) or 'none'})"
        )
    return Dataset(max(matches, key=lambda p: (p / "card.json").stat().st_mtime))
