"""The prefetch intrinsic: compiled into a real llvm.prefetch, and invisible in every result."""

from __future__ import annotations

import numpy as np
from numba import njit

from cellfeatures._util.prefetch import prefetch


@njit
def _sum_with_prefetch(values: np.ndarray, ahead: int) -> float:
    total = 0.0
    for i in range(values.shape[0]):
        if i + ahead < values.shape[0]:
            prefetch(values, i + ahead)
        total += values[i] if values.ndim == 1 else values[i].sum()
    return total


def test_a_prefetch_changes_no_result_in_one_or_two_dimensions() -> None:
    flat = np.arange(1_000, dtype=np.float64)
    table = np.arange(3_000, dtype=np.int64).reshape(1_000, 3)
    assert _sum_with_prefetch(flat, 7) == flat.sum()
    assert _sum_with_prefetch(table, 32) == table.sum()
    assert _sum_with_prefetch(flat[::3], 5) == flat[::3].sum(), "a strided view too"


def test_the_kernel_really_issues_an_llvm_prefetch() -> None:
    _sum_with_prefetch(np.zeros(4), 1)
    llvm = next(iter(_sum_with_prefetch.inspect_llvm().values()))
    assert "llvm.prefetch" in llvm
