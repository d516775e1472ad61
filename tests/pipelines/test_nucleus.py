"""Nucleus family: positions in nm, volume, depth, area."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from cellfeatures.errors import ConfigError
from cellfeatures.pipelines import nucleus
from tests.conftest import REAL_DATA, context, nucleus_frame


def area_frame(rows: list[tuple[int, str, float]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": range(1, len(rows) + 1),
            "valid": [True] * len(rows),
            "target_id": [r[0] for r in rows],
            "tag": [r[1] for r in rows],
            "value": [r[2] for r in rows],
        }
    )


def test_positions_volume_and_area(snapshot) -> None:
    source = snapshot(
        {
            "nucleus_detection_v0": nucleus_frame([(1, 11, 100, 200, 30), (2, 12, 1, 2, 3)], volume=300.5),
            # nucleus 1 was re-annotated: the latest annotation (highest id) wins; nucleus 2 has none
            "areas": area_frame([(1, "V1", 10.0), (1, "RL", 25.5)]),
        }
    )
    out = (
        nucleus.build(context(source), {"area_table": "areas", "depth_method": "y_offset"}).collect().sort("nucleus_id")
    )
    first = out.row(0, named=True)
    assert (first["pos_x_nm"], first["pos_y_nm"], first["pos_z_nm"]) == (400.0, 800.0, 1200.0)
    assert first["nuc_volume_um3"] == 300.5
    assert first["soma_depth_um"] == pytest.approx(0.8 - nucleus.PIA_Y_OFFSET_UM)
    assert (first["nuc_area"], first["nuc_area_border_dist_um"]) == ("RL", 25.5)
    assert out.row(1, named=True)["nuc_area"] is None


@pytest.mark.skipif(not (REAL_DATA / "cortical_layers").exists(), reason="needs ../shared/data/real")
def test_standard_transform_depth_matches_the_real_tables_own_depth_up_to_a_constant() -> None:
    """The Elabbady table's yr_um_translated is depth in the same rotated frame, with its own pia offset."""
    real = pl.read_parquet(
        REAL_DATA / "cortical_layers" / "minnie_soma_nuc_features_v117era.parquet",
        columns=["centroid_x", "centroid_y", "centroid_z", "yr_um_translated"],
    )
    x, y, z = (
        (real["centroid_x"] * 64).to_numpy(),
        (real["centroid_y"] * 64).to_numpy(),
        (real["centroid_z"] * 40).to_numpy(),
    )
    offset = nucleus.depth_um(x, y, z, "standard_transform") - real["yr_um_translated"].to_numpy()
    assert offset.std() < 1e-6, "same rotation: the difference is one constant"
    assert 20 < offset.mean() < 26, "pia offsets differ by ~23 um"
    fallback = nucleus.depth_um(x, y, z, "y_offset")
    assert np.corrcoef(fallback, real["yr_um_translated"].to_numpy())[0, 1] > 0.98, "the fallback is close"


def test_unknown_depth_method_is_a_config_error(snapshot) -> None:
    source = snapshot({"nucleus_detection_v0": nucleus_frame([(1, 11, 1, 2, 3)])})
    with pytest.raises(ConfigError, match="depth_method"):
        nucleus.build(context(source), {"depth_method": "guess"})
