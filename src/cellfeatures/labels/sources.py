"""Label sources (manual and model cell-type tables), harmonised to class / subclass / type, and agreement.

A label source is a named set of reference tables (target_id = nucleus id) with a kind: `manual`
(human annotation) or `model` (predictions). Every raw spelling goes through the vocabulary map
(vocab.py); spellings it does not know are *reported* in the LabelSet, never guessed. A nucleus with
conflicting labels inside one source is dropped from it and counted.

Agreement between two sources is computed on the cells both label (at one level), before and after
harmonisation, so the effect of harmonising spellings is visible.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl

from cellfeatures._util.names import did_you_mean
from cellfeatures.errors import ConfigError, TableNotFoundError
from cellfeatures.schemas.validate import validate
from cellfeatures.schemas.wire import WIRE_MODELS
from cellfeatures.sources.base import Source
from cellfeatures.sources.normalize import canonical_cell_types
from cellfeatures.vocab import LEVELS, check_spellings, harmonise_expr, unmapped_values


@dataclass(frozen=True)
class LabelSourceSpec:
    name: str
    tables: tuple[str, ...]
    kind: str  # "manual" | "model"
    description: str = ""


# The label sources cellfeatures knows; a config may add more under [labels.<name>].
LABEL_SOURCES: dict[str, LabelSourceSpec] = {
    s.name: s
    for s in [
        LabelSourceSpec(
            "manual",
            ("allen_v1_column_types_slanted_ref", "aibs_column_nonneuronal_ref"),
            "manual",
            "manual column cell types (Schneider-Mizell et al. 2025) + column non-neuronal cells",
        ),
        LabelSourceSpec(
            "mtype", ("allen_column_mtypes_v2",), "manual", "column m-types (Schneider-Mizell et al. 2025)"
        ),
        LabelSourceSpec("metamodel", ("aibs_metamodel_celltypes_v661",), "model", "AIBS soma/nucleus metamodel types"),
        LabelSourceSpec("metamodel_mtype", ("aibs_metamodel_mtypes_v661_v2",), "model", "AIBS metamodel m-types"),
        LabelSourceSpec("baylor_coarse", ("baylor_log_reg_cell_type_coarse_v1",), "model", "Baylor coarse E/I model"),
        LabelSourceSpec("baylor_fine", ("baylor_gnn_cell_type_fine_model_v2",), "model", "Baylor GNN fine types"),
        LabelSourceSpec(
            "early_model",
            ("soma_nuc_model_83_1_v117",),
            "model",
            "early soma/nucleus model 83_1 (Elabbady et al., v117 era)",
        ),
        LabelSourceSpec(
            "exc_model",
            ("aibs_soma_nuc_metamodel_preds_v117",),
            "model",
            "excitatory soma/nucleus model types (v117 era)",
        ),
    ]
}


def label_sources(extra: dict[str, Any] | None = None) -> dict[str, LabelSourceSpec]:
    """Built-in sources plus [labels.<name>] blocks of a config (tables = [...], kind = manual|model)."""
    out = dict(LABEL_SOURCES)
    for name, block in (extra or {}).items():
        tables = block.get("tables") or ([block["table"]] if block.get("table") else [])
        if not tables or block.get("kind") not in ("manual", "model"):
            raise ConfigError(f"[labels.{name}] needs `tables` (or `table`) and kind = 'manual' or 'model'")
        out[name] = LabelSourceSpec(name, tuple(tables), block["kind"], block.get("description", ""))
    return out


@dataclass
class LabelSet:
    """One source's labels: nucleus_id, raw, class, subclass, type; plus what could not be used."""

    spec: LabelSourceSpec
    frame: pl.DataFrame
    tables_used: list[str]
    unmapped: list[str] = field(default_factory=list)
    conflicting_nuclei: int = 0

    def column(self, level: str) -> str:
        return f"label_{self.spec.name}_{level}"

    def at(self, level: str) -> pl.DataFrame:
        """nucleus_id + one label column at the level (cells without a label at that level dropped)."""
        if level not in (*LEVELS, "raw"):
            raise ConfigError(f"label level must be one of {(*LEVELS, 'raw')}, got {level!r}")
        return self.frame.select("nucleus_id", pl.col(level).alias(self.column(level))).drop_nulls()


def load_labels(source: Source, spec: LabelSourceSpec | str, *, strict: bool = False) -> LabelSet:
    """Read, harmonise and de-conflict a label source from whatever of its tables the source has.

    strict: refuse unknown spellings (datasets train on these labels); otherwise they are reported.
    """
    if isinstance(spec, str):
        if spec not in LABEL_SOURCES:
            raise ConfigError(f"unknown label source {spec!r}; known: {', '.join(LABEL_SOURCES)}")
        spec = LABEL_SOURCES[spec]
    frames, used = [], []
    for table in spec.tables:
        try:
            lf = source.scan(table)
        except TableNotFoundError:
            continue
        # the same pandera rules as a build: a null or NaN target_id, a duplicated id or a missing column is
        # refused naming the table, never a row that silently vanishes from the labels
        lf = validate(lf.collect(), WIRE_MODELS["cell_type"], table).lazy()
        if strict:
            check_spellings(lf, table)
        frames.append(canonical_cell_types(lf).select("nucleus_id", pl.col("cell_type").alias("raw")).collect())
        used.append(table)
    if not frames:
        raise TableNotFoundError(f"label source {spec.name!r}: none of its tables {list(spec.tables)} is in the source")
    raw = pl.concat(frames).drop_nulls("raw").unique()
    conflicts = raw.filter(pl.col("nucleus_id").is_duplicated())
    labels = raw.filter(~pl.col("nucleus_id").is_duplicated())
    frame = labels.with_columns(*(harmonise_expr(pl.col("raw"), level).alias(level) for level in LEVELS)).sort(
        "nucleus_id"
    )
    return LabelSet(spec, frame, used, unmapped_values(raw["raw"]), conflicts["nucleus_id"].n_unique())


def check_label_source(name: str, known: dict[str, LabelSourceSpec]) -> None:
    """Refuse an unknown label source by name, with a spelling hint and the known names."""
    if name not in known:
        raise ConfigError(
            f"unknown label source {name!r}{did_you_mean(name, known)}; known: {', '.join(known)} (or a table file)"
        )
