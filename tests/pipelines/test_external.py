"""External feature tables join by nucleus id, with declared columns and unit-bearing names."""

from __future__ import annotations

import polars as pl
import pytest

from cellfeatures.errors import ConfigError, SchemaError
from cellfeatures.pipelines import external
from tests.conftest import context, nucleus_frame

CFG = {"morph": {"table": "morph", "key": "nuc", "columns": {"vol": "um3", "n_proc": "count", "kind": ""}}}


def test_declared_columns_join_by_nucleus_id(snapshot) -> None:
    morph = pl.DataFrame(
        {"nuc": [2, 1, 99], "vol": [2.5, 1.5, 9.0], "n_proc": [3, 4, 5], "kind": ["a", "b", "c"], "ignored": [0, 0, 0]}
    )
    ctx = context(
        snapshot(
            {
                "nucleus_detection_v0": nucleus_frame([(1, 11, 0, 0, 0), (2, 12, 0, 0, 0), (3, 13, 0, 0, 0)]),
                "morph": morph,
            }
        )
    )
    out = external.build(ctx, CFG).collect().sort("nucleus_id")
    assert out.columns == ["nucleus_id", "morph_vol_um3", "morph_n_proc_count", "morph_kind"]
    assert out["morph_vol_um3"].to_list() == [1.5, 2.5, None], "nucleus 3 has no row; nucleus 99 is not a cell"
    specs = external.features(CFG, external.column_dtypes(ctx, CFG))
    assert [(s.name, s.dtype) for s in specs] == [
        ("morph_vol_um3", "Float64"),
        ("morph_n_proc_count", "Int64"),
        ("morph_kind", "String"),
    ]


def test_a_duplicated_key_names_the_table_and_keys(snapshot) -> None:
    morph = pl.DataFrame({"nuc": [1, 1], "vol": [1.0, 2.0], "n_proc": [1, 2], "kind": ["a", "b"]})
    ctx = context(snapshot({"nucleus_detection_v0": nucleus_frame([(1, 11, 0, 0, 0)]), "morph": morph}))
    with pytest.raises(SchemaError, match=r"morph(.|\n)*not unique(.|\n)*\[1\]"):
        external.build(ctx, CFG)


def test_a_missing_column_is_a_config_error(snapshot) -> None:
    ctx = context(
        snapshot(
            {
                "nucleus_detection_v0": nucleus_frame([(1, 11, 0, 0, 0)]),
                "morph": pl.DataFrame({"nuc": [1], "vol": [1.0]}),
            }
        )
    )
    with pytest.raises(ConfigError, match="no column 'n_proc'"):
        external.build(ctx, CFG)
