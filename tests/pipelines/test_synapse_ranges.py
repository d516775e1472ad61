"""Id ranges of the two-phase plan: they tile the ids exactly; tapered, the first and last are a quarter.

(That every plan gives the one-frame plan's matrix bit for bit is tests/pipelines/test_synapses.py.)"""

from __future__ import annotations

from itertools import pairwise

import pytest

from cellfeatures.pipelines.synapse_ranges import plan_ranges


@pytest.mark.parametrize("taper", [False, True])
@pytest.mark.parametrize(
    ("lo", "hi", "rows", "range_rows"), [(0, 99, 100, 25), (10**9, 10**9 + 12_345, 12_346, 1_000), (5, 7, 3, 1)]
)
def test_ranges_tile_the_ids_without_gap_or_overlap(lo: int, hi: int, rows: int, range_rows: int, taper: bool) -> None:
    ranges = plan_ranges(lo, hi, rows, range_rows, taper=taper)
    assert ranges[0][0] == lo and ranges[-1][1] == hi + 1
    assert all(a < b for a, b in ranges) and all(b == c for (_, b), (c, _) in pairwise(ranges))


def test_tapered_ranges_start_and_end_with_a_quarter() -> None:
    assert plan_ranges(0, 99, 100, 25) == [(0, 25), (25, 50), (50, 75), (75, 100)]
    assert plan_ranges(0, 99, 100, 25, taper=True) == [(0, 6), (6, 25), (25, 50), (50, 75), (75, 94), (94, 100)]


def test_one_range_is_not_cut() -> None:
    assert plan_ranges(0, 9, 10, 100, taper=True) == [(0, 10)]
