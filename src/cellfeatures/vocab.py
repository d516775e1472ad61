"""One explicit map from every cell-type spelling we know to (class, subclass, type).

Why a table in code: CAVE label tables of different eras spell the same type differently
(`5P-PT` = `5P-ET` = `5P_PT`, `6P-IT` = `6IT`), and m-type tables use their own taxonomy. Harmonising
silently is how label leakage and bogus agreement numbers happen, so every mapping is written down here,
and a value that is not in the table is *reported* (see `unmapped_values`), never guessed.

Levels:
- class:    excitatory | inhibitory | nonneuronal
- subclass: excitatory projection class (IT, ET, NP, CT) or inhibitory targeting class (PTC, DTC, STC, ITC),
            or the nonneuronal cell kind
- type:     harmonised fine type (23P, 4P, 5P-IT, 5P-ET, 5P-NP, 6P-IT, 6P-CT, BC, MC, BPC, NGC, astrocyte, ...)
A level is None where the source does not determine it (e.g. `6P-U`, `Unsure E`, the m-type `L6tall-a`).
"""

from __future__ import annotations

from typing import NamedTuple

import polars as pl

EXC, INH, NON = "excitatory", "inhibitory", "nonneuronal"
CLASSES = (EXC, INH, NON)


class Harmonised(NamedTuple):
    cell_class: str | None
    subclass: str | None
    cell_type: str | None


def _h(c: str | None, s: str | None = None, t: str | None = None) -> Harmonised:
    return Harmonised(c, s, t)


# raw spelling -> harmonised levels. Grouped by where the spelling occurs.
VOCABULARY: dict[str, Harmonised] = {
    # --- manual column types (allen_v1_column_types_slanted_ref), metamodel, baylor fine, nriedman list
    "23P": _h(EXC, "IT", "23P"),
    "4P": _h(EXC, "IT", "4P"),
    "5P-IT": _h(EXC, "IT", "5P-IT"),
    "5P-PT": _h(EXC, "ET", "5P-ET"),
    "5P-ET": _h(EXC, "ET", "5P-ET"),
    "5P-NP": _h(EXC, "NP", "5P-NP"),
    "6P-IT": _h(EXC, "IT", "6P-IT"),
    "6P-CT": _h(EXC, "CT", "6P-CT"),
    "6P-U": _h(EXC),  # layer 6 pyramidal, projection class undetermined
    "WM-P": _h(EXC),  # white-matter pyramidal
    "BC": _h(INH, "PTC", "BC"),
    "MC": _h(INH, "DTC", "MC"),
    "BPC": _h(INH, "ITC", "BPC"),
    "NGC": _h(INH, "STC", "NGC"),
    "Unsure E": _h(EXC),
    "Unsure I": _h(INH),
    "Unsure": _h(None),
    # --- early soma/nucleus model (v117 era, underscores and short L6 names)
    "5P_IT": _h(EXC, "IT", "5P-IT"),
    "5P_PT": _h(EXC, "ET", "5P-ET"),
    "5P_ET": _h(EXC, "ET", "5P-ET"),
    "5P_NP": _h(EXC, "NP", "5P-NP"),
    "6IT": _h(EXC, "IT", "6P-IT"),
    "6CT": _h(EXC, "CT", "6P-CT"),
    "6P": _h(EXC),
    # --- coarse model tables (baylor_log_reg_cell_type_coarse_v1) and classification systems
    "excitatory": _h(EXC),
    "inhibitory": _h(INH),
    "excitatory_neuron": _h(EXC),
    "inhibitory_neuron": _h(INH),
    "nonneuron": _h(NON),
    "aibs_coarse_excitatory": _h(EXC),
    "aibs_coarse_inhibitory": _h(INH),
    "aibs_coarse_nonneuronal": _h(NON),
    # --- nonneuronal types (aibs_column_nonneuronal_ref, metamodel)
    "astrocyte": _h(NON, "astrocyte", "astrocyte"),
    "microglia": _h(NON, "microglia", "microglia"),
    "oligo": _h(NON, "oligo", "oligo"),
    "OPC": _h(NON, "OPC", "OPC"),
    "pericyte": _h(NON, "pericyte", "pericyte"),
    # --- m-types (allen_column_mtypes_v2, aibs_metamodel_mtypes_v661_v2): their own taxonomy.
    # Only unambiguous correspondences to the type level are written; the rest stay at class/subclass.
    "L2a": _h(EXC, "IT", "23P"),
    "L2b": _h(EXC, "IT", "23P"),
    "L2c": _h(EXC, "IT", "23P"),
    "L3a": _h(EXC, "IT", "23P"),
    "L3b": _h(EXC, "IT", "23P"),
    "L4a": _h(EXC, "IT", "4P"),
    "L4b": _h(EXC, "IT", "4P"),
    "L4c": _h(EXC, "IT", "4P"),
    "L5a": _h(EXC, "IT", "5P-IT"),
    "L5b": _h(EXC, "IT", "5P-IT"),
    "L5ET": _h(EXC, "ET", "5P-ET"),
    "L5NP": _h(EXC, "NP", "5P-NP"),
    "L6short-a": _h(EXC),
    "L6short-b": _h(EXC),
    "L6tall-a": _h(EXC),
    "L6tall-b": _h(EXC),
    "L6tall-c": _h(EXC),
    "L6wm": _h(EXC),
    "PTC": _h(INH, "PTC"),
    "DTC": _h(INH, "DTC"),
    "STC": _h(INH, "STC"),
    "ITC": _h(INH, "ITC"),
}

