"""Process-level tuning that must happen before polars is loaded.

Polars allocates through its own jemalloc. At import polars sets dirty_decay_ms:500,muzzy_decay_ms:1000
and appends whatever `_RJEM_MALLOC_CONF` holds (later options win), so freed memory goes back to the
kernel within a second; a pipeline that allocates and frees a few hundred MB per synapse-id range then
pays for page faults and page zeroing on every range. Keeping freed pages for a few seconds (and purging
them from a background thread) measured 18.2 -> 15.6 s and 16.5 -> 14.0 s on the 100M-synapse
benchmark (two interleaved rounds; kernel time 9.6 -> 4.3 s), for +0.2 GiB peak RSS.

Applied only when polars is not imported yet and the user has not set the variable: setting
`_RJEM_MALLOC_CONF` yourself (even to an empty string) opts out.
"""

from __future__ import annotations

import os
import sys

ALLOCATOR_ENV = "_RJEM_MALLOC_CONF"
ALLOCATOR_CONF = "background_thread:true,dirty_decay_ms:5000,muzzy_decay_ms:0"


def tune_allocator() -> bool:
    """Set polars' jemalloc options for this process; True when they were applied."""
    if "polars" in sys.modules or ALLOCATOR_ENV in os.environ:
        return False
    os.environ[ALLOCATOR_ENV] = ALLOCATOR_CONF
    return True


# glibc's malloc (numpy's arrays) serves blocks above its mmap threshold with fresh mappings and gives
# freed heap back above 128 KiB: the synapse kernels allocate and free ~100 MB per id range, so each range
# paid page faults and page zeroing again. Blocks up to 32 MiB (glibc's largest threshold) from the heap,
# and freed heap kept up to 1 GiB: 100M-synapse benchmark 10.8-13.5 -> 9.6-10.3 s, kernel time 4.6-9.7 ->
# 2.6-4.0 s, page faults 0.82-0.92M -> 0.28-0.34M (two interleaved rounds), peak RSS +0.1 GiB.
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
HEAP_OPTIONS = {M_MMAP_THRESHOLD: 32 * 2**20, M_TRIM_THRESHOLD: 2**30, M_TOP_PAD: 256 * 2**20}


def keep_freed_heap() -> bool:
    """Tune glibc's malloc for many large short-lived arrays; True when applied (glibc only, else a no-op).

    Process-wide and lasting: called by the big synapse plan, whose process is a build."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name or sys.platform != "linux":
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    return all(mallopt(option, value) == 1 for option, value in HEAP_OPTIONS.items())


def available_cores() -> int:
    """Cores this process may run on (CPU affinity, cgroup-restricted sets), not the machine's count.

    Why: `os.cpu_count()` reports every core of a shared lab server; a job pinned to 2 of them that
    starts 64 workers oversubscribes its own cores.
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)
