"""cellfeatures tunes polars' allocator only when it can take effect and the user has not chosen."""

from __future__ import annotations

import os
import subprocess
import sys

from cellfeatures._util.runtime import ALLOCATOR_CONF, ALLOCATOR_ENV

SHOW = f"import os; print(os.environ.get({ALLOCATOR_ENV!r}, '<unset>'))"


def run(code: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k != ALLOCATOR_ENV}
    return subprocess.run(
        [sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_importing_cellfeatures_first_sets_the_allocator_options() -> None:
    assert run(f"import cellfeatures; {SHOW}") == ALLOCATOR_CONF


def test_a_users_own_setting_wins_even_when_empty() -> None:
    assert run(f"import cellfeatures; {SHOW}", **{ALLOCATOR_ENV: "narenas:2"}) == "narenas:2"
    assert run(f"import cellfeatures; {SHOW}", **{ALLOCATOR_ENV: ""}) == ""


def test_nothing_is_set_once_polars_is_loaded_since_it_could_not_take_effect() -> None:
    assert ALLOCATOR_CONF not in run(f"import polars, cellfeatures; {SHOW}"), "polars' own defaults stay"


def test_polars_appends_our_options_to_its_defaults_so_they_win() -> None:
    seen = run(f"import cellfeatures, polars; {SHOW}")
    assert seen.endswith("," + ALLOCATOR_CONF), seen


CYCLES = """
import resource, sys
import numpy as np
from cellfeatures._util.runtime import keep_freed_heap
applied = keep_freed_heap() if sys.argv[1] == "tuned" else False
a = np.ones(20 * 2**20 // 8); del a
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):  # what a range of the synapse plan does: allocate, fill, free arrays of ~20 MB
    a = np.ones(20 * 2**20 // 8); del a
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> tuple[bool, int]:
    env = {**os.environ, "NUMPY_MADVISE_HUGEPAGE": "0"}  # 4 KiB pages: one fault per page touched
    out = subprocess.run(
        [sys.executable, "-c", CYCLES, mode], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0] == "True", int(out[1])


def test_keeping_freed_heap_makes_reallocated_arrays_fault_free() -> None:
    import pytest

    applied, tuned = _faults("tuned")
    if not applied:
        pytest.skip("not glibc: mallopt is unavailable and the tuning is a no-op")
    _, plain = _faults("plain")
    # glibc alone already reuses some (its mmap threshold adapts after the first free), not all
    assert plain >= 2_000, "without the tuning fresh pages are faulted in again (5,120 per 20 MB array)"
    assert tuned <= plain // 10, (tuned, plain)
