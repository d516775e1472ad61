"""Where datasets and their reports live on disk: the only module that knows the folder layout.

<root>/<name>/<dataset_id>/{data.parquet, splits.parquet, card.json, CARD.md}
<root>/<name>/<dataset_id>/baselines/<report_key>/   a baseline report (leaderboard, REPORT.md, ...)
<root>/<name>/<dataset_id>/baselines/.fits/          finished fits, so an interrupted stage resumes
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Protocol

import polars as pl

from cellfeatures._util.names import did_you_mean
from cellfeatures.errors import StoreError

FIT_CACHE = ".fits"  # under <dataset>/baselines/: finished fits, so an interrupted stage resumes


def find_dataset_path(name_or_path: str, root: str | os.PathLike[str] = "datasets") -> Path:
    """A dataset by path, by `<name>/<id>`, by id prefix, or by name (the most recently built)."""
    path = Path(name_or_path)
    if (path / "card.json").exists():
        return path
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
        names = sorted({p.parent.name for p in candidates})
        raise StoreError(
            f"no dataset {name_or_path!r} under {root}{did_you_mean(name_or_path, names)} (have: "
            f"{', '.join(sorted(f'{p.parent.name}/{p.name}' for p in candidates)) or 'none'})"
        )
    return max(matches, key=lambda p: (p / "card.json").stat().st_mtime)


def latest_report(ds: HasPathAndId, datasets_root: str | os.PathLike[str] | None = None) -> Path | None:
    """The headline report that covers this dataset: the one with the most seeds, then the most entries, then
    the newest (a `run` report lives under its first dataset). A quick one-seed `baseline` made later never
    hides the three-seed headline from score, predict and Leaderboard.load; it stays reachable by its key."""
    boards = set((ds.path / "baselines").glob("*/leaderboard.csv"))
    if datasets_root is not None:
        boards |= set(Path(datasets_root).glob("*/*/baselines/*/leaderboard.csv"))
    found = []
    for board in boards:
        try:
            ids = pl.read_csv(board, columns=["dataset_id"])["dataset_id"].to_list()
        except (OSError, pl.exceptions.PolarsError):
            continue  # a damaged report is not a candidate
        # entries.json: what Leaderboard.load rebuilds from (a report written before it existed cannot be loaded)
        if ds.id in ids and (board.parent / "REPORT.md").exists() and (board.parent / "entries.json").exists():
            found.append(board.parent)
    return max(found, key=_report_rank) if found else None


def _report_rank(report: Path) -> tuple[int, int, float]:
    try:
        boards = json.loads((report / "entries.json").read_text()).get("boards", [])
        seeds = max((len(b.get("seeds", {})) for b in boards), default=0)
        entries = sum(len(b.get("entries", [])) for b in boards)
    except (OSError, ValueError, AttributeError, TypeError):
        seeds, entries = 0, 0
    return seeds, entries, (report / "REPORT.md").stat().st_mtime


def report_dir(dataset_path: Path, key: str) -> Path:
    """The folder of the baseline report `key` of a dataset."""
    return dataset_path / "baselines" / key


def fit_cache_dir(dataset_path: Path) -> Path:
    """Where finished fits of a dataset's baseline stage are kept (so an interrupted stage resumes)."""
    return dataset_path / "baselines" / FIT_CACHE


def datasets_root_of(dataset_path: Path) -> Path:
    """The datasets root a dataset folder lives in (`<root>/<name>/<id>`)."""
    return dataset_path.parent.parent


class HasPathAndId(Protocol):
    """A built dataset as far as the layout cares: its folder and its id."""

    @property
    def path(self) -> Path: ...

    @property
    def id(self) -> str: ...
