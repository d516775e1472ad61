"""A baseline report read back from disk: the leaderboard a notebook or the HTML report shows.

`run_baselines` returns a live `Leaderboard` (fitted results in memory); once written, a report
directory (`leaderboard.csv`, `per_fold.csv`, `predictions.parquet`, `REPORT.md`, figures) is what
survives the session. `SavedReport` reads it, finds the newest one covering a dataset, and renders it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import polars as pl

from cellfeatures import display
from cellfeatures.datasets import Dataset, find_dataset
from cellfeatures.errors import StoreError


def latest_report(ds: Dataset, datasets_root: str | os.PathLike[str] | None = None) -> Path | None:
    """The newest baseline report that covers this dataset (a `run` report lives under its first dataset)."""
    boards = set((ds.path / "baselines").glob("*/leaderboard.csv"))
    if datasets_root is not None:
        boards |= set(Path(datasets_root).glob("*/*/baselines/*/leaderboard.csv"))
    found = []
    for board in boards:
        try:
            ids = pl.read_csv(board, columns=["dataset_id"])["dataset_id"].to_list()
        except (OSError, pl.exceptions.PolarsError):
            continue  # a damaged report is not a candidate
        if ds.id in ids and (board.parent / "REPORT.md").exists():
            found.append(board.parent)
    return max(found, key=lambda p: (p / "REPORT.md").stat().st_mtime) if found else None


@dataclass(frozen=True)
class SavedReport:
    """A written baseline report. Example (on the sample, after a baseline run)::

    >>> board = cf.Leaderboard.load("column_types")
    >>> board.frame().columns[:2]
    ['entry', 'kind']
    """

    path: Path

    @classmethod
    def load(cls, dataset: str | Dataset, root: str | os.PathLike[str] | None = None) -> SavedReport:
        """The newest report covering a dataset (a Dataset, a name, `<name>/<id>`, id prefix or path),
        or a report directory itself."""
        if isinstance(dataset, str) and (Path(dataset) / "leaderboard.csv").exists():
            return cls(Path(dataset))
        if root is None:
            from cellfeatures.config import default_config

            root = default_config().datasets_root
        ds = dataset if isinstance(dataset, Dataset) else find_dataset(dataset, root)
        found = latest_report(ds, root)
        if found is None:
            raise StoreError(
                f"no baseline report covers dataset {ds.card['name']}/{ds.id} under {root}; "
                f"run `cellfeatures baseline {ds.card['name']}` (or cf.run_baselines) first"
            )
        return cls(found)

    def frame(self) -> pl.DataFrame:
        """One row per (dataset, entry): every metric's mean, spreads and 95% interval."""
        return self._frame

    @cached_property
    def _frame(self) -> pl.DataFrame:
        return pl.read_csv(self.path / "leaderboard.csv", infer_schema_length=None)

    def per_fold(self) -> pl.DataFrame:
        return pl.read_csv(self.path / "per_fold.csv", infer_schema_length=None)

    def predictions(self) -> pl.DataFrame:
        return pl.read_parquet(self.path / "predictions.parquet")

    @property
    def markdown(self) -> Path:
        return self.path / "REPORT.md"

    @property
    def html(self) -> Path:
        return self.path / "REPORT.html"

    def _rows(self) -> list[dict[str, Any]]:
        return list(self.frame().iter_rows(named=True))

    def __repr__(self) -> str:
        return display.leaderboard_text(self._rows(), f"Leaderboard {self.path}")

    def _repr_html_(self) -> str:
        return display.leaderboard_html(self._rows(), f"Leaderboard ({self.path.name})")
