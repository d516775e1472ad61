"""Each wire model rejects a wrong dtype, a missing column and a duplicate key, naming table, column, rows."""

from __future__ import annotations

import polars as pl
import pytest

from cellfeatures.errors import SchemaError
from cellfeatures.schemas import WIRE_MODELS, feature_matrix_schema, validate

GOOD: dict[str, dict[str, list]] = {
    "nucleus": {
        "id": [1, 2],
        "valid": [True, True],
        "volume": [1.0, 2.0],
        "pt_root_id": [5, 0],
        "pt_position_x": [1.0, 2.0],
        "pt_position_y": [1.0, 2.0],
        "pt_position_z": [1.0, 2.0],
    },
    "cell_type": {"id": [1, 2], "valid": [True, True], "target_id": [5, 6], "cell_type": ["23P", "BC"]},
    "synapse": {
        "id": [1, 2],
        "valid": [True, True],
        "pre_pt_root_id": [1, 2],
        "post_pt_root_id": [3, 4],
        "size": [10, 20],
        "ctr_pt_position_x": [1.0, 2.0],
        "ctr_pt_position_y": [1.0, 2.0],
        "ctr_pt_position_z": [1.0, 2.0],
    },
    "synapse_tag": {"id": [1, 2], "valid": [True, True], "target_id": [1, 2], "tag": ["spine", "soma"]},
    "functional_area": {
        "id": [1, 2],
        "valid": [True, True],
        "target_id": [1, 2],
        "tag": ["V1", "RL"],
        "value": [1.0, 2.0],
    },
    "coregistration": {
        "id": [1, 2],
        "valid": [True, True],
        "pt_root_id": [1, 2],
        "session": [4, 4],
        "scan_idx": [1, 1],
        "unit_id": [1, 2],
    },
    "digital_twin": {
        "id": [1, 2],
        "valid": [True, True],
        "pt_root_id": [1, 2],
        "session": [4, 4],
        "scan_idx": [1, 1],
        "unit_id": [1, 2],
        "cc_abs": [0.1, 0.2],
        "cc_max": [0.9, 0.9],
        "cc_norm": [0.5, 0.5],
        "OSI": [0.1, 0.2],
        "DSI": [0.1, 0.2],
        "gOSI": [0.1, 0.2],
        "gDSI": [0.1, 0.2],
        "pref_ori": [10.0, 20.0],
        "pref_dir": [10.0, 200.0],
    },
    "proofreading": {
        "id": [1, 2],
        "valid": [True, True],
        "valid_id": [1, 2],
        "pt_root_id": [1, 2],
        "status_dendrite": [True, False],
        "status_axon": [False, False],
        "strategy_dendrite": ["none", "none"],
        "strategy_axon": ["none", "none"],
    },
}
FAMILIES = sorted(GOOD)


@pytest.mark.parametrize("family", FAMILIES)
def test_good_rows_pass(family: str) -> None:
    assert validate(pl.DataFrame(GOOD[family]), WIRE_MODELS[family], family).height == 2


@pytest.mark.parametrize("family", FAMILIES)
def test_wrong_dtype_names_table_and_column(family: str) -> None:
    data = dict(GOOD[family])
    column = next(c for c in data if c not in ("id", "valid"))
    data[column] = ["not a number", "x"] if not isinstance(data[column][0], str) else [1.5, 2.5]
    frame = pl.DataFrame(data, strict=False)
    if isinstance(GOOD[family][column][0], str):
        pytest.skip("string columns accept anything castable")
    with pytest.raises(SchemaError) as info:
        validate(frame, WIRE_MODELS[family], f"my_{family}_table")
    assert f"my_{family}_table" in str(info.value) and column in str(info.value)


@pytest.mark.parametrize("family", FAMILIES)
def test_missing_column_is_named(family: str) -> None:
    data = dict(GOOD[family])
    column = list(data)[2]
    del data[column]
    with pytest.raises(SchemaError, match=rf"my_table(.|\n)*missing column '{column}'"):
        validate(pl.DataFrame(data), WIRE_MODELS[family], "my_table")


@pytest.mark.parametrize("family", FAMILIES)
def test_duplicate_key_shows_the_offending_rows(family: str) -> None:
    data = {k: [v[0], v[0]] for k, v in GOOD[family].items()}
    with pytest.raises(SchemaError) as info:
        validate(pl.DataFrame(data), WIRE_MODELS[family], "my_table")
    message = str(info.value)
    assert "column 'id' fails field_uniqueness: 2 row(s)" in message and "offending rows" in message


def test_tag_vocabulary_is_enforced() -> None:
    data = dict(GOOD["synapse_tag"], tag=["spine", "dendrite"])
    with pytest.raises(SchemaError, match=r"column 'tag' fails isin(.|\n)*dendrite"):
        validate(pl.DataFrame(data), WIRE_MODELS["synapse_tag"], "ssa")


def test_feature_matrix_schema_is_strict_and_refuses_nan() -> None:
    schema = feature_matrix_schema({"a_um": "Float64"})
    ok = pl.DataFrame({"nucleus_id": [1, 2], "root_id": [3, 0], "a_um": [1.0, None]})
    assert validate(ok, schema, "fm").height == 2
    with pytest.raises(SchemaError, match="not_nan"):
        validate(ok.with_columns(pl.Series("a_um", [float("nan"), 1.0])), schema, "fm")
    with pytest.raises(SchemaError, match="surprise"):
        validate(ok.with_columns(pl.lit(1).alias("surprise")), schema, "fm")
