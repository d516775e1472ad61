"""Wire dialect coercion and the voxel -> nm conversion, checked on real rows."""

from __future__ import annotations

import polars as pl
import pytest

from cellfeatures.errors import SourceError
from cellfeatures.sources.normalize import canonical_synapses, coerce_wire
from tests.conftest import REAL_DATA


def test_positions_split_from_lists_and_numpy_style_strings() -> None:
    lf = pl.LazyFrame({"id": [1, 2], "pt_position": ["[159402  92838  18005]", "[1, 2, 3]"], "valid": ["t", "f"]})
    out = coerce_wire(lf, "t").collect()
    assert out.columns == ["id", "valid", "pt_position_x", "pt_position_y", "pt_position_z"]
    assert out.row(0) == (1, True, 159402.0, 92838.0, 18005.0) and out.row(1) == (2, False, 1.0, 2.0, 3.0)
    listed = coerce_wire(pl.LazyFrame({"pt_position": [[4, 5, 6]]}), "t").collect()
    assert listed.row(0) == (4.0, 5.0, 6.0)


def test_booleans_times_and_ids_are_coerced() -> None:
    lf = pl.LazyFrame(
        {
            "id": ["7"],
            "valid": ["True"],
            "created": ["2020-11-04 06:48:58.480065+00:00"],
            "superceded_id": [None],
            "size": [3.0],
        }
    )
    out = coerce_wire(lf, "t").collect()
    assert out.schema["id"] == pl.Int64 and out["valid"].to_list() == [True]
    assert out.schema["created"] == pl.Datetime("us", "UTC") and out["created"][0].microsecond == 480065
    assert out["size"].to_list() == [3]


def test_root_ids_that_went_through_float64_are_refused_not_cast() -> None:
    """864691135101289504 as float64 is 864691135101289472: a different (wrong) root."""
    lf = pl.LazyFrame({"id": [1], "pre_pt_root_id": [864691135101289504.0]})
    with pytest.raises(SourceError, match=r"'synapses_pni_2', column 'pre_pt_root_id'(.|\n)*lost precision"):
        coerce_wire(lf, "synapses_pni_2")


@pytest.mark.skipif(not (REAL_DATA / "meshparty").exists(), reason="needs ../shared/data/real")
def test_voxel_to_nm_on_real_rows(sample_source) -> None:
    """The sample stores the real PTC synapses in 4x4x40 nm voxels; converting back gives MeshParty's nm."""
    real_nm = pl.concat(
        [pl.read_ipc(REAL_DATA / "meshparty" / "pre.feather"), pl.read_ipc(REAL_DATA / "meshparty" / "post.feather")]
    ).unique("id")
    canon = canonical_synapses(sample_source.scan("synapses_pni_2"), sample_source.position_resolution_nm).collect()
    joined = canon.join(
        real_nm.select("id", "ctr_pt_position_x", "ctr_pt_position_y", "ctr_pt_position_z"),
        left_on="synapse_id",
        right_on="id",
        how="inner",
    )
    assert joined.height == real_nm.height == 18_894
    for axis in "xyz":
        assert (joined[f"ctr_{axis}_nm"] == joined[f"ctr_pt_position_{axis}"]).all()
