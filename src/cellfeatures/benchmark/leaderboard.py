"""The Leaderboard: every entry of a dataset, scored alike; created by `run_baselines`, extended by
`add_predictions`, saved and loaded by itself.

A report folder holds the boards of one or more datasets (the main job reports the type and the class
level together); the board of the first dataset is the one `Leaderboard.load` returns, the others are
its `others`. Files this module owns in a report folder:

    leaderboard.csv     one row per (dataset, entry): mean over seeds, fold and seed spread, bootstrap
                        interval per metric; calibration; coverage, covered-cell accuracy and the paired
                        test; locked-test-set scores
    per_fold.csv        every (dataset, entry, seed, fold) metric row behind the means
    predictions.parquet every test prediction (dataset, entry, seed, fold, nucleus_id, truth, prediction,
                        class probabilities): any number here can be re-scored from it
    locked_predictions.parquet  every prediction on the locked slab
    comparisons.csv     matched-cell comparisons: tables against models (covered cells, equal coverage),
                        ablation gains; paired differences with their intervals
    entries.json        every entry's per-seed metrics, intervals and views: what `load` rebuilds from

It renders nothing but its own text/HTML repr (the report package renders REPORT.md and REPORT.html).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from cellfeatures import display
from cellfeatures._util.atomic import write_file_atomically
from cellfeatures.benchmark.entries import DIFFERENCE_METRICS, EntryResult
from cellfeatures.benchmark.evaluate import METRICS, RANKING_METRIC
from cellfeatures.benchmark.model_tables import best_entry, compare_paired, evaluate_predictions
from cellfeatures.benchmark.models import EXTERNAL
from cellfeatures.config.model import datasets_root
from cellfeatures.datasets.dataset import Dataset, find_dataset
from cellfeatures.datasets.layout import latest_report
from cellfeatures.errors import StoreError

ENTRIES_FORMAT = 1


def entry_row(e: EntryResult, dataset: Dataset) -> dict[str, Any]:
    """One leaderboard row: summaries of every metric, calibration, both coverage views, the locked set."""
    row: dict[str, Any] = {
        "entry": e.entry,
        "kind": e.kind,
        "level": dataset.card["label"]["level"],
        "feature_origins": "+".join(e.origins) or "none",
        "headline": e.headline,
        "seeds": len(e.seeds),
        "folds": len(dataset.folds),
        "n_test": e.per_seed[0]["n"] if e.per_seed else 0,
        "clusters": e.clusters,  # spatial units the interval resampled (jointly across seeds)
    }
    for metric in METRICS:
        for stat, value in e.summary(metric).items():
            row[f"{metric}_{stat}"] = round(value, 6) if value == value else None
    eces = [m["calibration"]["ece"] for m in e.per_seed if "calibration" in m]
    row["ece"] = round(float(np.mean(eces)), 6) if eces else None
    row["coverage"] = round(e.coverage, 6) if e.coverage is not None else None
    covered = e.covered or {}
    row["covered_n"] = covered.get("n")
    row["covered_accuracy"] = covered.get("accuracy")
    row["paired_vs"] = covered.get("vs")
    row["paired_model_accuracy"] = covered.get("model_accuracy")
    row["paired_p_value"] = covered.get("p_value")
    vs = e.vs_best or {}
    row["vs_best"] = vs.get("vs")
    for metric in DIFFERENCE_METRICS:  # this entry minus the best model, paired on the same cells
        d = vs.get(metric) or {}
        row[f"{metric}_diff"] = d.get("diff")
        row[f"{metric}_diff_low"] = d.get("low")
        row[f"{metric}_diff_high"] = d.get("high")
        row[f"{metric}_distinguishable"] = d.get("distinguishable")
    locked = e.locked or {}
    row["locked_n"] = locked.get("n")
    row["locked_accuracy"] = locked.get("accuracy")
    row["locked_balanced_accuracy"] = locked.get("balanced_accuracy")
    calibration = e.calibration or {}
    row["calibration"] = calibration.get("method")  # what `predict` applies (held-out choice)
    row["ece_held_out_before"] = calibration.get("ece_before")
    row["ece_held_out_after"] = calibration.get("ece_after")
    row["source"] = e.source or None
    return row


def comparison_rows(e: EntryResult) -> list[dict[str, Any]]:
    """The matched-cell comparisons an entry carries, one row per (view, other entry, metric): a prediction
    table against each model on its covered cells and at equal coverage, an ablation's gain. "a" is the
    table (or the ablated model), "b" the model (or the full model); diff = b - a with its paired interval."""
    views: list[tuple[str, str, dict[str, Any]]] = []
    for key, view in (("models", "covered_cells"), ("at_equal_coverage", "equal_coverage")):
        views += [(view, r["model"], r) for r in (e.covered or {}).get(key) or []]
    if e.gain:
        for key, view in (("all_cells", "gain_all_cells"), ("cells_with_features", "gain_cells_with_features")):
            found = e.gain.get(key)
            if found:
                views.append((view, e.gain["model"], found))
    rows = []
    for view, other, found in views:
        for metric in DIFFERENCE_METRICS:
            d = found.get(metric) or {}
            rows.append(
                {
                    "view": view,
                    "entry": e.entry,
                    "other": other,
                    "metric": metric,
                    "entry_value": d.get("a"),
                    "other_value": d.get("b"),
                    "diff": d.get("diff"),
                    "low": d.get("low"),
                    "high": d.get("high"),
                    "distinguishable": d.get("distinguishable"),
                }
            )
    return rows


def _entry_json(e: EntryResult) -> dict[str, Any]:
    out = asdict(e)
    out.pop("predictions")
    out.pop("locked_predictions")
    out["intervals"] = {k: list(v) for k, v in e.intervals.items()}
    return out


def _entry_from_json(raw: dict[str, Any], predictions: pl.DataFrame, locked: pl.DataFrame | None = None) -> EntryResult:
    raw = dict(raw)
    raw["intervals"] = {k: (float(v[0]), float(v[1])) for k, v in raw.get("intervals", {}).items()}
    return EntryResult(
        **raw, predictions=predictions, locked_predictions=locked if locked is None or locked.height else None
    )


@dataclass
class Leaderboard:
    """Every entry of one dataset, scored alike. Example (on the sample, after `cellfeatures run`)::

    >>> board = cf.Leaderboard.load("column_types")
    >>> board.frame().columns[:2]
    ['entry', 'kind']
    >>> board.best().kind in ("trained", "custom")
    True
    """

    dataset: Dataset
    entries: list[EntryResult]
    datasets: dict[int, Dataset] = field(default_factory=dict, repr=False)  # seed -> the split that seed drew
    others: list[Leaderboard] = field(default_factory=list, repr=False)  # other datasets of the same report
    path: Path | None = None  # the report folder it was saved to or loaded from

    # ------------------------------------------------------------ tables
    def own(self, part: str) -> pl.DataFrame:
        """This dataset's rows only: "frame", "per_fold" or "predictions" (with dataset columns)."""
        if part == "frame":
            rows = [entry_row(e, self.dataset) for e in self.entries]
            frame = pl.DataFrame(rows, infer_schema_length=None).sort(
                ["headline", f"{RANKING_METRIC}_mean"], descending=[True, True], nulls_last=True
            )
        elif part == "per_fold":
            frame = pl.DataFrame(
                [{"entry": e.entry, "kind": e.kind, **r} for e in self.entries for r in e.per_fold],
                infer_schema_length=None,
            )
        elif part == "comparisons":
            rows = [r for e in self.entries for r in comparison_rows(e)]
            frame = (
                pl.DataFrame(rows, infer_schema_length=None)
                if rows
                else pl.DataFrame({"view": []}, schema={"view": pl.String})
            )
        elif part == "locked_predictions":
            frames = [
                e.locked_predictions.with_columns(pl.lit(e.entry).alias("entry"))
                for e in self.entries
                if e.locked_predictions is not None
            ]
            frame = (
                pl.concat(frames, how="diagonal_relaxed")
                if frames
                else pl.DataFrame({"entry": []}, schema={"entry": pl.String})
            )
        else:
            frame = pl.concat(
                [e.predictions.with_columns(pl.lit(e.entry).alias("entry")) for e in self.entries],
                how="diagonal_relaxed",
            )
        return frame.with_columns(
            pl.lit(self.dataset.card["name"]).alias("dataset"), pl.lit(self.dataset.id).alias("dataset_id")
        )

    def _stacked(self, part: str) -> pl.DataFrame:
        return pl.concat([b.own(part) for b in self.boards], how="diagonal_relaxed")

    @property
    def boards(self) -> list[Leaderboard]:
        """This board and the other datasets' boards of the same report, in report order."""
        return [self, *self.others]

    def frame(self) -> pl.DataFrame:
        """One row per (dataset, entry): headline rows first, then by the ranking metric (mean over seeds)."""
        return self._stacked("frame")

    def per_fold(self) -> pl.DataFrame:
        """Every (dataset, entry, seed, fold) metric row: the spread behind each mean."""
        return self._stacked("per_fold")

    def predictions(self) -> pl.DataFrame:
        """Every test prediction of every entry (seed, fold, nucleus_id, y_true, y_pred, p_<class>)."""
        return self._stacked("predictions")

    def comparisons(self) -> pl.DataFrame:
        """Matched-cell comparisons (view, entry, other, metric, values, diff [low, high]): each prediction
        table against every model on its covered cells and at equal coverage, each ablation's gain."""
        return self._stacked("comparisons")

    def locked_predictions(self) -> pl.DataFrame:
        """Every prediction on the locked slab (entry, nucleus_id, y_true, y_pred, p_<class>): scores recompute."""
        return self._stacked("locked_predictions")

    def best(self) -> EntryResult | None:
        """The headline trained (or custom) entry with the best cross-validated ranking metric."""
        return best_entry(self.entries)

    def board_of(self, dataset: Dataset) -> Leaderboard:
        """The board of one dataset of this report."""
        for board in self.boards:
            if board.dataset.id == dataset.id:
                return board
        raise StoreError(f"the report {self.path} does not cover dataset {dataset.card['name']}/{dataset.id}")

    # ------------------------------------------------------------ extending
    def add_predictions(self, frame: pl.DataFrame, name: str, *, source: str = "") -> EntryResult:
        """Score anyone's predictions (nucleus_id, pred, optional p_<class>) on this board's test cells.

        The entry is listed, never headlined (its training data is unknown), and paired with the best
        model on the cells it covers. A previous entry of the same name is replaced. `save()` keeps it.
        """
        datasets = self.datasets or {0: self.dataset}
        entry = evaluate_predictions(datasets, frame, name, EXTERNAL, ["external"], source=source)
        self.entries = [e for e in self.entries if e.entry != name] + [entry]
        compare_paired(self.entries, datasets)
        return entry

    # ------------------------------------------------------------ files
    def save(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write this report's board files (every dataset's board) into `path` (default: where it was loaded)."""
        target = Path(path) if path is not None else self.path
        if target is None:
            raise StoreError("this leaderboard was never saved: give a folder to save(path)")
        # each file atomically: `score` saves into a report that readers may have open
        frame, per_fold, predictions = (self._stacked(part) for part in ("frame", "per_fold", "predictions"))
        write_file_atomically(target / "leaderboard.csv", lambda tmp: frame.write_csv(tmp))
        write_file_atomically(target / "per_fold.csv", lambda tmp: per_fold.write_csv(tmp))
        write_file_atomically(
            target / "predictions.parquet", lambda tmp: predictions.write_parquet(tmp, compression="zstd")
        )
        comparisons = self._stacked("comparisons")
        write_file_atomically(target / "comparisons.csv", lambda tmp: comparisons.write_csv(tmp))
        locked = self._stacked("locked_predictions")
        write_file_atomically(target / "locked_predictions.parquet", lambda tmp: locked.write_parquet(tmp))
        doc = {
            "format": ENTRIES_FORMAT,
            "boards": [
                {
                    "dataset": b.dataset.id,
                    "dataset_path": os.path.relpath(b.dataset.path, target),  # relative: the root may move
                    "seeds": {str(s): os.path.relpath(d.path, target) for s, d in b.datasets.items()},
                    "entries": [_entry_json(e) for e in b.entries],
                }
                for b in self.boards
            ],
        }
        text = json.dumps(doc, default=_json_default) + "\n"
        write_file_atomically(target / "entries.json", lambda tmp: tmp.write_text(text))
        self.path = target
        return target

    @classmethod
    def load(cls, dataset: str | os.PathLike[str] | Dataset, root: str | os.PathLike[str] | None = None) -> Leaderboard:
        """A saved report: a report folder, or the newest report covering a dataset (a Dataset, a name,
        `<name>/<id>`, id prefix or path) under the datasets root (default: the project's)."""
        folder = Path(dataset) if not isinstance(dataset, Dataset) else None
        if folder is None or not (folder / "entries.json").exists():
            root = datasets_root(root)
            ds = dataset if isinstance(dataset, Dataset) else find_dataset(str(dataset), root)
            found = latest_report(ds, root)
            if found is None:
                raise StoreError(
                    f"no baseline report covers dataset {ds.card['name']}/{ds.id} under {root}; "
                    f"make one with `cellfeatures baseline {ds.card['name']}` (or, in Python, "
                    f"cf.run_baselines(...) followed by board.save(folder)): run_baselines alone writes nothing"
                )
            folder = found
        return cls._read(folder)

    @classmethod
    def _read(cls, folder: Path) -> Leaderboard:
        try:
            doc = json.loads((folder / "entries.json").read_text())
            predictions = pl.read_parquet(folder / "predictions.parquet")
            slab_file = folder / "locked_predictions.parquet"
            locked = (
                pl.read_parquet(slab_file)
                if slab_file.exists()
                else pl.DataFrame(schema={"dataset_id": pl.String, "entry": pl.String})
            )
        except (OSError, ValueError, pl.exceptions.PolarsError) as exc:
            raise StoreError(
                f"{folder} is not a readable baseline report ({type(exc).__name__}: {exc}); "
                f"run `cellfeatures baseline` again"
            ) from None
        boards = []
        for raw in doc["boards"]:
            mine = predictions.filter(pl.col("dataset_id") == raw["dataset"]).drop("dataset", "dataset_id")
            slab = locked.filter(pl.col("dataset_id") == raw["dataset"])
            entries = [
                _entry_from_json(
                    e,
                    mine.filter(pl.col("entry") == e["entry"]).drop("entry"),
                    slab.filter(pl.col("entry") == e["entry"]).drop("entry", "dataset", "dataset_id", strict=False),
                )
                for e in raw["entries"]
            ]
            datasets = {
                int(s): Dataset(folder / p) for s, p in raw["seeds"].items() if (folder / p / "card.json").exists()
            }
            boards.append(cls(Dataset(folder / raw["dataset_path"]), entries, datasets, path=folder))
        board = boards[0]
        board.others = boards[1:]
        return board

    # ------------------------------------------------------------ display
    def _rows(self) -> list[dict[str, Any]]:
        return list(self.frame().iter_rows(named=True))

    def __repr__(self) -> str:
        where = f" at {self.path}" if self.path else ""
        return display.leaderboard_text(
            self._rows(), f"Leaderboard {self.dataset.card['name']} ({len(self.entries)} entries){where}"
        )

    def _repr_html_(self) -> str:
        return display.leaderboard_html(self._rows(), f"Leaderboard {self.dataset.card['name']}/{self.dataset.id}")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
