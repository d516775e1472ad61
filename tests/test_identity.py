"""The per-version nucleus <-> root map flags the three cases that break root-keyed joins."""

from __future__ import annotations

import polars as pl
import pytest

from cellfeatures.errors import IdentityError
from cellfeatures.identity import attributable_cells, flag_roots_with_nucleus, identity_map


def canonical(rows: list[tuple[int, int]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "nucleus_id": [r[0] for r in rows],
            "root_id": [r[1] for r in rows],
            "pos_x_nm": 0.0,
            "pos_y_nm": 0.0,
            "pos_z_nm": 0.0,
            "volume_um3": 1.0,
        }
    )


def test_flags_on_a_hand_built_case() -> None:
    ident = identity_map(canonical([(3, 30), (1, 10), (2, 10), (4, 0), (5, 0)]))
    rows = {r["nucleus_id"]: r for r in ident.iter_rows(named=True)}
    assert ident["nucleus_id"].to_list() == [1, 2, 3, 4, 5]
    assert rows[1]["multi_soma"] and rows[2]["multi_soma"] and rows[1]["nuclei_on_root"] == 2
    assert not rows[3]["multi_soma"] and rows[3]["attributable"]
    assert rows[4]["missing_root"] and rows[4]["nuclei_on_root"] == 0 and not rows[4]["multi_soma"], (
        "two nuclei outside the segmentation are not a merge"
    )
    assert attributable_cells(ident)["nucleus_id"].to_list() == [3]


def test_roots_without_a_nucleus_are_flagged() -> None:
    ident = identity_map(canonical([(1, 10), (2, 20), (3, 0)]))
    partners = pl.LazyFrame({"partner": [10, 99, 0, 20]})
    flagged = flag_roots_with_nucleus(partners, "partner", ident).collect()
    assert dict(zip(flagged["partner"], flagged["has_nucleus"], strict=True)) == {
        10: True,
        99: False,
        0: False,
        20: True,
    }


def test_duplicated_nucleus_ids_are_refused() -> None:
    with pytest.raises(IdentityError, match=r"duplicated nucleus ids, e.g. \[7\]"):
        identity_map(canonical([(7, 1), (7, 2)]))
