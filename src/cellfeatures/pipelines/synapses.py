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

Two execution strategies build the same 21-byte records and aggregate them with the same expressions,
so their results are bit-for-bit equal (tested): one lazy plan for small tables, and above
`bucketed_above_rows` (2M synapses) a range-partitioned, bucketed one in bounded memory (`_bucketed`;
337M synapses + 204M tags: ~39 s and 1.4 GiB peak on 2 cores, see benchmarks/README.md). Options in
[features.synapses]: engine (auto / lazy / bucketed), range_rows, buckets, bucketed_above_rows.
"""

from __future__ import annotations

import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.ipc  # makes pa.ipc available

from cellfeatures.errors import ConfigError, SchemaError
from cellfeatures.normalize import (
    NO_TAG,
    TAG_CODES,
    UNKNOWN_TAG,
    canonical_cell_types,
    canonical_synapse_tags,
    canonical_synapses,
)
from cellfeatures.pipelines.base import (
    IDENTITY_TABLE,
    BuildContext,
    FeatureSpec,
    option,
    stable_mean,
    with_family,
)
from cellfeatures.schemas import WIRE_MODELS, validate
from cellfeatures.vocab import EXC, INH, check_spellings, harmonise_expr

FAMILY = "synapses"
PARTNER_CLASS = pl.Enum([EXC, INH])
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
        .select("root_id", pl.col("partner_class").list.first().cast(PARTNER_CLASS))
    )


def clean_synapses(synapses: pl.LazyFrame) -> pl.LazyFrame:
    """Drop autapses and synapses with root id 0 on either side."""
    return synapses.filter(
        (pl.col("pre_root_id") != pl.col("post_root_id")) & (pl.col("pre_root_id") != 0) & (pl.col("post_root_id") != 0)
    )


# A synapse record: one row per (synapse, attributable cell on one side) and direction: the cell's own
# `root` (an attributable root carries exactly one nucleus, so it names the cell), the `partner` root, the
# size, and one `flags` byte packing what is known of the partner and the target: bit 0 partner has a
# nucleus, bits 1-2 partner class (0 none, 1 excitatory, 2 inhibitory), bits 3-4 tag (0 none, 1 spine,
# 2 shaft, 3 soma). Every flag comes from a hash-set membership test (`is_in`), about ten times cheaper than
# a join per synapse side (measured 0.015 s against 0.12 s for 3.4M synapses); records are 21 bytes with
# Int32 sizes (plus the distance when positions are used).
HAS_NUCLEUS, CLASS_SHIFT, TAG_SHIFT = 1, 1, 3
CLASS_CODES = {EXC: 1, INH: 2}


@dataclass(frozen=True)
class RootSets:
    """The roots the records need to know about, each sorted ascending."""

    cells: pl.Series  # attributable cells
    nucleus: pl.Series  # roots carrying at least one nucleus
    exc: pl.Series  # roots of class-labelled partners, by class
    inh: pl.Series


def root_sets(cells: pl.DataFrame, nucleus_roots: pl.DataFrame, classes: pl.DataFrame | None) -> RootSets:
    """RootSets from attributable cells, roots with a nucleus and partner classes (root_id, partner_class)."""

    def roots(frame: pl.DataFrame) -> pl.Series:
        return frame.get_column("root_id").unique().sort()

    def of_class(klass: str) -> pl.Series:
        if classes is None:
            return pl.Series("root_id", [], dtype=pl.Int64)
        return roots(classes.filter(pl.col("partner_class") == klass))

    return RootSets(cells=roots(cells), nucleus=roots(nucleus_roots), exc=of_class(EXC), inh=of_class(INH))


def direction_records(
    syn: pl.LazyFrame, roots: RootSets, d: str, with_tags: bool, positions: pl.LazyFrame | None
) -> pl.LazyFrame:
    """Records (root, partner, size_vx, flags [, dist_um]) of direction d from synapses (with tag_code).

    positions: root_id -> pos_*_nm of the cells, to add each synapse's distance from its cell's nucleus.
    Both execution strategies build exactly these records and aggregate them with the same expressions,
    so their results are identical.
    """
    own, other = DIRECTIONS[d]
    partner = pl.col(other)
    flags = (
        partner.is_in(roots.nucleus.implode()).cast(pl.UInt8) * HAS_NUCLEUS
        + partner.is_in(roots.exc.implode()).cast(pl.UInt8) * (CLASS_CODES[EXC] * 2**CLASS_SHIFT)
        + partner.is_in(roots.inh.implode()).cast(pl.UInt8) * (CLASS_CODES[INH] * 2**CLASS_SHIFT)
    )
    if with_tags:
        flags = flags + pl.col("tag_code") * 2**TAG_SHIFT
    columns: list[pl.Expr] = [
        pl.col(own).alias("root"),
        partner.alias("partner"),
        pl.col("size_vx"),
        flags.cast(pl.UInt8).alias("flags"),
    ]
    if positions is None:
        return syn.filter(pl.col(own).is_in(roots.cells.implode())).select(columns)
    # Polars fuses multiply-add chains into FMAs in some plans and not in others, which moves the last bit
    # of a distance depending on the execution strategy. A horizontal sum avoids the main chain, and
    # rounding each distance to 1e-6 um (a picometre, far below the 4 nm voxel) makes the features
    # identical whichever plan computed them.
    dx, dy, dz = (pl.col(f"ctr_{a}_nm") - pl.col(f"pos_{a}_nm") for a in "xyz")
    return syn.join(positions, left_on=own, right_on="root_id", how="inner").select(
        *columns,
        # plain sums: a missing coordinate gives no distance (sum_horizontal would read it as a zero offset)
        ((dx * dx + dy * dy + dz * dz).sqrt() / 1000.0).round(6).alias("dist_um"),
    )


def record_aggregates(with_tags: bool, with_labels: bool, with_positions: bool) -> list[pl.Expr]:
    """Per-(root, direction) aggregations of records: named like the features without prefix, or `_x` helpers."""
    flags = pl.col("flags")
    tag = flags // 2**TAG_SHIFT
    klass = flags // 2**CLASS_SHIFT % 4
    aggs: list[pl.Expr] = [
        pl.len().cast(pl.Int64).alias("count"),
        pl.col("size_vx").count().cast(pl.Int64).alias("_sized"),  # non-null sizes: the mean's denominator
        pl.col("size_vx").cast(pl.Float64).median().alias("size_median_vx"),
        pl.col("size_vx").cast(pl.Int64).sum().alias("size_sum_vx"),
        pl.col("partner").n_unique().cast(pl.Int64).alias("partners"),
        pl.col("partner").filter(flags % 2 == HAS_NUCLEUS).n_unique().cast(pl.Int64).alias("_partners_nuc"),
    ]
    # tagged and labelled counts are the sums of these (one aggregation less each)
    if with_tags:
        aggs += [(tag == TAG_CODES[t]).sum().cast(pl.Int64).alias(f"_{t}") for t in TAGS]
    if with_labels:
        aggs += [
            (klass == CLASS_CODES[EXC]).sum().cast(pl.Int64).alias("_exc"),
            (klass == CLASS_CODES[INH]).sum().cast(pl.Int64).alias("_inh"),
        ]
    if with_positions:
        aggs += [
            stable_mean(pl.col("dist_um")).alias("soma_dist_mean_um"),
            pl.col("dist_um").quantile(0.9, interpolation="linear").alias("soma_dist_p90_um"),
        ]
    return aggs


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


def _bucketed(
    syn: pl.LazyFrame,
    id_bounds: tuple[int | None, int | None],
    tags: pl.LazyFrame | None,
    tag_table: str,
    roots: RootSets,
    positions: pl.LazyFrame | None,
    flags: tuple[bool, bool, bool],
    scratch: Path,
    rows: int,
    range_rows: int,
    buckets: int,
) -> pl.DataFrame:
    """Bounded-memory execution for big tables, in two phases; returns per-(root, out) aggregates.

    1. Synapses and target tags are read one synapse-id range at a time (both tables are sorted by
       synapse id in CAVE exports, so Parquet statistics skip everything outside the range); synapses
       touching no attributable cell are dropped while reading; tags are attached through a dense array
       over the range's ids (no hash table). Each direction's records are sorted by root and spilled to
       one Arrow file per range, one record batch per (bucket of consecutive cell roots, direction).
    2. A bucket's batches from all ranges are already sorted runs: sorting their concatenation is cheap
       (0.06 s for 5.4M records, against 0.25 s unsorted), and the group-by with exact medians and
       distinct partners then runs on contiguous groups (0.1 s, against 0.48 s for a hash group-by).
    """
    with_tags, with_labels, with_positions = flags
    lo, hi = id_bounds
    if lo is None or hi is None or roots.cells.is_empty():
        return pl.DataFrame()
    n_ranges = max(1, -(-rows // range_rows))
    edges = [lo + (hi + 1 - lo) * i // n_ranges for i in range(n_ranges + 1)]
    cell_roots = roots.cells.implode()
    per_bucket = -(-roots.cells.len() // buckets)
    bucket_starts = roots.cells.gather(list(range(per_bucket, roots.cells.len(), per_bucket)))
    buckets = bucket_starts.len() + 1
    files: list[Path] = []

    def range_plan(a: int, b: int) -> pl.LazyFrame:
        """Synapses of ids [a, b) touching a cell, with their tags attached (the tags are read here)."""
        in_range = (pl.col("synapse_id") >= a) & (pl.col("synapse_id") < b)
        # synapses that touch no attributable cell contribute to no feature: drop them while reading
        touches_a_cell = pl.col("pre_root_id").is_in(cell_roots) | pl.col("post_root_id").is_in(cell_roots)
        plan = syn.filter(in_range & touches_a_cell)
        if tags is not None:
            plan = with_tag_codes(plan, tags.filter(in_range).collect(), tag_table, a, b)
        return plan

    ranges = list(pairwise(edges))
    # One thread writes range r's spill while range r + 1 is read (pyarrow releases the GIL); waiting for
    # it before the next submit keeps at most one range's records in flight. Another reads the next range's
    # tags meanwhile (337M: 38.0 and 38.3 s against 39.3 and 39.1 s, two interleaved rounds).
    with ThreadPoolExecutor(max_workers=1) as io, ThreadPoolExecutor(max_workers=1) as ahead, ExitStack() as files_open:
        pending: Future[None] | None = None
        next_plan = ahead.submit(range_plan, *ranges[0])
        for i in range(len(ranges)):
            plan = next_plan.result()
            if i + 1 < len(ranges):
                next_plan = ahead.submit(range_plan, *ranges[i + 1])
            chunk = plan.collect()
            chunk = chunk.with_columns(narrow_ints(chunk.get_column("size_vx")))
            # both directions at once: measured 0.69 s against 0.84 s per 10M synapses one after the other
            records = pl.collect_all(
                [direction_records(chunk.lazy(), roots, d, with_tags, positions).sort("root") for d in DIRECTIONS]
            )
            del chunk
            if pending is not None:
                pending.result()
            files.append(scratch / f"range-{len(files):05d}.arrow")
            cuts = [bucket_cuts(r.get_column("root"), bucket_starts) for r in records]
            pending = io.submit(_write_batches, records, cuts, files[-1])
            del records
        if pending is not None:
            pending.result()

        aggs = record_aggregates(with_tags, with_labels, with_positions)
        parts = []
        # plain reads, not memory maps: mapped pages would stay in the RSS until the end; the next batch
        # is read while this one is aggregated
        readers = [pa.ipc.open_file(files_open.enter_context(pa.OSFile(str(f)))) for f in files]

        def read_batches(i: int) -> pl.DataFrame:
            # a range whose sizes needed Int64 widens the others (vertical_relaxed); one contiguous chunk, since
            # polars sorts 68 chunks three times slower than their concatenation (0.17 s against 0.06 s)
            runs = [pl.DataFrame(reader.get_batch(i)) for reader in readers]
            return pl.concat(runs, how="vertical_relaxed", rechunk=True)

        upcoming = io.submit(read_batches, 0)
        for i in range(2 * buckets):  # batch 2 * bucket + (direction is out)
            current = upcoming.result()
            if i + 1 < 2 * buckets:
                upcoming = io.submit(read_batches, i + 1)
            bucket_records = current.sort("root")
            del current
            if bucket_records.height:
                aggregated = bucket_records.group_by("root", maintain_order=True).agg(aggs)
                parts.append(aggregated.with_columns(pl.lit(i % 2 == 1).alias("out")))
    return pl.concat(parts) if parts else pl.DataFrame()


def bucket_cuts(sorted_roots: pl.Series, bucket_starts: pl.Series) -> list[int]:
    """Where each bucket begins in sorted_roots: at the first record of its first root, never inside a run
    of equal roots (a cell split over two buckets would be aggregated twice)."""
    return sorted_roots.search_sorted(bucket_starts, side="left").to_list()


def narrow_ints(values: pl.Series) -> pl.Series:
    """values as Int32 when every one fits (real cleft sizes do), else unchanged: 4 bytes less per record."""
    if values.dtype == pl.Int32 or not values.dtype.is_integer():
        return values
    lo, hi = values.min(), values.max()
    if lo is None or (isinstance(lo, int) and isinstance(hi, int) and lo >= -(2**31) and hi < 2**31):
        return values.cast(pl.Int32)
    return values


def _write_batches(frames: list[pl.DataFrame], cuts: list[list[int]], path: Path) -> None:
    """One Arrow IPC file; batch k * len(frames) + j is frame j's slice k between its cuts (empty ones too)."""
    tables = [frame.to_arrow() for frame in frames]
    bounds = [[0, *c, frame.height] for frame, c in zip(frames, cuts, strict=True)]
    schema = tables[0].schema
    with pa.ipc.new_file(str(path), schema) as writer:
        for k in range(len(bounds[0]) - 1):
            for table, b in zip(tables, bounds, strict=True):
                part = table.slice(b[k], b[k + 1] - b[k]).combine_chunks()
                columns = [c.chunk(0) if c.num_chunks else pa.array([], type=c.type) for c in part.columns]
                writer.write_batch(pa.record_batch(columns, schema=schema))