LEVELS = ("class", "subclass", "type")


def mapping_frame() -> pl.DataFrame:
    """The vocabulary as a frame (raw, class, subclass, type), for joins and for printing."""
    return pl.DataFrame(
        {
            "raw": list(VOCABULARY),
            "class": [h.cell_class for h in VOCABULARY.values()],
            "subclass": [h.subclass for h in VOCABULARY.values()],
            "type": [h.cell_type for h in VOCABULARY.values()],
        },
        schema={"raw": pl.String, "class": pl.String, "subclass": pl.String, "type": pl.String},
    )


def harmonise_expr(raw: pl.Expr, level: str) -> pl.Expr:
    """Map a raw cell-type expression to one level; unknown spellings become null (see unmapped_values)."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    table = {
        k: getattr(v, {"class": "cell_class", "subclass": "subclass", "type": "cell_type"}[level])
        for k, v in VOCABULARY.items()
    }
    return raw.replace_strict(table, default=None, return_dtype=pl.String)


def unmapped_values(values: pl.Series) -> list[str]:
    """Distinct non-null spellings that the vocabulary does not know (to be reported, never guessed)."""
    return sorted(v for v in values.drop_nulls().unique().to_list() if v not in VOCABULARY)


def check_spellings(labels: pl.LazyFrame, table: str, column: str = "cell_type") -> None:
    """Refuse a label table with spellings the vocabulary does not know, naming them and how many rows.

    Why at build time: a partner-label table with `23p` or `5P–IT` (an en dash) would silently drop those
    partners from the E/I fractions of hundreds of cells.
    """
    from cellfeatures.errors import SchemaError

    if column not in labels.collect_schema():
        raise SchemaError(table, f"- missing column {column!r}")
    values = labels.select(pl.col(column).cast(pl.String)).group_by(column).len().collect()
    unknown = values.filter(pl.col(column).is_in(unmapped_values(values[column])))
    if unknown.height:
        shown = ", ".join(f"{v!r} ({n} rows)" for v, n in unknown.sort("len", descending=True).head(8).rows())
        raise SchemaError(
            table,
            f"- column {column!r}: {unknown.height} spelling(s) the vocabulary does not know: {shown}. "
            f"Known spellings are listed in cellfeatures/vocab.py; fix the table (or report a missing spelling).",
        )
