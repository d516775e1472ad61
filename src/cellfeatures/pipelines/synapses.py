"""Synapses, inputs and outputs, per cell: counts, sizes, target tags, partners, partner classes, distances.

Inputs of a cell are synapses whose post root is the cell's root; outputs, whose pre root is. Excluded
before anything is counted: invalid rows, autapses (pre root == post root) and root id 0 on either side.
Only cells whose root carries exactly one nucleus get synapse features (identity.attributable); the
others keep nulls, since their synapses cannot be split between the merged nuclei.

Target tags (`spine`/`shaft`/`soma`, from the SSA reference table on synapse ids) describe the
postsynaptic side: for inputs, where on this cell the synapse lands; for outputs, where on the partner.
Tag fractions are among tagged synapses; `frac_tagged` says how many were tagged.

Partner classes come from a configurable label table (`partner_label_table`), harmonised to
excitatory / inhibitory via the vocabulary map: never the cell's own label source unless the user says
so (the dataset builder's leakage check knows which table was used).

Everything stays lazy and is collected with the streaming engine by the store.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from cellfeatures.normalize import canonical_cell_types, canonical_synapse_tags, canonical_synapses
from cellfeatures.pipelines.base import (
    IDENTITY_TABLE,
    BuildContext,
    FeatureSpec,
    option,
    stable_mean,
    with_family,
)
from cellfeatures.schemas import WIRE_MODELS, validate
from cellfeatures.vocab import EXC, INH, harmonise_expr

FAMILY = "synapses"
DIRECTIONS = {"in": ("post_root_id", "pre_root_id"), "out": ("pre_root_id", "post_root_id")}
TAGS = ("spine", "shaft", "soma")


def _direction_specs(d: str, with_tags: bool, with_partner_labels: bool, with_positions: bool) -> list[FeatureSpec]:
    what = "input" if d == "in" else "output"
    partner = "presynaptic" if d == "in" else "postsynaptic"
    specs = [
        FeatureSpec(f"syn_{d}_count", "Int64", "count", f"{what} synapses (autapses and root 0 excluded)"),
        FeatureSpec(f"syn_{d}_size_mean_vx", "Float64", "vx", f"mean cleft size of {what} synapses (voxels)"),
        FeatureSpec(f"syn_{d}_size_median_vx", "Float64", "vx", f"median cleft size of {what} synapses"),
        FeatureSpec(f"syn_{d}_size_sum_vx", "Int64", "vx", f"summed cleft size of {what} synapses"),
        FeatureSpec(f"syn_{d}_partners", "Int64", "count", f"distinct {partner} partner roots"),
        FeatureSpec(f"syn_{d}_per_partner", "Float64", "ratio", f"{what} synapses per distinct partner"),
        FeatureSpec(
            f"syn_{d}_frac_partners_with_nucleus",
            "Float64",
            "fraction",
            f"fraction of distinct {partner} partners whose root carries a nucleus",
        ),
    ]
    if with_tags:
        specs.append(
            FeatureSpec(
                f"syn_{d}_frac_tagged",
                "Float64",
                "fraction",
                f"fraction of {what} synapses with a spine/shaft/soma prediction",
            )
        )
        specs += [
            FeatureSpec(
                f"syn_{d}_frac_{t}",
                "Float64",
                "fraction",
                f"fraction of tagged {what} synapses whose postsynaptic target is {t}",
            )
            for t in TAGS
        ]
    if with_partner_labels:
        specs += [
            FeatureSpec(
                f"syn_{d}_frac_partner_labelled",
                "Float64",
                "fraction",
                f"fraction of {what} synapses whose partner has a class in the partner label table",
            ),
            FeatureSpec(
                f"syn_{d}_frac_exc",
                "Float64",
                "fraction",
                f"fraction of class-labelled {what} synapses whose partner is excitatory",
            ),
            FeatureSpec(
                f"syn_{d}_frac_inh",
                "Float64",
                "fraction",
                f"fraction of class-labelled {what} synapses whose partner is inhibitory",
            ),
        ]
    if with_positions:
        specs += [
            FeatureSpec(
                f"syn_{d}_soma_dist_mean_um",
                "Float64",
                "um",
                f"mean straight-line distance of {what} synapses from the nucleus",
            ),
            FeatureSpec(
                f"syn_{d}_soma_dist_p90_um", "Float64", "um", "90th percentile (linear interpolation) of that distance"
            ),
        ]
    return specs


def features(cfg: dict[str, Any]) -> list[FeatureSpec]:
    syn_table = option(cfg, "synapse_table", "synapses_pni_2", FAMILY)
    tag_table = option(cfg, "target_table", "", FAMILY)
    label_table = option(cfg, "partner_label_table", "", FAMILY)
    with_positions = bool(option(cfg, "soma_distance", True, FAMILY))
    specs = []
    inputs: tuple[str, ...]
    for d in DIRECTIONS:
        for spec in _direction_specs(d, bool(tag_table), bool(label_table), with_positions):
            # the precise tables each feature is computed from: the dataset leakage check reads them
            if "_frac_exc" in spec.name or "_frac_inh" in spec.name or "_partner_labelled" in spec.name:
                inputs = (syn_table, label_table, IDENTITY_TABLE)
            elif "_frac_tagged" in spec.name or any(spec.name.endswith(f"_frac_{t}") for t in TAGS):
                inputs = (syn_table, tag_table, IDENTITY_TABLE)
            else:
                inputs = (syn_table, IDENTITY_TABLE)
            specs.append(FeatureSpec(spec.name, spec.dtype, spec.unit, spec.description, inputs=inputs))
    return with_family(specs, FAMILY)


def inputs(cfg: dict[str, Any]) -> list[str]:
    return [
        t
        for t in (
            option(cfg, "synapse_table", "synapses_pni_2", FAMILY),
            option(cfg, "target_table", "", FAMILY),
            option(cfg, "partner_label_table", "", FAMILY),
        )
        if t
    ]


def partner_classes(labels: pl.LazyFrame, identity: pl.DataFrame) -> pl.LazyFrame:
    """root_id -> partner_class (excitatory/inhibitory) via this version's nucleus roots.

    The label table's nucleus ids are mapped to roots with the identity map (its own pt_root_id may be
    from another version). A root whose nuclei disagree on class gets no class.
    """
    roots = identity.filter(~pl.col("missing_root")).select("nucleus_id", "root_id").lazy()
    return (
        canonical_cell_types(labels)
        .select("nucleus_id", harmonise_expr(pl.col("cell_type"), "class").alias("partner_class"))
        .filter(pl.col("partner_class").is_in([EXC, INH]))
        .unique(["nucleus_id", "partner_class"])
        .join(roots, on="nucleus_id", how="inner")
        .group_by("root_id")
        .agg(pl.col("partner_class").unique())
        .filter(pl.col("partner_class").list.len() == 1)
        .select("root_id", pl.col("partner_class").list.first())
    )


def clean_synapses(synapses: pl.LazyFrame) -> pl.LazyFrame:
    """Drop autapses and synapses with root id 0 on either side."""
    return synapses.filter(
        (pl.col("pre_root_id") != pl.col("post_root_id")) & (pl.col("pre_root_id") != 0) & (pl.col("post_root_id") != 0)
    )


def _aggregate(
    syn: pl.LazyFrame, cells: pl.LazyFrame, d: str, with_tags: bool, with_labels: bool, with_positions: bool
) -> pl.LazyFrame:
    own, other = DIRECTIONS[d]
    p = f"syn_{d}_"
    s = syn.join(cells, left_on=own, right_on="root_id", how="inner").rename({other: "partner"})
    aggs: list[pl.Expr] = [
        pl.len().cast(pl.Int64).alias(f"{p}count"),
        # sizes are integers: their float sum is exact below 2**53, so the mean is order-independent
        pl.col("size_vx").cast(pl.Float64).mean().alias(f"{p}size_mean_vx"),
        pl.col("size_vx").cast(pl.Float64).median().alias(f"{p}size_median_vx"),
        pl.col("size_vx").sum().cast(pl.Int64).alias(f"{p}size_sum_vx"),
        pl.col("partner").n_unique().cast(pl.Int64).alias(f"{p}partners"),
        pl.col("partner").filter(pl.col("partner_has_nucleus")).n_unique().cast(pl.Int64).alias("_partners_nuc"),
    ]
    if with_tags:
        aggs.append(pl.col("tag").is_not_null().sum().cast(pl.Int64).alias("_tagged"))
        aggs += [(pl.col("tag") == t).sum().cast(pl.Int64).alias(f"_{t}") for t in TAGS]
    if with_labels:
        aggs += [
            pl.col("partner_class").is_not_null().sum().cast(pl.Int64).alias("_labelled"),
            (pl.col("partner_class") == EXC).sum().cast(pl.Int64).alias("_exc"),
            (pl.col("partner_class") == INH).sum().cast(pl.Int64).alias("_inh"),
        ]
    if with_positions:
        dist = (
            (pl.col("ctr_x_nm") - pl.col("pos_x_nm")) ** 2
            + (pl.col("ctr_y_nm") - pl.col("pos_y_nm")) ** 2
            + (pl.col("ctr_z_nm") - pl.col("pos_z_nm")) ** 2
        ).sqrt() / 1000.0
        aggs += [
            stable_mean(dist).alias(f"{p}soma_dist_mean_um"),
            dist.quantile(0.9, interpolation="linear").alias(f"{p}soma_dist_p90_um"),
        ]
    count = pl.col(f"{p}count").cast(pl.Float64)
    derived: list[pl.Expr] = [
        (count / pl.col(f"{p}partners")).alias(f"{p}per_partner"),
        (pl.col("_partners_nuc") / pl.col(f"{p}partners")).alias(f"{p}frac_partners_with_nucleus"),
    ]
    if with_tags:
        tagged = pl.col("_tagged").cast(pl.Float64)
        derived.append((tagged / count).alias(f"{p}frac_tagged"))
        derived += [pl.when(tagged > 0).then(pl.col(f"_{t}") / tagged).alias(f"{p}frac_{t}") for t in TAGS]
    if with_labels:
        labelled = pl.col("_labelled").cast(pl.Float64)
        derived += [
            (labelled / count).alias(f"{p}frac_partner_labelled"),
            pl.when(labelled > 0).then(pl.col("_exc") / labelled).alias(f"{p}frac_exc"),
            pl.when(labelled > 0).then(pl.col("_inh") / labelled).alias(f"{p}frac_inh"),
        ]
    names = [s.name for s in _direction_specs(d, with_tags, with_labels, with_positions)]
    return s.group_by("nucleus_id").agg(aggs).with_columns(derived).select("nucleus_id", *names)


def build(ctx: BuildContext, cfg: dict[str, Any]) -> pl.LazyFrame:
    from cellfeatures.identity import attributable_cells, nucleus_roots

    syn_table = option(cfg, "synapse_table", "synapses_pni_2", FAMILY)
    tag_table = option(cfg, "target_table", "", FAMILY)
    label_table = option(cfg, "partner_label_table", "", FAMILY)
    with_positions = bool(option(cfg, "soma_distance", True, FAMILY))
    max_validate = option(cfg, "validate_max_rows", 5_000_000, FAMILY)
    res = ctx.source.position_resolution_nm

    raw_syn = ctx.scan(syn_table)
    if raw_syn.select(pl.len()).collect().item() <= max_validate:
        raw_syn = validate(raw_syn.collect(), WIRE_MODELS["synapse"], syn_table).lazy()
    syn = clean_synapses(canonical_synapses(raw_syn, res))
    if not with_positions:
        syn = syn.drop("ctr_x_nm", "ctr_y_nm", "ctr_z_nm")
    if tag_table:
        raw_tags = ctx.scan(tag_table)
        if raw_tags.select(pl.len()).collect().item() <= max_validate:
            raw_tags = validate(raw_tags.collect(), WIRE_MODELS["synapse_tag"], tag_table).lazy()
        syn = syn.join(canonical_synapse_tags(raw_tags), on="synapse_id", how="left")
    cells = attributable_cells(ctx.identity).lazy()
    roots_with_nucleus = nucleus_roots(ctx.identity).lazy().with_columns(pl.lit(True).alias("partner_has_nucleus"))

    frames = []
    for d, (_own, other) in DIRECTIONS.items():
        side = syn.join(roots_with_nucleus, left_on=other, right_on="root_id", how="left").with_columns(
            pl.col("partner_has_nucleus").fill_null(False)
        )
        if label_table:
            side = side.join(
                partner_classes(ctx.scan(label_table), ctx.identity), left_on=other, right_on="root_id", how="left"
            )
        frames.append(_aggregate(side, cells, d, bool(tag_table), bool(label_table), with_positions))

    # Attributable cells without any synapse have measured zero counts; the rest stay null.
    zero = {s.name: 0 for s in features(cfg) if s.name.endswith(("_count", "_partners", "_size_sum_vx"))}
    out = cells.select("nucleus_id")
    for frame in frames:
        out = out.join(frame, on="nucleus_id", how="left")
    return out.with_columns([pl.col(name).fill_null(value) for name, value in zero.items()])
