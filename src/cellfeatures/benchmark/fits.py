"""Running fits: every (model, seed, fold) fit in worker processes sized to the cores this process may use,
one BLAS/OpenMP thread each, each finished fit cached by its fingerprint so an interrupted stage resumes.

Fits are small (about a thousand cells): on a busy machine a thread team spinning against other jobs
turned 90 s into an hour. Knows nothing about leaderboards."""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import pickle
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cellfeatures.benchmark.models import MODELS_VERSION, _proba_for, make_model

# The fit cache is written with the C pickler: a boosted model is ~1,500 small tree objects, and
# joblib.dump's pure-Python pickler took 0.17 s to save one (0.017 s here) and 0.09 s to load it (0.018).
FIT_SUFFIX = ".pickle"

Progress = Callable[[int, int, str], None]  # (fits done, fits total, what just finished)


@dataclass(frozen=True)
class FitTask:
    """One fit: a model (name or estimator) on one training part, predicted on one test part."""

    key: tuple[str, int, int | str]  # (entry, seed, fold or "locked")
    model: Any  # a TRAINED_MODELS name, or an unfitted scikit-learn estimator
    names: list[str]
    seed: int
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    classes: list[str]
    keep_model: bool = False


def _fit_one(task: FitTask, threads: int | None = 1) -> tuple[tuple[str, int, int | str], np.ndarray, np.ndarray, Any]:
    """Fit and predict with one BLAS/OpenMP thread (small data: a thread team only spins).

    threads=None leaves the libraries' default thread teams (what the benchmark compares against).
    """
    from sklearn.base import clone
    from threadpoolctl import threadpool_limits

    if multiprocessing.parent_process() is not None:  # a worker: Ctrl-C is the parent's to handle (quietly)
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    with threadpool_limits(limits=threads) if threads else contextlib.nullcontext():
        model = make_model(task.model, task.names, task.seed) if isinstance(task.model, str) else clone(task.model)
        model.fit(task.x_train, task.y_train)
        pred = np.asarray(model.predict(task.x_test)).astype(str)  # one buffer: pickles and caches cheaply
        proba = _proba_for(model, task.x_test, task.classes) if hasattr(model, "predict_proba") else None
    return (
        task.key,
        pred,
        proba if proba is not None else np.full((len(pred), 0), np.nan),
        (model if task.keep_model else None),
    )


def fit_fingerprint(task: FitTask) -> str:
    """What a fit's result depends on: the model (name or estimator parameters), the data, seed and classes."""
    h = hashlib.sha256()
    model = task.model if isinstance(task.model, str) else f"{type(task.model).__qualname__}:{task.model!r}"
    import sklearn

    # library versions too: a fit cached before an upgrade is refitted, not trusted
    identity = [MODELS_VERSION, sklearn.__version__, np.__version__, model, task.key, task.seed, task.names]
    identity += [task.classes, task.keep_model]
    h.update(json.dumps(identity).encode())
    for array in (task.x_train, task.y_train, task.x_test):
        h.update(str(array.dtype).encode() + str(array.shape).encode())
        h.update(np.ascontiguousarray(array.astype(str) if array.dtype == object else array).tobytes())
    return h.hexdigest()[:24]


def run_fits(
    tasks: list[FitTask],
    progress: Progress | None = None,
    n_jobs: int | None = None,
    threads: int | None = 1,
    cache_dir: Path | None = None,
) -> dict[Any, Any]:
    """Every fit, in worker processes sized to the cores available (`os.sched_getaffinity`), one thread each.

    With `cache_dir`, each finished fit is saved as it arrives and found again by its fingerprint: an
    interrupted baseline stage (Ctrl-C, a killed job) resumes where it stopped instead of starting over.
    """
    from joblib import Parallel, delayed

    from cellfeatures._util.runtime import available_cores

    results: dict[Any, Any] = {}
    todo = []
    if cache_dir is not None and cache_dir.is_dir():
        for stale in cache_dir.glob("*.joblib"):  # the cache's format before FIT_SUFFIX: never read again
            stale.unlink(missing_ok=True)
    prints = {task.key: fit_fingerprint(task) for task in tasks} if cache_dir is not None else {}
    for task in tasks:
        cached = _load_fit(cache_dir, prints.get(task.key))
        if cached is None:
            todo.append(task)
        else:
            results[task.key] = cached
    if progress and results:
        progress(len(results), len(tasks), f"{len(results)} fits found in the cache (resumed)")
    jobs = max(1, min(n_jobs or available_cores(), len(todo) or 1))
    if jobs == 1:
        stream: Any = (_fit_one(t, threads) for t in todo)
    else:
        stream = Parallel(n_jobs=jobs, backend="loky", return_as="generator_unordered")(
            delayed(_fit_one)(t, threads) for t in todo
        )
    try:
        for done, (key, pred, proba, model) in enumerate(stream, start=len(results) + 1):
            results[key] = (pred, proba, model)
            _save_fit(cache_dir, prints.get(key), results[key])
            if progress:
                progress(done, len(tasks), f"{key[0]} seed {key[1]} fold {key[2]}")
    except KeyboardInterrupt as exc:
        kept = "cached" if cache_dir is not None else "done"
        raise type(exc)(f"{len(results)} of {len(tasks)} fits {kept}") from None
    return results


def _load_fit(cache_dir: Path | None, fingerprint: str | None) -> Any:
    if cache_dir is None or fingerprint is None:
        return None
    path = cache_dir / f"{fingerprint}{FIT_SUFFIX}"
    if not path.exists():
        return None
    try:
        with path.open("rb") as f:
            return pickle.load(f)
    except Exception:  # a damaged cache entry is refitted, never trusted
        return None


def _save_fit(cache_dir: Path | None, fingerprint: str | None, result: Any) -> None:
    if cache_dir is None or fingerprint is None:
        return
    from cellfeatures._util.atomic import write_file_atomically

    def write(tmp: Path) -> None:
        with tmp.open("wb") as f:
            pickle.dump(result, f, protocol=5)

    write_file_atomically(cache_dir / f"{fingerprint}{FIT_SUFFIX}", write)
