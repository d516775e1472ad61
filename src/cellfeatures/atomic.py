"""Publish a directory all at once: write it under a hidden temporary name, then rename it into place.

Why: readers (list, scan, later builds) must never see a half-written version, dataset, report or
snapshot. A failed write removes its temporary directory; a killed one leaves only a hidden
`.building-*` directory that readers ignore and the next attempt replaces.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def publish_directory(final: Path, write: Callable[[Path], T], ready: str | None = None) -> tuple[T | None, bool]:
    """Run `write(tmp)` and rename tmp to `final`. Returns (write's result, created).

    `ready` names a file whose presence in `final` means it is already published (then nothing runs);
    without it, the directory's existence is enough. If another process publishes `final` first, ours
    is discarded and `created` is False.
    """

    def published() -> bool:
        return (final / ready).exists() if ready else final.exists()

    if published():
        return None, False
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".building-{final.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        result = write(tmp)
        try:
            os.rename(tmp, final)  # atomic on one filesystem
        except OSError:
            if published():  # a concurrent writer won the race; its result is equivalent
                shutil.rmtree(tmp, ignore_errors=True)
                return result, False
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return result, True
