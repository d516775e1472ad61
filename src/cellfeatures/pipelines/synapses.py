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

Two execution strategies, one set of kernels (synapse_kernels, compiled with numba): for small tables
the whole table is one frame; above `bucketed_above_rows` (2M synapses) a range-partitioned, bucketed plan
in bounded memory (`synapse_ranges`, run here or as Dask tasks). Both build the same records and
aggregate them with the same kernel, and no aggregate depends on the records' order, so their results
are bit-for-bit equal (tested); benchmarks/README.md has the speed. Options in [features.synapses]:
engine (auto / lazy / bucketed), range_rows, buckets (at most this many: a bucket's cell count is rounded
up to a power of two), bucketed_above_rows.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from cellfeatures.errors import ConfigError
from cellfeatures.pipelines.base import (
    IDENTITY_TABLE,
    BuildContext,
    FeatureSpec,
    option,
    with_family,
)
from cellfeatures.pipelines.synapse_records import (
    DIRECTIONS,
    TAGS,
    RootSets,
    clean_synapses,
    root_sets,
)
from cellfeatures.schemas import WIRE_MODELS, validate
from cellfeatures.sources.normalize import (
    NO_TAG,
    UNKNOWN_TAG,
    canonical_cell_types,
    canonical_synapse_tags,
    canonical_synapses,
)
from cellfeatures.vocab import EXC, INH, check_spellings, harmonise_expr

FAMILY = "synapses"
PARTNER_CLASS = pl.Enum([EXC, INH])


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
        .select("root_id", pl.col("partner_class").list.first().cast(PARTNER_CLASS))
    )


def direction_features(
    aggregated: pl.LazyFrame, cells: pl.LazyFrame, d: str, with_tags: bool, with_labels: bool, with_positions: bool
) -> pl.LazyFrame:
    """Features of direction d (nucleus_id + syn_{d}_*) from per-(root, out) aggregates of both directions."""
    p = f"syn_{d}_"
    count = pl.col("count").cast(pl.Float64)
    sized = pl.col("_sized").cast(pl.Float64)
    derived: list[pl.Expr] = [
        # sizes are integers, so their sum is exact (below 2**53) and sum / n is the float mean bit for bit,
        # whatever the summation order; a count is cheaper to aggregate than a mean
        pl.when(sized > 0).then(pl.col("size_sum_vx").cast(pl.Float64) / sized).alias("size_mean_vx"),
        (count / pl.col("partners")).alias("per_partner"),
        (pl.col("_partners_nuc") / pl.col("partners")).alias("frac_partners_with_nucleus"),
    ]
    if with_tags:
        tagged = pl.sum_horizontal(*(f"_{t}" for t in TAGS)).cast(pl.Float64)
        derived.append((tagged / count).alias("frac_tagged"))
        derived += [pl.when(tagged > 0).then(pl.col(f"_{t}") / tagged).alias(f"frac_{t}") for t in TAGS]
    if with_labels:
        labelled = (pl.col("_exc") + pl.col("_inh")).cast(pl.Float64)
        derived += [
            (labelled / count).alias("frac_partner_labelled"),
            pl.when(labelled > 0).then(pl.col("_exc") / labelled).alias("frac_exc"),
            pl.when(labelled > 0).then(pl.col("_inh") / labelled).alias("frac_inh"),
        ]
    names = [s.name for s in _direction_specs(d, with_tags, with_labels, with_positions)]
    return (
        aggregated.filter(pl.col("out") == (d == "out"))
        .with_columns(derived)
        .join(cells.select("root_id", "nucleus_id"), left_on="root", right_on="root_id", how="inner")
        .rename({n.removeprefix(p): n for n in names})
        .select("nucleus_id", *names)
    )


