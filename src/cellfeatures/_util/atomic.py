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
    remove_stale_builds(final.parent)
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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_builds(parent: Path) -> list[Path]:
    """Remove `.building-*-<pid>` directories whose process is gone (a killed build leaves one behind).

    Why: they are invisible to readers but can hold tens of MB each; a live build's directory is kept.
    """
    removed = []
    for path in parent.glob(".building-*-*"):
        pid = path.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def write_file_atomically(final: Path, write: Callable[[Path], object]) -> Path:
    """Run `write(tmp)` on a hidden sibling file, then rename it to `final`: a reader never sees half a file."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    try:
        write(tmp)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final
