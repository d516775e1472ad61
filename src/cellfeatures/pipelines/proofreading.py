"""Proofreading status and quality flags.

`proofreading_status_and_strategy` is keyed by root: `valid_id` is the root id when the cell was
assessed, `pt_root_id` the root now. A root that changed since assessment may have lost or gained
proofread parts: `proof_root_changed` says so. Status applies to every nucleus on the root. Cells the
table does not list are not assessed (`proof_assessed` false, statuses null), which is not the same as
'not proofread'. Quality flags come from the identity map: no root, several nuclei on the root.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from cellfeatures.errors import SchemaError
from cellfeatures.pipelines.base import IDENTITY_TABLE, BuildContext, FeatureSpec, option, with_family
from cellfeatures.schemas import WIRE_MODELS, validate

FAMILY = "proofreading"


def features(cfg: dict[str, Any]) -> list[FeatureSpec]:
    specs = [
        FeatureSpec(
            "qc_missing_root",
            "Boolean",
            "bool",
            "nucleus outside the segmentation (root id 0)",
            inputs=(IDENTITY_TABLE,),
        ),
        FeatureSpec(
            "qc_nuclei_on_root",
            "Int64",
            "count",
            "nuclei sharing this root (>1 = merge error; 0 = no root)",
            inputs=(IDENTITY_TABLE,),
        ),
        FeatureSpec(
            "qc_multi_soma",
            "Boolean",
            "bool",
            "several nuclei on the root: root-keyed features withheld",
            inputs=(IDENTITY_TABLE,),
        ),
    ]
    if option(cfg, "table", "proofreading_status_and_strategy", FAMILY):
        specs += [
            FeatureSpec("proof_assessed", "Boolean", "bool", "the root is listed in the proofreading table"),
            FeatureSpec("proof_status_dendrite", "Boolean", "bool", "dendrite proofread (null if not assessed)"),
            FeatureSpec("proof_status_axon", "Boolean", "bool", "axon proofread (null if not assessed)"),
            FeatureSpec(
                "proof_strategy_dendrite",
                "String",
                "category",
                "dendrite strategy: none, dendrite_clean, dendrite_extended",
            ),
            FeatureSpec(
                "proof_strategy_axon",
                "String",
                "category",
                "axon strategy: none, axon_partially_extended, axon_fully_extended, axon_interareal",
            ),
            FeatureSpec(
                "proof_root_changed", "Boolean", "bool", "root changed since assessment (valid_id != pt_root_id)"
            ),
        ]
    return with_family(specs, FAMILY)


def inputs(cfg: dict[str, Any]) -> list[str]:
    table = option(cfg, "table", "proofreading_status_and_strategy", FAMILY)
    return [table] if table else []


# Strategy spellings of proofreading_status_and_strategy (and the vortex tables); anything else is refused
# rather than becoming a category a model would learn from.
STRATEGIES = {
    "strategy_dendrite": ("none", "dendrite_clean", "dendrite_extended"),
    "strategy_axon": (
        "none",
        "axon_partially_extended",
        "axon_fully_extended",
        "axon_interareal",
        "axon_column_truncated",
    ),
}


def check_strategies(raw: pl.DataFrame, table: str) -> None:
    for column, known in STRATEGIES.items():
        bad = raw.with_row_index("row").filter(pl.col(column).is_not_null() & ~pl.col(column).is_in(known))
        if bad.height:
            shown = ", ".join(f"row {r}: {v!r}" for r, v in bad.select("row", column).head(5).rows())
            raise SchemaError(
                table, f"- column {column!r}: {bad.height} row(s) with an unknown strategy ({shown}); known: {known}"
            )


def build(ctx: BuildContext, cfg: dict[str, Any]) -> pl.LazyFrame:
    out = ctx.identity.select(
        "nucleus_id",
        pl.col("missing_root").alias("qc_missing_root"),
        pl.col("nuclei_on_root").alias("qc_nuclei_on_root"),
        pl.col("multi_soma").alias("qc_multi_soma"),
        "root_id",
    ).lazy()
    table = option(cfg, "table", "proofreading_status_and_strategy", FAMILY)
    if table:
        raw = validate(ctx.collect(table), WIRE_MODELS["proofreading"], table)
        check_strategies(raw, table)
        status = (
            raw.filter(pl.col("valid").fill_null(True) & (pl.col("pt_root_id") != 0))
            .sort("id")
            .group_by("pt_root_id")
            .last()  # latest assessment of a root wins
            .select(
                pl.col("pt_root_id").alias("root_id"),
                pl.lit(True).alias("proof_assessed"),
                pl.col("status_dendrite").alias("proof_status_dendrite"),
                pl.col("status_axon").alias("proof_status_axon"),
                pl.col("strategy_dendrite").alias("proof_strategy_dendrite"),
                pl.col("strategy_axon").alias("proof_strategy_axon"),
                (pl.col("valid_id") != pl.col("pt_root_id")).alias("proof_root_changed"),
            )
        )
        out = out.join(status.lazy(), on="root_id", how="left").with_columns(pl.col("proof_assessed").fill_null(False))
    return out.select("nucleus_id", *[s.name for s in features(cfg)])
