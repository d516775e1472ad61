"""The main job and the other multi-step jobs as library functions: the CLI and notebooks call these.

Each function strings layers together (store -> datasets -> benchmark -> report) and returns what it
made. None prints: progress goes to the callbacks it is given, results come back as objects the caller
renders. Must not: parse command lines, format terminal output, or hold logic a layer below should own.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cellfeatures._util.atomic import publish_directory, write_file_atomically
from cellfeatures._util.timing import Stages, stage
from cellfeatures.benchmark.fits import Progress as FitProgress
from cellfeatures.benchmark.leaderboard import Leaderboard
from cellfeatures.benchmark.models import TRAINED_MODELS
from cellfeatures.benchmark.run import report_key, run_baselines, save_best_model
from cellfeatures.benchmark.scoring import score_file
from cellfeatures.config.model import Config
from cellfeatures.datasets.build import build_dataset
from cellfeatures.datasets.dataset import Dataset
from cellfeatures.datasets.layout import latest_report, report_dir
from cellfeatures.datasets.spec import spec_from_config
from cellfeatures.labels.agreement import Agreement, agreement
from cellfeatures.labels.sources import LabelSet, LabelSourceSpec, check_label_source, label_sources, load_labels
from cellfeatures.report.html import render, write_html_report
from cellfeatures.report.markdown import write_report
from cellfeatures.sources.factory import make_source
from cellfeatures.sources.snapshot import SnapshotSource
from cellfeatures.store.store import FeatureStore
from cellfeatures.store.version import FeatureVersion

Say = Callable[[str], None]
Tick = Callable[[str, int, int], None]


def baseline_report(
    store: Any,
    dataset: Dataset,
    *,
    seeds: tuple[int, ...] = (0, 1, 2),
    models: tuple[str, ...] | None = None,
    existing: tuple[str, ...] | None = None,
    root: str | Path | None = None,
    extra: list[Dataset] | None = None,
    custom: dict[str, Any] | None = None,
    progress: FitProgress | None = None,
    stages: Stages | None = None,
    ablations: dict[str, str] | None = None,
) -> tuple[Path, bool]:
    """Run baselines for a dataset (and optional extra datasets) and publish the report once.

    Cached: the same datasets, seeds, models and existing tables give the same report directory, and
    a second call returns it without recomputing (custom estimators are keyed by name and parameters).
    Returns (REPORT.md path, created).
    """
    models = models or TRAINED_MODELS
    named = tuple(models) + tuple(f"{k}={v!r}" for k, v in sorted((custom or {}).items()))
    named += tuple(f"without {k}={v}" for k, v in sorted((ablations or {}).items()))
    key = report_key("+".join([dataset.id, *[d.id for d in extra or []]]), seeds, named, existing)
    out = report_dir(dataset.path, key)
    if (out / "REPORT.md").exists():
        return out / "REPORT.md", False
    boards = [
        run_baselines(
            store,
            d,
            seeds=seeds,
            models=models,
            custom=custom,
            existing=existing,
            root=root,
            progress=progress,
            stages=stages,
            ablations=ablations,
        )
        for d in [dataset, *(extra or [])]
    ]
    board = boards[0]
    board.others = boards[1:]

    def write(tmp: Path) -> None:
        with stage(stages, "report"):
            board.save(tmp)
            write_report(board, tmp)
        with stage(stages, "best model"):
            save_best_model(board, tmp)
        with stage(stages, "html"):
            (tmp / "REPORT.html").write_text(render(tmp, shown=out), encoding="utf-8")

    _, created = publish_directory(out, write, ready="REPORT.md")
    board.path = out
    return out / "REPORT.md", created


def rewrite_report(board: Leaderboard) -> Path:
    """Save a changed leaderboard and re-render its REPORT.md and REPORT.html (e.g. after `score`)."""
    path = board.save()
    write_report(board, path)
    write_html_report(path)
    return path


@dataclass
class ScoreResult:
    """What `score_predictions` did: the leaderboard row of the entry, and the report it joined (if any)."""

    row: dict[str, Any]
    report: Path | None


def score_predictions(
    store: FeatureStore,
    dataset: Dataset,
    path: str | os.PathLike[str],
    name: str,
    *,
    materialization_version: int | None = None,
    datasets_root: str | os.PathLike[str] | None = None,
) -> ScoreResult:
    """Score a prediction file on the dataset's test cells; it joins the newest report covering the dataset."""
    found = latest_report(dataset, datasets_root)
    owner = Leaderboard.load(found) if found is not None else None
    board = owner.board_of(dataset) if owner is not None else None
    row, info = score_file(store, dataset, path, name, board=board, materialization_version=materialization_version)
    if owner is None or found is None:
        return ScoreResult(row, None)
    rewrite_report(owner)
    (found / "external").mkdir(exist_ok=True)
    record = json.dumps({"row": row, "input": info}, indent=2, default=str) + "\n"
    write_file_atomically(found / "external" / f"{row['entry']}.json", lambda tmp: tmp.write_text(record))
    return ScoreResult(row, found / "REPORT.md")


