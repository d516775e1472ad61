"""Per-version nucleus_id <-> root_id map with quality flags.

Why: the cell is keyed by the stable nucleus id, but synapses, coregistration and proofreading are keyed
by root ids that are valid for one materialization only. Three cases need care:
- `root_id == 0`: the nucleus lies outside the segmentation; nothing root-keyed can be attributed to it.
- several nuclei on one root: a merge error; root-keyed data cannot be split between the nuclei, so
  synapse and functional features are not attributed (they stay null) and the cell is flagged.
- roots without a nucleus (synapse partners that are fragments): flagged by `flag_roots_with_nucleus`.
"""

from __future__ import annotations

import polars as pl

from cellfeatures.errors import IdentityError, SchemaError


def identity_map(nucleus: pl.DataFrame) -> pl.DataFrame:
    """Canonical nucleus table -> one row per nucleus with root quality flags.

    Columns: nucleus_id, root_id, pos_*_nm, volume_um3, nuclei_on_root (0 for root 0),
    missing_root (root_id == 0), multi_soma (nuclei_on_root > 1), attributable (neither).
    """
    duplicated = nucleus.filter(pl.col("nucleus_id").is_duplicated())
    if duplicated.height:
        raise IdentityError(
            f"nucleus table has {duplicated['nucleus_id'].n_unique()} duplicated nucleus ids, e.g. "
            f"{duplicated['nucleus_id'].unique().sort().head(5).to_list()}"
        )
    per_root = pl.when(pl.col("root_id") != 0).then(pl.len().over("root_id")).otherwise(0).cast(pl.Int64)
    return (
        nucleus.with_columns(per_root.alias("nuclei_on_root"))
        .with_columns(
            (pl.col("root_id") == 0).alias("missing_root"),
            (pl.col("nuclei_on_root") > 1).alias("multi_soma"),
        )
        .with_columns((~pl.col("missing_root") & ~pl.col("multi_soma")).alias("attributable"))
        .sort("nucleus_id")
    )


def attributable_expr() -> pl.Expr:
    """identity_map's `attributable` rule on any frame holding every nucleus of a version (a feature matrix):
    the nucleus is alone on a non-zero root."""
    return (pl.col("root_id") != 0) & (pl.len().over("root_id") == 1)


def attributable_cells(identity: pl.DataFrame) -> pl.DataFrame:
    """root_id -> nucleus_id (+ soma position) for cells whose root-keyed data can be attributed."""
    return identity.filter(pl.col("attributable")).select("root_id", "nucleus_id", "pos_x_nm", "pos_y_nm", "pos_z_nm")


def nucleus_roots(identity: pl.DataFrame) -> pl.DataFrame:
    """Distinct non-zero roots that carry at least one nucleus."""
    return identity.filter(~pl.col("missing_root")).select("root_id").unique().sort("root_id")


def flag_roots_with_nucleus(
    frame: pl.LazyFrame, column: str, identity: pl.DataFrame, flag: str = "has_nucleus"
) -> pl.LazyFrame:
    """Add a boolean `flag`: does the root in `column` carry a nucleus in this version?"""
    roots = nucleus_roots(identity).lazy().with_columns(pl.lit(True).alias(flag))
    return frame.join(roots, left_on=column, right_on="root_id", how="left").with_columns(pl.col(flag).fill_null(False))


def integer_key(
    frame: pl.DataFrame, column: str, name: str, *, exact_floats_ok: bool, nulls_ok: bool = False
) -> pl.Expr:
    """The key column as Int64, refusing what would silently drop or corrupt rows: nulls (unless
    `nulls_ok`: the caller reports them per row), NaN, fractions, text, and (for root ids, which exceed
    float64's exact range) any float at all."""
    series = frame.get_column(column)
    if series.dtype.is_float():
        bad = series.is_nan() | (series.fill_nan(0.0).fill_null(0.0) % 1 != 0)
        bad = bad | series.is_null() if not nulls_ok else bad.fill_null(False)
        if not exact_floats_ok or bad.any():
            rows = [i for i, b in enumerate(bad.to_list()) if b][:5] if bad.any() else []
            raise SchemaError(
                name,
                f"- key column {column!r} went through float64 (pandas does this to integer columns with missing "
                f"values)"
                + (f": {int(bad.sum())} row(s) are NaN, null or fractional, e.g. rows {rows}" if rows else "")
                + ("; root ids above 2^53 are not exact as floats" if not exact_floats_ok else "")
                + ": write the ids as integers",
            )
    elif not series.dtype.is_integer():
        raise SchemaError(name, f"- key column {column!r} must hold integer ids, it holds {series.dtype}")
    if series.null_count() and not nulls_ok:
        rows = [i for i, v in enumerate(series.is_null().to_list()) if v][:5]
        raise SchemaError(name, f"- key column {column!r} is empty in {series.null_count()} row(s), e.g. rows {rows}")
    return pl.col(column).cast(pl.Int64)