def with_tag_codes(synapses: pl.LazyFrame, tags: pl.DataFrame, table: str, lo: int, hi: int) -> pl.LazyFrame:
    """Add tag_code (see canonical_synapse_tags; 0 when untagged) to synapses with ids in [lo, hi).

    Duplicated predictions are refused (they would double-count). A dense array over the id range takes
    the tags by position: measured on 10M synapses, 0.09 s against 0.27 s for a sorted merge and 1.1 s for
    a hash join, which remains the fallback when the range is too sparse for an array. The dense array
    also proves uniqueness for free: n distinct ids fill n slots (a row without a tag marks its slot too).
    """
    refuse_unknown_tags(tags, table)
    tag_ids, codes = tags.get_column("synapse_id"), tags.get_column("tag_code")
    if hi - lo <= DENSE_TAG_SPAN:
        slots = np.zeros(hi - lo, dtype=np.uint8)
        slots[tag_ids.to_numpy() - lo] = codes.to_numpy() + 1  # 1 + code: an untagged row still fills its slot
        if np.count_nonzero(slots) == tag_ids.len():
            dense = pl.Series(np.maximum(slots, 1) - 1)
            return synapses.with_columns(pl.lit(dense).gather(pl.col("synapse_id") - lo).alias("tag_code"))
    if not tag_ids.is_unique().all():
        dupes = tag_ids.filter(tag_ids.is_duplicated()).unique().sort().head(5).to_list()
        raise SchemaError(table, f"- column 'target_id' is not unique: duplicated synapse ids, e.g. {dupes}")
    coded = tags.lazy().select("synapse_id", "tag_code")
    return synapses.join(coded, on="synapse_id", how="left").with_columns(pl.col("tag_code").fill_null(NO_TAG))