def build(ctx: BuildContext, cfg: dict[str, Any]) -> pl.LazyFrame:
    from cellfeatures.identity import attributable_cells, nucleus_roots

    syn_table = option(cfg, "synapse_table", "synapses_pni_2", FAMILY)
    tag_table = option(cfg, "target_table", "", FAMILY)
    label_table = option(cfg, "partner_label_table", "", FAMILY)
    with_positions = bool(option(cfg, "soma_distance", True, FAMILY))
    max_validate = option(cfg, "validate_max_rows", 5_000_000, FAMILY)
    engine = option(cfg, "engine", "auto", FAMILY)
    if engine not in ("auto", "lazy", "bucketed"):
        raise ConfigError(f"[features.synapses] engine must be auto, lazy or bucketed, got {engine!r}")
    res = ctx.source.position_resolution_nm

    raw_syn = ctx.scan(syn_table)
    rows = raw_syn.select(pl.len()).collect().item()
    if rows <= max_validate:
        raw_syn = validate(raw_syn.collect(), WIRE_MODELS["synapse"], syn_table).lazy()
    syn = clean_synapses(canonical_synapses(raw_syn, res, positions=with_positions))
    tags, tags_validated = None, False
    if tag_table:
        raw_tags = ctx.scan(tag_table)
        if raw_tags.select(pl.len()).collect().item() <= max_validate:
            raw_tags = validate(raw_tags.collect(), WIRE_MODELS["synapse_tag"], tag_table).lazy()
            tags_validated = True  # target_id unique among other things
        tags = canonical_synapse_tags(raw_tags)
    cells = attributable_cells(ctx.identity)
    if label_table:  # the partner-label table is validated like any label table: it shapes E/I fractions
        validate(ctx.collect(label_table), WIRE_MODELS["cell_type"], label_table)
        check_spellings(ctx.scan(label_table), label_table)
    classes = partner_classes(ctx.scan(label_table), ctx.identity).collect() if label_table else None
    roots = root_sets(cells, nucleus_roots(ctx.identity), classes)
    positions = cell_positions(cells, roots) if with_positions else None
    flags = (bool(tag_table), bool(label_table), with_positions)

    if roots.cells.is_empty():
        aggregated = pl.DataFrame().lazy()
    elif engine == "bucketed" or (engine == "auto" and rows > option(cfg, "bucketed_above_rows", 2_000_000, FAMILY)):
        aggregated = _two_phase(ctx, cfg, raw_syn, syn, tags, syn_table, tag_table, roots, positions, flags, rows)
    else:
        if tags is not None:
            from cellfeatures.pipelines.synapse_records import refuse_duplicated_tags, refuse_unknown_tags

            if not tags_validated:  # too big to validate (or `engine = "lazy"` forced on a big table): read once
                tags = tags.collect().lazy()  # for the two checks and the join, not a scan each
            refuse_unknown_tags(tags.filter(pl.col("tag_code") == UNKNOWN_TAG).collect(), tag_table)
            if not tags_validated:
                refuse_duplicated_tags(tags.select("synapse_id").collect(), tag_table)
            syn = syn.join(tags, on="synapse_id", how="left").with_columns(pl.col("tag_code").fill_null(NO_TAG))
        aggregated = _one_frame(syn.collect(), roots, positions, flags).lazy()
    frames = (
        [direction_features(aggregated, cells.lazy(), d, *flags) for d in DIRECTIONS]
        if aggregated.collect_schema().names()
        else []
    )

    # Attributable cells without any synapse have measured zero counts; the rest stay null.
    zero = {s.name: 0 for s in features(cfg) if s.name.endswith(("_count", "_partners", "_size_sum_vx"))}
    out = cells.lazy().select("nucleus_id")
    for frame in frames:
        out = out.join(frame, on="nucleus_id", how="left")
    missing = [n for n in [s.name for s in features(cfg)] if n not in out.collect_schema().names()]
    out = out.with_columns([pl.lit(None, dtype=_dtype(n, cfg)).alias(n) for n in missing])
    out = out.with_columns([pl.col(name).fill_null(value) for name, value in zero.items()])
    names = [s.name for s in features(cfg)]
    subset = ctx.source.info(syn_table).cells_from
    if subset:  # fetched for chosen cells: every other cell's synapses are partial, so not measured
        chosen = ctx.scan(subset).select("target_id").collect().get_column("target_id").implode()
        out = out.with_columns(
            pl.when(pl.col("nucleus_id").is_in(chosen)).then(pl.col(n)).otherwise(None).alias(n) for n in names
        )
    return out.select("nucleus_id", *names)


def coverage(matrix: pl.DataFrame, identity: pl.DataFrame, subset: str | None) -> dict[str, Any]:
    """How many cells have synapse features, and why the others have none (the run summary and cards say it)."""
    flags = identity.select("nucleus_id", "multi_soma", "missing_root")
    cells = matrix.select("nucleus_id", "syn_in_count", "syn_out_count").join(flags, on="nucleus_id", how="left")
    measured = pl.col("syn_in_count").is_not_null()
    counts = cells.select(
        measured.sum().alias("with_synapse_features"),
        (measured & (pl.col("syn_in_count") + pl.col("syn_out_count") == 0)).sum().alias("no_synapses"),
        (~measured & pl.col("missing_root")).sum().alias("root_0"),
        (~measured & pl.col("multi_soma") & ~pl.col("missing_root")).sum().alias("multi_soma"),
        (~measured & ~pl.col("multi_soma") & ~pl.col("missing_root")).sum().alias("outside_fetched_cells"),
    ).row(0, named=True)
    return {"cells": matrix.height, **{k: int(v) for k, v in counts.items()}, "cells_from": subset}


