"""Nucleus and position: where the cell is, how big its nucleus is, how deep in cortex, which area.

Depth: the minnie65 pia-aligned frame of the field's `standard-transform` package (it ships its own
data, so it works offline); `depth_method = "y_offset"` is the fallback (y in um minus the pia offset,
ignoring the slight tilt of the volume) for datastacks the package does not know.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from cellfeatures.errors import ConfigError, SchemaError
from cellfeatures.pipelines.base import IDENTITY_TABLE, BuildContext, FeatureSpec, option, with_family
from cellfeatures.schemas import WIRE_MODELS, validate
from cellfeatures.sources.normalize import canonical_nucleus

FAMILY = "nucleus"
PIA_Y_OFFSET_UM = 302.0  # y of pia in the minnie65 frame, for the y_offset fallback
AREAS = ("V1", "AL", "RL", "LM")
MAX_POSITION_NM = 20e6  # 20 mm: beyond any EM volume; such a position is a unit mistake


def features(cfg: dict[str, Any]) -> list[FeatureSpec]:
    nuc = (IDENTITY_TABLE,)
    specs = [
        FeatureSpec(
            "pos_x_nm", "Float64", "nm", "nucleus position x (from the nucleus table, converted once to nm)", inputs=nuc
        ),
        FeatureSpec(
            "pos_y_nm", "Float64", "nm", "nucleus position y (nm); y grows from pia towards white matter", inputs=nuc
        ),
        FeatureSpec("pos_z_nm", "Float64", "nm", "nucleus position z (nm)", inputs=nuc),
        FeatureSpec("nuc_volume_um3", "Float64", "um3", "nucleus volume from the nucleus table", inputs=nuc),
        FeatureSpec(
            "soma_depth_um", "Float64", "um", "cortical depth below pia of the nucleus (see depth_method)", inputs=nuc
        ),
    ]
    area = option(cfg, "area_table", "", FAMILY)
    if area:
        specs += [
            FeatureSpec(
                "nuc_area", "String", "category", "visual area of the nucleus: V1, AL, RL or LM", inputs=(area,)
            ),
            FeatureSpec(
                "nuc_area_border_dist_um", "Float64", "um", "distance to the nearest area border", inputs=(area,)
            ),
        ]
    return with_family(specs, FAMILY)


def inputs(cfg: dict[str, Any]) -> list[str]:
    area = option(cfg, "area_table", "", FAMILY)
    return [area] if area else []


def depth_um(x_nm: np.ndarray, y_nm: np.ndarray, z_nm: np.ndarray, method: str) -> np.ndarray:
    """Depth below pia in um for positions in nm."""
    if method == "standard_transform":
        import warnings

        from standard_transform import minnie_ds  # the field's own minnie65 transform

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            transform = minnie_ds.transform("nm")
        return np.asarray(transform.apply_project("y", np.stack([x_nm, y_nm, z_nm], axis=1)), dtype=np.float64)
    if method == "y_offset":
        return y_nm / 1000.0 - PIA_Y_OFFSET_UM
    raise ConfigError(f"[features.nucleus] depth_method must be 'standard_transform' or 'y_offset', got {method!r}")


def build(ctx: BuildContext, cfg: dict[str, Any]) -> pl.LazyFrame:
    ident = ctx.identity
    method = option(cfg, "depth_method", "standard_transform", FAMILY)
    depth = depth_um(ident["pos_x_nm"].to_numpy(), ident["pos_y_nm"].to_numpy(), ident["pos_z_nm"].to_numpy(), method)
    out = ident.select(
        "nucleus_id",
        "pos_x_nm",
        "pos_y_nm",
        "pos_z_nm",
        pl.col("volume_um3").alias("nuc_volume_um3"),
        pl.Series("soma_depth_um", depth),
    ).lazy()
    area_table = option(cfg, "area_table", "", FAMILY)
    if area_table:
        raw = validate(ctx.collect(area_table), WIRE_MODELS["functional_area"], area_table)
        area = (
            raw.filter(pl.col("valid").fill_null(True))
            .sort("id")
            .group_by("target_id")
            .last()  # the latest annotation per nucleus wins
            .select(
                pl.col("target_id").alias("nucleus_id"),
                pl.col("tag").alias("nuc_area"),
                pl.col("value").cast(pl.Float64).alias("nuc_area_border_dist_um"),
            )
        )
        out = out.join(area.lazy(), on="nucleus_id", how="left")
    return out


def load_identity_nucleus(ctx_source: Any, table: str) -> pl.DataFrame:
    """Read, validate (wire) and canonicalise the nucleus table of a source."""
    raw = validate(ctx_source.scan(table).collect(), WIRE_MODELS["nucleus"], table)
    nuclei = canonical_nucleus(raw.lazy(), ctx_source.position_resolution_nm).collect()
    if nuclei.height == 0:
        raise SchemaError(
            table,
            f"- no valid nucleus ({raw.height} rows, {raw.height - nuclei.height} marked invalid): nothing to build",
        )
    far = nuclei.filter(pl.any_horizontal(pl.col(f"pos_{a}_nm").abs() > MAX_POSITION_NM for a in "xyz"))
    if far.height:
        raise SchemaError(
            table,
            f"- {far.height} nucleus position(s) beyond {MAX_POSITION_NM / 1e6:g} mm from the origin, e.g. nucleus "
            f"{far['nucleus_id'][0]} at ({far['pos_x_nm'][0]:.4g}, {far['pos_y_nm'][0]:.4g}, "
            f"{far['pos_z_nm'][0]:.4g}) nm: wrong position_resolution_nm ({ctx_source.position_resolution_nm} nm "
            f"per unit) or positions in other units",
        )
    return nuclei
