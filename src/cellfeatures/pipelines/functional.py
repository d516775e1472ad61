"""Functional properties: coregistered two-photon ROIs joined to digital-twin tuning properties.

Coregistration tables are NOT reference tables: they carry the root id of the same materialization, so
they are joined to the digital-twin table on (root id, session, scan_idx, unit_id) and to cells through
this version's identity map. A cell may have several ROIs (several scans of the same neuron); we report
the count, the ROI with the best `cc_abs` (ties broken by the smallest session, scan_idx, unit_id), plain
means, and circular means for the angles: preferred orientation has period 180 deg, preferred direction
360 deg. Circular mean = atan2(mean sin(k theta), mean cos(k theta)) / k with k = 360 / period; the
resultant length (0..1) says how consistent the ROIs are.
"""

from __future__ import annotations

import math
from typing import Any

import polars as pl

from cellfeatures.errors import ConfigError
from cellfeatures.identity import attributable_cells
from cellfeatures.pipelines.base import BuildContext, FeatureSpec, option, stable_mean, with_family
from cellfeatures.schemas import WIRE_MODELS, validate

FAMILY = "functional"
ROI_KEY = ["root_id", "session", "scan_idx", "unit_id"]
SCALARS = {
    "cc_abs": "cc_abs",
    "cc_max": "cc_max",
    "cc_norm": "cc_norm",
    "OSI": "osi",
    "DSI": "dsi",
    "gOSI": "gosi",
    "gDSI": "gdsi",
}
ANGLES = {"pref_ori": 180.0, "pref_dir": 360.0}


def features(cfg: dict[str, Any]) -> list[FeatureSpec]:
    specs = [
        FeatureSpec("func_roi_count", "Int64", "count", "coregistered ROIs (scan units) of the cell"),
        FeatureSpec("func_dt_roi_count", "Int64", "count", "coregistered ROIs that have digital-twin properties"),
    ]
    for name in SCALARS.values():
        specs.append(FeatureSpec(f"func_best_{name}", "Float64", "ratio", f"{name} of the ROI with the best cc_abs"))
        specs.append(FeatureSpec(f"func_{name}_mean", "Float64", "ratio", f"mean {name} over the cell's ROIs"))
    for name, period in ANGLES.items():
        specs += [
            FeatureSpec(f"func_best_{name}_deg", "Float64", "deg", f"{name} of the ROI with the best cc_abs"),
            FeatureSpec(
                f"func_{name}_circmean_deg",
                "Float64",
                "deg",
                f"circular mean of {name} over ROIs (period {period:g} deg), in [0, {period:g})",
            ),
            FeatureSpec(
                f"func_{name}_resultant",
                "Float64",
                "fraction",
                f"resultant length of {name} over ROIs (period {period:g} deg): 1 = identical",
            ),
        ]
    return with_family(specs, FAMILY)


def inputs(cfg: dict[str, Any]) -> list[str]:
    return [
        option(cfg, "coregistration_table", "coregistration_manual_v4", FAMILY),
        option(cfg, "digital_twin_table", "digital_twin_properties_bcm_coreg_v4", FAMILY),
    ]


def circular_mean_deg(angle: pl.Expr, period: float) -> tuple[pl.Expr, pl.Expr]:
    """(circular mean in [0, period), resultant length) of angles in degrees with the given period."""
    k = 2 * math.pi / period
    c = stable_mean((angle * k).cos())
    s = stable_mean((angle * k).sin())
    mean = (pl.arctan2(s, c) / k) % period
    return mean, (c**2 + s**2).sqrt()


def build(ctx: BuildContext, cfg: dict[str, Any]) -> pl.LazyFrame:
    coreg_table, dt_table = inputs(cfg)
    if not coreg_table or not dt_table:
        raise ConfigError("[features.functional] needs coregistration_table and digital_twin_table")
    coreg = validate(ctx.collect(coreg_table), WIRE_MODELS["coregistration"], coreg_table)
    dt = validate(ctx.collect(dt_table), WIRE_MODELS["digital_twin"], dt_table)
    rois = (
        coreg.filter(pl.col("valid").fill_null(True))
        .select(pl.col("pt_root_id").alias("root_id"), "session", "scan_idx", "unit_id")
        .unique()
    )
    props = (
        dt.filter(pl.col("valid").fill_null(True))
        .select(
            pl.col("pt_root_id").alias("root_id"),
            "session",
            "scan_idx",
            "unit_id",
            *[pl.col(c).cast(pl.Float64) for c in (*SCALARS, *ANGLES)],
        )
        .unique(ROI_KEY, keep="last", maintain_order=True)
    )
    cells = attributable_cells(ctx.identity).select("root_id", "nucleus_id").lazy()
    roi_counts = (
        rois.lazy()
        .join(cells, on="root_id", how="inner")
        .group_by("nucleus_id")
        .agg(pl.len().cast(pl.Int64).alias("func_roi_count"))
    )
    joined = rois.lazy().join(props.lazy(), on=ROI_KEY, how="inner").join(cells, on="root_id", how="inner")
    best = (
        joined.sort(
            ["nucleus_id", "cc_abs", "session", "scan_idx", "unit_id"],
            descending=[False, True, False, False, False],
            nulls_last=True,
        )
        .group_by("nucleus_id", maintain_order=True)
        .first()
        .select(
            "nucleus_id",
            *[pl.col(c).alias(f"func_best_{n}") for c, n in SCALARS.items()],
            *[pl.col(c).alias(f"func_best_{c}_deg") for c in ANGLES],
        )
    )
    aggs: list[pl.Expr] = [pl.len().cast(pl.Int64).alias("func_dt_roi_count")]
    aggs += [stable_mean(pl.col(c)).alias(f"func_{n}_mean") for c, n in SCALARS.items()]
    for c, period in ANGLES.items():
        mean, resultant = circular_mean_deg(pl.col(c).drop_nulls(), period)
        aggs += [mean.alias(f"func_{c}_circmean_deg"), resultant.alias(f"func_{c}_resultant")]
    stats = joined.group_by("nucleus_id").agg(aggs)
    names = [s.name for s in features(cfg)]
    out = (
        ctx.identity.select("nucleus_id")
        .lazy()
        .join(roi_counts, on="nucleus_id", how="left")
        .join(stats, on="nucleus_id", how="left")
        .join(best, on="nucleus_id", how="left")
        .with_columns(pl.col("func_roi_count").fill_null(0), pl.col("func_dt_roi_count").fill_null(0))
    )
    return out.select("nucleus_id", *names)