def compare_labels(config: Config, a: str, b: str, level: str) -> tuple[LabelSet, LabelSet, Agreement, Agreement]:
    """Two label sets of the config's source (or prediction table files) and their agreement, raw and at `level`."""
    known = label_sources(config.raw.get("labels"))
    source: Any = None
    loaded = []
    for name in (a, b):
        path = Path(name)
        if name not in known and path.is_file():  # a prediction table written by `cellfeatures predict`
            table = path.name.split(".")[0]
            spec = LabelSourceSpec(table, (table,), "model", f"cell-type table {path}")
            loaded.append(load_labels(SnapshotSource(path.parent), spec))
            continue
        check_label_source(name, known)
        source = source or make_source(config.source, config.tables_needed(), names=config.table_roles())
        loaded.append(load_labels(source, known[name]))
    la, lb = loaded
    return la, lb, agreement(la, lb, "raw"), agreement(la, lb, level)


@dataclass
class MainJobResult:
    """Everything the main job made, for the caller to show."""

    version: FeatureVersion
    labels: tuple[str, str, Agreement, Agreement] | None = None
    datasets: list[Dataset] = field(default_factory=list)
    report: Path | None = None
    seconds: float = 0.0
    stages: Stages = field(default_factory=Stages)  # wall seconds per stage, in the order they ran


def run_main_job(
    config: Config,
    store: FeatureStore,
    *,
    strict: bool = False,
    say: Say | None = None,
    tick: Tick | None = None,
    events: Callable[[str, Any], None] | None = None,
    fit_progress: Callable[[], Any] | None = None,
) -> MainJobResult:
    """The main job: build features, label agreement, datasets, baselines and the report.

    `events(kind, what)` hears each result as it is made: ("built", FeatureVersion), ("labels",
    (a, b, raw agreement, type agreement)), ("dataset", Dataset). `fit_progress()` is entered as a
    context manager around the baseline stage and yields the fit progress callback (the CLI shows a
    bar; a notebook may pass nothing).
    """
    t0 = time.perf_counter()
    stages = Stages()
    tell = events or (lambda _kind, _what: None)
    run_cfg = config.raw.get("run", {})
    # read before the feature build: a wrong [dataset] block is refused before that work, not after it
    specs = [spec_from_config(config, name, {}) for name in run_cfg.get("datasets", [])]
    with stages("features"):
        version = store.build(config, progress=say, strict=strict, tick=tick)
    result = MainJobResult(version, stages=stages)
    tell("built", version)
    if run_cfg.get("agreement"):
        a, b = run_cfg["agreement"]
        with stages("labels"):
            _la, _lb, raw, typed = compare_labels(config, a, b, "type")
        result.labels = (a, b, raw, typed)
        tell("labels", result.labels)
    for spec in specs:  # on the version just built, not on whatever was built last
        with stages("datasets"):
            on_version = replace(spec, feature_version=version.id)
            ds = build_dataset(store, on_version, config.datasets_root, label_blocks=config.raw.get("labels"))
        result.datasets.append(ds)
        tell("dataset", ds)
    if result.datasets:
        seeds = tuple(run_cfg.get("seeds", [0, 1, 2]))
        first, extra = result.datasets[0], result.datasets[1:]
        options: dict[str, Any] = {
            "seeds": seeds,
            "root": config.datasets_root,
            "extra": extra,
            "stages": stages,
            "ablations": dict(run_cfg.get("ablations", {})),
        }
        if fit_progress is None:
            result.report, _ = baseline_report(store, first, **options)
        else:
            with fit_progress() as progress:
                result.report, _ = baseline_report(store, first, progress=progress, **options)
    result.seconds = time.perf_counter() - t0
    return result
