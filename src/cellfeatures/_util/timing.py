"""Wall time per stage of a multi-step job, so a user (and benchmarks/main_job.py) sees where a run went.

A `Stages` is passed down optionally; a layer that gets None times nothing and pays nothing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext


class Stages:
    """Ordered stage -> seconds; the same stage entered twice adds up (e.g. fits of two datasets)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started

    def line(self) -> str:
        """'build 3.1 s · fits 25.0 s · …' in the order the stages first ran."""
        return " · ".join(f"{name} {seconds:.1f} s" for name, seconds in self.seconds.items())


def stage(stages: Stages | None, name: str) -> AbstractContextManager[None]:
    """`with stage(stages, "fits"):` times into `stages`, or does nothing when there is no recorder."""
    return stages(name) if stages is not None else nullcontext()
