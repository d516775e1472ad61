"""Where the big plans run: this process (the default) or a Dask cluster.

`[execution] engine = "dask"` sends the synapse family's two-phase plan (pipelines/synapse_ranges.py)
to Dask as tasks: one per synapse-id range, then one per bucket. Dask is the engine (scheduling,
retries on lost workers, SLURM/PBS/Kubernetes/cloud through dask-jobqueue and friends); correctness is
ours: a task reads its range straight from the source, writes its runs under a temporary name and
renames, so a rerun task never leaves half a file, and the client concatenates the parts in the same
order as the local engine, so the matrix is bit-for-bit identical.

Failures are reported before work starts: an address that is no scheduler (closed, HTTP, or silent)
within `connect_timeout_s`; a scratch location any worker cannot write or the client cannot read back
(probed on every worker; a worker that joins later and cannot write is named by its first task). A
scheduler lost mid-build is one clear error. Scratch is removed when the build ends, whether it succeeds
or fails; a run is marked closed first, so a task still running on an orphaned worker writes nothing.

Needs the optional extra: `pip install -e '.[dask]'`.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from cellfeatures.errors import CellFeaturesError, ConfigError, ExecutionError, one_line

ENGINES = ("local", "dask")
Tick = Callable[[str, int, int], None]
Say = Callable[[str], None]


@dataclass(frozen=True)
class ExecutionSpec:
    """The [execution] section of a config (defaults: the local engine)."""

    engine: str = "local"
    address: str = ""  # an existing scheduler, e.g. tcp://host:8786
    cluster: str = "local"  # without an address: a distributed.LocalCluster
    workers: int = 2
    threads: int = 1
    scratch: str = ""  # a path or fsspec URL every worker and the client can reach
    connect_timeout_s: float = 10.0
    memory_limit: str = "auto"  # per LocalCluster worker

    @classmethod
    def from_config(cls, block: dict[str, Any] | None) -> ExecutionSpec:
        block = dict(block or {})
        try:
            spec = cls(**block)
        except TypeError as exc:
            raise ConfigError(f"[execution]: {exc}") from None
        if spec.engine not in ENGINES:
            raise ConfigError(f"[execution] engine must be one of {ENGINES}, got {spec.engine!r}")
        if spec.engine == "dask" and not spec.address and spec.cluster != "local":
            raise ConfigError('[execution] engine = "dask" needs address = "tcp://host:8786" or cluster = "local"')
        return spec


@dataclass
class TaskCosts:
    """What the tasks of one build cost, for the manifest and the benchmark."""

    phase1: list[dict[str, Any]] = field(default_factory=list)
    phase2: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        def stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
            seconds = sorted(r["seconds"] for r in rows)
            return {
                "tasks": len(rows),
                "seconds_total": round(sum(seconds), 3),
                "seconds_median": round(seconds[len(seconds) // 2], 3) if seconds else None,
                "seconds_max": round(seconds[-1], 3) if seconds else None,
                "peak_rss_bytes_max": max((r["peak_rss_bytes"] for r in rows), default=None),
            }

        return {
            "phase1": {**stats(self.phase1), "scratch_bytes": sum(r["bytes"] for r in self.phase1)},
            "phase2": stats(self.phase2),
        }


class DaskEngine:
    """A connected Dask client plus the build's scratch folder; runs the two-phase synapse plan."""

    def __init__(self, client: Any, spec: ExecutionSpec, scratch_url: str, say: Say, tick: Tick | None) -> None:
        self.client = client
        self.spec = spec
        self.scratch_url = scratch_url.rstrip("/")
        self.say = say
        self.tick = tick
        self.costs = TaskCosts()
        # what a test may hook into: called after each finished task with (phase, done, total)
        self.on_task_done: Callable[[str, int, int], None] | None = None

    @property
    def workers(self) -> int:
        return len(self.client.scheduler_info(n_workers=-1).get("workers", {}))

    def _drop_mark_when_idle(self, run: str, wait_s: float = 30.0) -> None:
        """Remove a closed run's mark once no task of ours runs any more (a lost scheduler: the mark stays,
        a few bytes, so that a task still running on an orphaned worker writes nothing)."""
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                busy = [k for keys in self.client.processing().values() for k in keys if "cellfeatures-" in str(k)]
            except Exception:
                return
            if not busy:
                _remove(run + CLOSED)
                return
            time.sleep(0.2)

    def describe(self) -> dict[str, Any]:
        """For the manifest: engine, workers, scratch kind; never credentials or full URLs with secrets."""
        import fsspec

        fs, _ = fsspec.core.url_to_fs(self.scratch_url)
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        return {
            "engine": "dask",
            "scheduler": "LocalCluster" if not self.spec.address else "external",
            "workers": self.workers,
            "threads_per_worker": self.spec.threads if not self.spec.address else None,
            "scratch_kind": protocol,
            "tasks": self.costs.summary(),
        }

    def _run(self, phase: str, func: Callable[..., Any], argument_lists: list[tuple[Any, ...]], run: str) -> list[Any]:
        """One task per argument tuple; results in submission order; progress as they finish."""
        from distributed import as_completed

        futures = [
            self.client.submit(
                guarded_task, run, func, *args, key=f"cellfeatures-{phase}-{i}-{uuid.uuid4().hex[:8]}", pure=False
            )
            for i, args in enumerate(argument_lists)
        ]
        index = {f.key: i for i, f in enumerate(futures)}
        results: list[Any] = [None] * len(futures)
        try:
            for done, future in enumerate(as_completed(futures, loop=self.client.loop), start=1):
                results[index[future.key]] = future.result()
                if self.tick:
                    self.tick(phase, done, len(futures))
                if self.on_task_done:
                    self.on_task_done(phase, done, len(futures))
        except BaseException as exc:
            with contextlib.suppress(Exception):
                self.client.cancel(futures)
            if isinstance(exc, CellFeaturesError | KeyboardInterrupt) or not _lost_cluster(exc):
                raise
            where = self.spec.address or "the LocalCluster"
            raise ExecutionError(
                f"lost the Dask scheduler at {where} during {phase} ({type(exc).__name__}: {one_line(exc, 200)}); "
                f"nothing was published and the scratch files were removed: rerun the build once the cluster is back"
            ) from None
        return results

    def run_two_phase(self, plan: Any, ranges: list[tuple[int, int]]) -> pl.DataFrame:
        from cellfeatures.pipelines import synapse_ranges as sr

        run = f"{self.scratch_url}/run-{uuid.uuid4().hex[:12]}"
        self.say(f"dask: {len(ranges)} range tasks, then {plan.buckets} bucket tasks on {self.workers} worker(s)")
        try:
            targets = [f"{run}/range-{i:05d}.arrow" for i in range(len(ranges))]
            self.costs.phase1 = self._run(
                "synapse ranges",
                sr.spill_range_task,
                [(plan, a, b, t) for (a, b), t in zip(ranges, targets, strict=True)],
                run,
            )
            self.costs.phase2 = self._run(
                "synapse buckets",
                sr.aggregate_bucket_task,
                [(targets, k, plan) for k in range(plan.buckets)],
                run,
            )
        finally:
            close_run(run)
            self._drop_mark_when_idle(run)
        parts = [p for result in self.costs.phase2 for p in result["parts"]]
        return pl.concat(parts) if parts else pl.DataFrame()