def refuse_unknown_tags(tags: pl.DataFrame, table: str) -> None:
    """A tag other than spine/shaft/soma would silently count as untagged: name its rows instead."""
    unknown = tags.filter(pl.col("tag_code") == UNKNOWN_TAG)
    if unknown.height:
        ids = unknown.get_column("synapse_id").head(5).to_list()
        raise SchemaError(
            table,
            f"- column 'tag': {unknown.height} value(s) other than {', '.join(TAG_CODES)}, at target_id e.g. {ids}",
        )


DENSE_TAG_SPAN = 2**28  # ids per range up to which tags are looked up in a dense byte array (256 MiB)


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
    tags = None
    if tag_table:
        raw_tags = ctx.scan(tag_table)
        if raw_tags.select(pl.len()).collect().item() <= max_validate:
            raw_tags = validate(raw_tags.collect(), WIRE_MODELS["synapse_tag"], tag_table).lazy()
        tags = canonical_synapse_tags(raw_tags)
    cells = attributable_cells(ctx.identity)
    if label_table:  # the partner-label table is validated like any label table: it shapes E/I fractions
        validate(ctx.collect(label_table), WIRE_MODELS["cell_type"], label_table)
        check_spellings(ctx.scan(label_table), label_table)
    classes = partner_classes(ctx.scan(label_table), ctx.identity).collect() if label_table else None
    roots = root_sets(cells, nucleus_roots(ctx.identity), classes)
    positions = cells.lazy().select("root_id", "pos_x_nm", "pos_y_nm", "pos_z_nm") if with_positions else None
    flags = (bool(tag_table), bool(label_table), with_positions)

    if engine == "bucketed" or (engine == "auto" and rows > option(cfg, "bucketed_above_rows", 2_000_000, FAMILY)):
        # file statistics bound the ids when the source has them, else the id column alone is read
        bounds = ctx.source.column_range(syn_table, "id")
        if bounds is None or not all(isinstance(v, int) for v in bounds):
            extremes = raw_syn.select(pl.col("id").min().alias("lo"), pl.col("id").max().alias("hi")).collect()
            bounds = (extremes["lo"][0], extremes["hi"][0])
        with tempfile.TemporaryDirectory(dir=ctx.scratch) as scratch:
            aggregated = _bucketed(
                syn,
                bounds,
                tags,
                tag_table,
                roots,
                positions,
                flags,
                Path(scratch),
                rows,  # counted above from metadata: no second pass over the table
                # 5M-synapse ranges stay in cache; past 32 ranges, phase 2 would merge too many runs per bucket
                # (337M: 42.0 s with 34 ranges of 10M, 43.9 s with 68 of 5M; 100M: 5M ranges 4% faster than 10M)
                option(cfg, "range_rows", max(5_000_000, -(-rows // 32)), FAMILY),
                # enough buckets that one holds ~6M synapses' records: phase-2 memory stays flat
                option(cfg, "buckets", max(16, -(-rows // 6_000_000)), FAMILY),
            ).lazy()
    else:
        if tags is not None:
            refuse_unknown_tags(tags.filter(pl.col("tag_code") == UNKNOWN_TAG).collect(), tag_table)
            syn = syn.join(tags, on="synapse_id", how="left").with_columns(pl.col("tag_code").fill_null(NO_TAG))
        records = pl.concat(
            [
                direction_records(syn, roots, d, flags[0], positions).with_columns(pl.lit(d == "out").alias("out"))
                for d in DIRECTIONS
            ]
        )
        aggregated = records.group_by("root", "out").agg(record_aggregates(*flags))
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
    return out.with_columns([pl.col(name).fill_null(value) for name, value in zero.items()]).select(
        "nucleus_id", *[s.name for s in features(cfg)]
    )


def _dtype(name: str, cfg: dict[str, Any]) -> pl.DataType:
    spec = next(s for s in features(cfg) if s.name == name)
    return pl.Int64() if spec.dtype == "Int64" else pl.Float64()
