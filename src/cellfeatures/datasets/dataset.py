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

import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from cellfeatures import display
from cellfeatures._util.atomic import write_file_atomically
from cellfeatures._util.checksums import cached_sha256
from cellfeatures.config.model import datasets_root
from cellfeatures.datasets.layout import find_dataset_path
from cellfeatures.datasets.spec import EXPORT_FORMATS
from cellfeatures.datasets.splits import fold_names
from cellfeatures.errors import ConfigError, DamagedDatasetError, one_line


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
        return find_dataset(name, datasets_root(root))

    def __repr__(self) -> str:
        return display.dataset_text(self.card, self.path)

    def _repr_html_(self) -> str:
        return display.dataset_html(self.card, self.path)

    @cached_property
    def card(self) -> dict[str, Any]:
        return read_card(self.path)

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
        return pl.read_parquet(self._checked("data.parquet"))

    @cached_property
    def splits(self) -> pl.DataFrame:
        return pl.read_parquet(self._checked("splits.parquet"))

    def _checked(self, name: str) -> Path:
        """A data file after checking its size and SHA-256 against the card: a damaged or swapped file is
        refused, never exported, trained on or scored against."""
        problems = dataset_problems(self.path, self.card, only=name)
        if problems:
            raise DamagedDatasetError(
                f"dataset {self.path} is damaged, refusing to read it: {problems[0]}; run `cellfeatures verify` "
                f"and rebuild it with `cellfeatures dataset {self.card.get('name', '<name>')}`"
            )
        return self.path / name

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
        """X, y and feature names: the whole dataset (k=None), one part of fold k, or of k="locked".

        The rows of a part are those of `fold(k)` in the same order; the design matrix is built once per
        dataset and sliced (a baseline run asks for ~450 parts).
        """
        if k is None:
            x, names = self.design(self.data)
            return x, self.data[self.label].to_numpy(), names
        if part not in ("train", "test"):
            raise ConfigError(f"part must be 'train' or 'test', got {part!r}")
        x, y, names = self._design_of_frame
        role = self.frame()[k if isinstance(k, str) else f"fold_{k}"]
        mask = (role == part).fill_null(False).to_numpy()
        return x[mask], y[mask], names

    @cached_property
    def _design_of_frame(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        x, names = self.design(self.frame())
        return x, self.frame()[self.label].to_numpy(), names

    def to_pandas(self) -> Any:
        return self.frame().to_pandas()

    def export(self, fmt: str, out: str | os.PathLike[str]) -> Path:
        """Write the dataset (data + split roles) as parquet, csv, arrow (IPC) or npz (X, y, names, folds).

        Atomic: written under a hidden name and renamed, so a full disk never leaves a truncated file.
        """
        if fmt not in EXPORT_FORMATS:
            raise ConfigError(f"export format must be one of {EXPORT_FORMATS}, got {fmt!r}")
        if fmt == "hf":  # a folder: data/<split>.parquet + README.md with the dataset-card YAML header
            from cellfeatures.datasets.interop import export_hf

            return export_hf(self, Path(out))
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


DATA_FILES = ("data.parquet", "splits.parquet")


def read_card(path: Path) -> dict[str, Any]:
    """A dataset's card.json, or a clear error naming it (garbage, truncated, not an object)."""
    card_path = path / "card.json"
    try:
        card = json.loads(card_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DamagedDatasetError(
            f"{card_path} cannot be read as JSON ({one_line(exc)}): the dataset is damaged"
        ) from None
    if not isinstance(card, dict) or "dataset_id" not in card:
        raise DamagedDatasetError(f"{card_path} is not a dataset card (no dataset_id): the dataset is damaged")
    return card


def dataset_problems(path: Path, card: dict[str, Any] | None = None, only: str | None = None) -> list[str]:
    """What differs between a dataset's files and the sizes and SHA-256 its card records (empty: sound)."""
    try:
        card = card if card is not None else read_card(path)
    except DamagedDatasetError as exc:
        return [str(exc)]
    recorded = card.get("files")
    if not isinstance(recorded, dict):
        return ["card.json records no file checksums (built by an older cellfeatures): rebuild the dataset"]
    problems = []
    for name in [only] if only else DATA_FILES:
        file, entry = path / name, recorded.get(name) or {}
        if not file.exists():
            problems.append(f"{name} is missing")
        elif file.stat().st_size != entry.get("bytes"):
            problems.append(f"{name} has {file.stat().st_size:,} bytes, the card records {entry.get('bytes')}")
        elif cached_sha256(file) != entry.get("sha256"):
            problems.append(f"{name} does not match the SHA-256 the card records (modified or replaced)")
    return problems


def find_dataset(name_or_path: str, root: str | os.PathLike[str] = "datasets") -> Dataset:
    """A dataset by path, by `<name>/<id>`, by id prefix, or by name (the most recently built)."""
    return Dataset(find_dataset_path(name_or_path, root))