def _lost_cluster(exc: BaseException) -> bool:
    """A failure of the cluster (scheduler gone, connection closed, futures cancelled), not of a task."""
    import asyncio
    import concurrent.futures

    names = {type(e).__name__ for e in (exc, exc.__cause__, exc.__context__) if e is not None}
    lost = {"CommClosedError", "FutureCancelledError", "CancelledError", "TimeoutError", "StreamClosedError"}
    return bool(names & lost) or isinstance(
        exc, OSError | TimeoutError | asyncio.CancelledError | concurrent.futures.CancelledError
    )


CLOSED = ".closed"  # beside a run folder: the client is done with it; tasks still running write nothing


def close_run(run: str) -> None:
    """Mark a run closed, then remove its folder: a task still running on a worker (the scheduler lost,
    the client gone) sees the mark and writes nothing, or removes what it just wrote."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(run + CLOSED)
    with contextlib.suppress(Exception):
        fs.makedirs(fs._parent(path), exist_ok=True)
        fs.pipe_file(path, b"closed")
    _remove(run)


def guarded_task(run: str, func: Callable[..., Any], *args: Any) -> Any:
    """Runs on a worker: the task, unless its run was closed; a scratch it cannot use names worker and path."""
    import socket

    import fsspec

    fs, path = fsspec.core.url_to_fs(run)
    if fs.exists(path + CLOSED):
        return None
    try:
        result = func(*args)
    except OSError as exc:
        try:
            from distributed import get_worker

            worker = get_worker().address
        except Exception:
            worker = "?"
        raise ExecutionError(
            f"worker {worker} on {socket.gethostname()} cannot use the scratch {run} "
            f"({exc.strerror or type(exc).__name__}: {exc.filename or one_line(exc)}); set [execution] scratch to "
            f"a path every worker can write (a read-only or node-local folder will not do)"
        ) from None
    if fs.exists(path + CLOSED):  # closed while this task ran: leave nothing behind
        target = result.get("target") if isinstance(result, dict) else None
        with contextlib.suppress(Exception):
            if target:
                _remove(target)
            fs.rmdir(path)
        return None
    return result


def _remove(url: str) -> None:
    import fsspec

    fs, path = fsspec.core.url_to_fs(url)
    with contextlib.suppress(FileNotFoundError):
        fs.rm(path, recursive=True)


def _probe_write(scratch_url: str, token: str) -> dict[str, str]:
    """Runs on every worker: write a small file under scratch; report the host, the path and any error."""
    import os
    import socket

    import fsspec

    url = f"{scratch_url}/probe-{token}-{socket.gethostname()}-{os.getpid()}.txt"
    try:
        fs, path = fsspec.core.url_to_fs(url)
        fs.makedirs(fs._parent(path), exist_ok=True)
        with fs.open(path, "w") as fh:
            fh.write(token)
    except Exception as exc:  # reported per worker, naming it and the path
        return {"host": socket.gethostname(), "url": url, "error": f"{type(exc).__name__}: {exc}"}
    return {"host": socket.gethostname(), "url": url, "error": ""}


def probe_scratch(client: Any, scratch_url: str, timeout_s: float = 60.0) -> None:
    """Before any work: can *every* worker write to scratch, and can this process read what each wrote?

    Workers that join later are checked by their first task, which names the worker and the path if it
    cannot write (see `guarded_task`).
    """
    import fsspec

    token = uuid.uuid4().hex
    scratch = scratch_url.rstrip("/")
    try:
        answers = client.run(_probe_write, scratch, token, wait=True)
    except Exception as exc:
        raise ExecutionError(f"cannot probe scratch {scratch_url!r} on the Dask workers ({one_line(exc)})") from None
    problems = []
    for worker, answer in sorted(answers.items()):
        if answer["error"]:
            problems.append(f"worker {worker} on {answer['host']} cannot write {answer['url']} ({answer['error']})")
            continue
        try:
            fs, path = fsspec.core.url_to_fs(answer["url"])
            with fs.open(path, "r") as fh:
                seen = fh.read()
        except Exception as exc:
            seen = f"<{type(exc).__name__}: {exc}>"
        with contextlib.suppress(Exception):
            _remove(answer["url"])
        if seen != token:
            problems.append(
                f"scratch {scratch_url!r} is not shared: worker {worker} on {answer['host']} wrote "
                f"{answer['url']}, which this machine cannot read back ({seen[:120]})"
            )
    if problems:
        writable = "is not writable by the Dask workers" if "cannot write" in problems[0] else "is not shared"
        raise ExecutionError(
            f"scratch {scratch_url!r} {writable}: {problems[0]}"
            + (f" (and {len(problems) - 1} more worker(s))" if len(problems) > 1 else "")
            + "; set [execution] scratch to a path or URL every worker and the client can reach and write"
        )


def connect(distributed: Any, address: str, timeout_s: float) -> Any:
    """A client of the scheduler at `address`, or a clear error within about `timeout_s`.

    Why a thread: distributed bounds the TCP connect by its timeout but not the handshake, so a port that
    accepts and never answers (the dashboard, :8787, an easy typo for :8786) hung a build past 10 minutes,
    and a service answering HTTP made the client read "HTTP/1.1" as a message length (MemoryError).
    """
    box: dict[str, Any] = {}
    started = time.perf_counter()

    def attempt() -> None:
        try:
            box["client"] = distributed.Client(address, timeout=f"{timeout_s}s", set_as_default=False)
        except BaseException as exc:  # any failure is reported below, naming the address
            box["error"] = exc

    thread = threading.Thread(target=attempt, name="cellfeatures-dask-connect", daemon=True)
    thread.start()
    thread.join(timeout_s + 2.0)
    waited = time.perf_counter() - started
    if thread.is_alive():
        raise ExecutionError(
            f"no Dask scheduler answered at {address} within {waited:.0f} s: the port accepts connections but "
            f"does not speak the scheduler's protocol (the dashboard, usually :8787, instead of the scheduler, "
            f"usually :8786?); `dask scheduler` prints its address"
        )
    error = box.get("error")
    if error is not None:
        kind = "reach the Dask scheduler" if isinstance(error, OSError | TimeoutError) else "talk to a Dask scheduler"
        raise ExecutionError(
            f"cannot {kind} at {address} (gave up after {waited:.1f} s: {type(error).__name__}: "
            f"{one_line(error, 200)}); check the address (`dask scheduler` prints it; a web service such as the "
            f"dashboard answers HTTP there) and that this machine can reach it"
        )
    return box["client"]


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise ExecutionError(
            "[execution] engine = \"dask\" needs dask and distributed: pip install -e '.[dask]'"
        ) from None
    return distributed


@contextlib.contextmanager
def open_engine(
    spec: ExecutionSpec, default_scratch: str, say: Say, tick: Tick | None = None
) -> Iterator[DaskEngine | None]:
    """The engine for one build (None: the local engine). Connects, probes scratch, cleans up after."""
    if spec.engine == "local":
        yield None
        return
    distributed = _import_distributed()
    scratch = spec.scratch or default_scratch
    with contextlib.ExitStack() as stack:
        if spec.address:
            client = connect(distributed, spec.address, spec.connect_timeout_s)
        else:
            cluster = distributed.LocalCluster(
                n_workers=spec.workers,
                threads_per_worker=spec.threads,
                processes=True,
                memory_limit=spec.memory_limit,
                dashboard_address=":0",
                silence_logs=50,
            )
            stack.callback(cluster.close)
            client = distributed.Client(cluster, set_as_default=False)
        stack.callback(client.close)
        engine = DaskEngine(client, spec, scratch, say, tick)
        say(f"dask: {engine.workers} worker(s); dashboard {client.dashboard_link}")
        probe_scratch(client, scratch)
        yield engine
