"""The shared vocabulary of the synapse family: cleaned synapses, the roots records need to know about,
class codes, tag checks.

Both plans use it: the one-frame one (synapses.py) and the range-partitioned one (synapse_ranges.py, on
this machine or as Dask tasks); the records themselves are built and aggregated by synapse_kernels.
Knows nothing about plans, engines or files."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from cellfeatures.errors import SchemaError
from cellfeatures.sources.normalize import (
    TAG_CODES,
    UNKNOWN_TAG,
)
from cellfeatures.vocab import EXC, INH

DIRECTIONS = {"in": ("post_root_id", "pre_root_id"), "out": ("pre_root_id", "post_root_id")}


def clean_synapses(synapses: pl.LazyFrame) -> pl.LazyFrame:
    """Drop autapses and synapses with root id 0 on either side."""
    return synapses.filter(
        (pl.col("pre_root_id") != pl.col("post_root_id")) & (pl.col("pre_root_id") != 0) & (pl.col("post_root_id") != 0)
    )


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


def refuse_unknown_tags(tags: pl.DataFrame, table: str) -> None:
    """A tag other than spine/shaft/soma would silently count as untagged: name its rows instead."""
    unknown = tags.filter(pl.col("tag_code") == UNKNOWN_TAG)
    if unknown.height:
        ids = unknown.get_column("synapse_id").head(5).to_list()
        raise SchemaError(
            table,
            f"- column 'tag': {unknown.height} value(s) other than {', '.join(TAG_CODES)}, at target_id e.g. {ids}",
        )


TAGS = ("spine", "shaft", "soma")


def refuse_duplicated_tags(tags: pl.DataFrame, table: str) -> None:
    """Two predictions for one synapse would count it twice: name the ids instead.

    Validation refuses them too, but a table above validate_max_rows is not validated."""
    ids = tags.get_column("synapse_id")
    if not ids.is_unique().all():
        dupes = ids.filter(ids.is_duplicated()).unique().sort().head(5).to_list()
        raise SchemaError(table, f"- column 'target_id' is not unique: duplicated synapse ids, e.g. {dupes}")
