"""Where the big plans run: this process (the default) or a Dask cluster.

`[execution] engine = "dask"` sends the synapse family's two-phase plan (pipelines/synapse_ranges.py)
to Dask as tasks: one per synapse-id range, then one per bucket. Dask is the engine (scheduling,
retries on lost workers, SLURM/PBS/Kubernetes/cloud through dask-jobqueue and friends); correctness is
ours: a task reads its range straight from the source, writes its runs under a temporary name and
renames, so a rerun task never leaves half a file, and the client concatenates the parts in the same
order as the local engine, so the matrix is bit-for-bit identical.

Failures are reported before work starts: an unreachable scheduler within `connect_timeout_s`, a
scratch location a worker cannot write or the client cannot read back (a probe task). Scratch is
removed when the build ends, whether it succeeds or fails.

Needs the optional extra: `pip install -e '.[dask]'`.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from cellfeatures.errors import ConfigError, ExecutionError

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

    def _run(self, phase: str, func: Callable[..., Any], argument_lists: list[tuple[Any, ...]]) -> list[Any]:
        """One task per argument tuple; results in submission order; progress as they finish."""
        from distributed import as_completed

        futures = [
            self.client.submit(func, *args, key=f"cellfeatures-{phase}-{i}-{uuid.uuid4().hex[:8]}", pure=False)
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
        except BaseException:
            for f in futures:
                f.cancel()
            raise
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
            )
            self.costs.phase2 = self._run(
                "synapse buckets", sr.aggregate_bucket_task, [(targets, k, plan.flags) for k in range(plan.buckets)]
            )
        finally:
            _remove(run)
        parts = [p for result in self.costs.phase2 for p in result["parts"]]
        return pl.concat(parts) if parts else pl.DataFrame()


def _remove(url: str) -> None:
    import fsspec

    fs, path = fsspec.core.url_to_fs(url)
    with contextlib.suppress(FileNotFoundError):
        fs.rm(path, recursive=True)


def _probe_write(url: str, text: str) -> str:
    """Runs on a worker: write a small file under scratch (the client then reads it back)."""
    import socket

    import fsspec

    fs, path = fsspec.core.url_to_fs(url)
    fs.makedirs(fs._parent(path), exist_ok=True)
    with fs.open(path, "w") as fh:
        fh.write(text)
    return socket.gethostname()


def probe_scratch(client: Any, scratch_url: str, timeout_s: float = 60.0) -> None:
    """Before any work: can a worker write to scratch, and can this process read what it wrote?"""
    import fsspec

    token = uuid.uuid4().hex
    url = f"{scratch_url.rstrip('/')}/probe-{token}.txt"
    future = client.submit(_probe_write, url, token, key=f"cellfeatures-probe-{token[:8]}", pure=False)
    try:
        host = future.result(timeout=timeout_s)
    except Exception as exc:
        raise ExecutionError(
            f"scratch {scratch_url!r} is not writable by the Dask workers ({type(exc).__name__}: {exc}); "
            f"set [execution] scratch to a path or URL every worker can write"
        ) from None
    try:
        fs, path = fsspec.core.url_to_fs(url)
        with fs.open(path, "r") as fh:
            seen = fh.read()
    except Exception as exc:
        seen = f"<{type(exc).__name__}: {exc}>"
    with contextlib.suppress(Exception):
        _remove(url)
    if seen != token:
        raise ExecutionError(
            f"scratch {scratch_url!r} is not shared: a worker on {host} wrote a file there that this machine "
            f"cannot read back ({seen[:120]}); use a shared filesystem or object storage every worker and the "
            f"client can reach"
        )


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
            started = time.perf_counter()
            try:
                client = distributed.Client(spec.address, timeout=f"{spec.connect_timeout_s}s", set_as_default=False)
            except (OSError, TimeoutError) as exc:
                raise ExecutionError(
                    f"cannot reach the Dask scheduler at {spec.address} (gave up after "
                    f"{time.perf_counter() - started:.1f} s: {type(exc).__name__}: {str(exc)[:200]}); check the "
                    f"address (`dask scheduler` prints it) and that this machine can reach it"
                ) from None
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