def cell_positions(cells: pl.DataFrame, roots: RootSets) -> np.ndarray:
    """The cells' nucleus positions (nm), one row per cell in roots.cells order (NaN where unknown)."""
    aligned = pl.DataFrame({"root_id": roots.cells}).join(
        cells.select("root_id", "pos_x_nm", "pos_y_nm", "pos_z_nm"), on="root_id", how="left", maintain_order="left"
    )
    return aligned.select(pl.col(f"pos_{a}_nm").cast(pl.Float64).fill_null(np.nan) for a in "xyz").to_numpy()


def _one_frame(
    frame: pl.DataFrame, roots: RootSets, positions: np.ndarray | None, flags: tuple[bool, bool, bool]
) -> pl.DataFrame:
    """The whole table in memory as one bucket: the same kernels as the two-phase plan, so the same bits."""
    from cellfeatures.pipelines import synapse_aggregates as sa
    from cellfeatures.pipelines import synapse_kernels as sk

    table = sk.root_table(roots)
    records = sk.scatter(frame, table, 31, 1, positions)  # one bucket of up to 2**31 cells
    parts = [sa.aggregate(records.batch(out), table, 0, table.cells, out == 1, flags) for out in (0, 1)]
    kept = [p for p in parts if p is not None]
    return pl.concat(kept) if kept else pl.DataFrame()


def _two_phase(
    ctx: BuildContext,
    cfg: dict[str, Any],
    raw_syn: pl.LazyFrame,
    syn: pl.LazyFrame,
    tags: pl.LazyFrame | None,
    syn_table: str,
    tag_table: str,
    roots: RootSets,
    positions: np.ndarray | None,
    flags: tuple[bool, bool, bool],
    rows: int,
) -> pl.LazyFrame:
    """The range-partitioned, bucketed plan (synapse_ranges), on this machine or on the build's Dask engine."""
    from cellfeatures.pipelines import synapse_ranges as sr

    # file statistics bound the ids when the source has them, else the id column alone is read
    bounds = ctx.source.column_range(syn_table, "id")
    if bounds is None or not all(isinstance(v, int) for v in bounds):
        extremes = raw_syn.select(pl.col("id").min().alias("lo"), pl.col("id").max().alias("hi")).collect()
        bounds = (extremes["lo"][0], extremes["hi"][0])
    lo, hi = bounds
    if lo is None or hi is None:
        return pl.DataFrame().lazy()
    # 5M-synapse ranges: 100M 8.60-8.92 s against 9.23-9.32 with 2.5M (and 4% faster than 10M); 337M
    # 29.4-29.7 s, 1.00-1.04 GiB against 28.4-32.5 s, 1.77-1.86 GiB with 34 ranges of 10M. Phase 2 reads
    # every range file for every batch and keeps them open, so locally at most 256 ranges (larger ones past
    # 1.3e9 synapses). On a cluster the range stays 5M whatever the table's size: memory per worker is
    # bounded, and the number of tasks grows instead.
    default_range = 5_000_000 if ctx.engine is not None else max(5_000_000, -(-rows // 256))
    range_rows = option(cfg, "range_rows", default_range, FAMILY)
    # at least 32 buckets, and enough that one holds ~5M synapses' records: phase-2 memory stays flat. 100M
    # synapses, 120k cells: 32 -> 8.35-8.67 s, 1.00-1.05 GiB; 16 -> 8.60-9.19 s, 1.03-1.07 GiB; 8 and 64
    # slower. 337M: 64 -> 26.0-26.5 s, 1.66-1.68 GiB; 57 (one per 6M) -> 26.0-27.5 s, 1.77-1.79 GiB
    buckets = option(cfg, "buckets", max(32, -(-rows // 5_000_000)), FAMILY)
    plan = sr.RangePlan(
        source_config=ctx.source.reopen_config() if ctx.engine is not None else {},
        syn_table=syn_table,
        tag_table=tag_table,
        resolution_nm=tuple(ctx.source.position_resolution_nm),  # type: ignore[arg-type]
        roots=roots,
        positions=positions,
        flags=flags,
        bucket_shift=sr.bucket_shift_for(roots.cells.len(), buckets),
    )
    ranges = sr.plan_ranges(lo, hi, rows, range_rows, taper=ctx.engine is None)
    if ctx.engine is not None:  # a Dask cluster (cellfeatures.pipelines.execution): same units, as tasks
        return ctx.engine.run_two_phase(plan, ranges).lazy()
    with tempfile.TemporaryDirectory(dir=ctx.scratch) as scratch:
        return sr.run_local(syn, tags, plan, ranges, Path(scratch), ctx.tick).lazy()


def _dtype(name: str, cfg: dict[str, Any]) -> pl.DataType:
    spec = next(s for s in features(cfg) if s.name == name)
    return pl.Int64() if spec.dtype == "Int64" else pl.Float64()
