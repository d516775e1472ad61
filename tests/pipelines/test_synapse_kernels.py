"""The phase-1 kernel: the root table finds exactly the known roots; records land in their cell's bucket.

(That they equal a brute-force recomputation, through every plan, is tests/pipelines/test_synapses.py.)"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from cellfeatures.pipelines import synapse_kernels as sk
from tests.pipelines.kernel_inputs import CELLS, POSITIONS, ROOTS, synapses


def test_the_root_table_finds_every_root_and_nothing_else() -> None:
    table = sk.root_table(ROOTS)
    frame = pl.DataFrame({"pre_root_id": np.r_[CELLS, 1, 2, 10**17 - 1], "post_root_id": np.full(CELLS.size + 3, 5)})
    records = sk.scatter(frame.with_columns(size_vx=pl.lit(1)), table, 31, 1, None)
    assert records.height == CELLS.size, "one output record per cell root, none for the other roots"
    assert np.array_equal(np.sort(records.cell), np.arange(CELLS.size, dtype=np.int32))


def test_every_record_lands_in_its_cells_bucket_and_direction() -> None:
    table = sk.root_table(ROOTS)
    frame = synapses(20_000)
    records = sk.scatter(frame, table, 5, 10, POSITIONS)  # buckets of 32 cells
    is_cell = {int(r): i for i, r in enumerate(CELLS)}
    expected = sum(int(r) in is_cell for r in frame["post_root_id"]) + sum(
        int(r) in is_cell for r in frame["pre_root_id"]
    )
    assert records.height == expected
    for k in range(20):
        cells = records.batch(k)["cell"]
        assert np.all(cells // 32 == k // 2), f"batch {k} holds only bucket {k // 2}'s cells"


def test_more_cells_than_the_packed_lookup_holds_is_refused_not_wrapped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sk, "MAX_CELLS", CELLS.size)
    from cellfeatures.errors import IdentityError

    with pytest.raises(IdentityError, match="attributable cells"):
        sk.root_table(ROOTS)
