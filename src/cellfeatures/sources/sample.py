"""The embedded sample: real MICrONS extracts shipped in the package + synthetic tables generated on first use.

Committed (src/cellfeatures/sample_data, built by scripts/build_sample.py): real and derived tables.
Generated once into the cache (`$CELLFEATURES_CACHE/sample/<key>`), never committed: synapses of the
sample cells with target tags, functional area, coregistration + digital-twin properties, proofreading.
The synthetic tables are seeded on the *real* cells (their positions, roots and labels), so their
distributions follow real cell classes. Each table's origin, per part, is in the two manifests.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, replace
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from cellfeatures._util.atomic import publish_directory
from cellfeatures.sources.snapshot import SnapshotSource
from cellfeatures.sources.synthetic.cells import GENERATOR_VERSION, SyntheticSpec
from cellfeatures.sources.synthetic.snapshot import default_cache_dir, write_tables
from cellfeatures.vocab import harmonise_expr

# The real synapses of this root are shipped; it gets no synthetic ones.
REAL_SYNAPSE_ROOT = 864691135101289504
SAMPLE_SPEC = SyntheticSpec(
    n_cells=0,
    n_synapses=1_000_000,
    seed=65,
    chunk_rows=1_000_000,
    orphan_only_fraction=0.0,
    coregistered_fraction=0.3,
    proofread_fraction=0.01,
)
EXTRA_FOCUS_CELLS = 2_000  # cells outside the labelled column that also get synapses


def sample_data_dir() -> Path:
    """The committed sample folder inside the installed package."""
    return Path(str(files("cellfeatures") / "sample_data"))


# The synthetic tables follow each cell's class as the early model predicts it, never the manual labels:
# a generator that saw the manual class would plant the answer in synthetic features (measured before
# this rule: 0.997 E/I accuracy from synthetic features alone). The manifest says which table it saw.
GENERATOR_CLASS_TABLE = "soma_nuc_model_83_1_v117"


def sample_cells(committed: Path) -> pl.DataFrame:
    """The real sample nuclei with positions and a class from the early model (never the manual labels).

    `labelled` still marks the manually labelled column cells: they get synapses and proofreading, like
    the cells real users study, but nothing generated depends on their manual label.
    """
    nuc = pl.read_parquet(committed / "nucleus_detection_v0.parquet")
    manual = pl.read_parquet(committed / "allen_v1_column_types_slanted_ref.parquet")
    early = pl.read_parquet(committed / "soma_nuc_model_83_1_v117.parquet")

    def classes(df: pl.DataFrame, name: str) -> pl.DataFrame:
        return df.select(
            pl.col("target_id").alias("nucleus_id"), harmonise_expr(pl.col("cell_type"), "class").alias(name)
        )

    return (
        nuc.select(
            pl.col("id").alias("nucleus_id"),
            pl.col("pt_root_id").alias("root_id"),
            pl.col("pt_position_x").alias("x_vx"),
            pl.col("pt_position_y").alias("y_vx"),
            pl.col("pt_position_z").alias("z_vx"),
            pl.col("volume").alias("volume_um3"),
        )
        .join(classes(manual, "manual_class"), on="nucleus_id", how="left")
        .join(classes(early, "model_class"), on="nucleus_id", how="left")
        .with_columns(
            pl.col("model_class").fill_null("unknown").alias("cell_class"),
            pl.col("manual_class").is_not_null().alias("labelled"),
        )
        .drop("manual_class", "model_class")
        .sort("nucleus_id")
    )


def _cache_key(committed: Path, spec: SyntheticSpec) -> str:
    manifest = (committed / "manifest.json").read_bytes()
    blob = json.dumps(
        {"spec": asdict(spec), "generator": GENERATOR_VERSION, "layout": 3, "focus": EXTRA_FOCUS_CELLS}, sort_keys=True
    )
    return hashlib.sha256(manifest + blob.encode()).hexdigest()[:16]


def ensure_sample_synthetic(
    committed: Path | None = None,
    cache_dir: Path | None = None,
    spec: SyntheticSpec = SAMPLE_SPEC,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Generate the sample's synthetic tables once (atomically) and return their folder."""
    committed = committed or sample_data_dir()
    root = (cache_dir or default_cache_dir()) / "sample" / _cache_key(committed, spec)
    if progress is not None and not root.exists():  # the first run waits here: say why
        progress(f"first use: generating the sample's synthetic tables once into {root} (~15 s)")

    def write(tmp: Path) -> None:
        cells = sample_cells(committed)
        rng = np.random.default_rng([spec.seed, 0])
        labelled = cells["labelled"].to_numpy()
        others = np.flatnonzero(~labelled)
        extra = rng.choice(others, size=min(EXTRA_FOCUS_CELLS, len(others)), replace=False)
        focus = labelled.copy()
        focus[extra] = True
        focus &= cells["root_id"].to_numpy() != REAL_SYNAPSE_ROOT
        real_nodes = pl.read_parquet(committed / "functional_nodes_ding2025.parquet")
        rows = write_tables(
            tmp,
            cells,
            replace(spec, n_cells=cells.height),
            n_synapses=spec.n_synapses,
            anchor_mask=focus,
            real_nodes=real_nodes,
            proofread_focus=labelled,
        )
        tables: dict[str, Any] = {}
        source = (
            f"cellfeatures synthetic generator v{GENERATOR_VERSION}, seeded on the real sample cells "
            f"(positions, roots; class from {GENERATOR_CLASS_TABLE})"
        )
        for name, n in rows.items():
            entry: dict[str, Any] = {
                "origin": "synthetic",
                "kind": "cave",
                "rows": n,
                "source": source,
                "conditioned_on": [GENERATOR_CLASS_TABLE],
            }
            folder = tmp / name
            if folder.is_dir():
                entry["parts"] = [
                    {
                        "file": f"{name}/{p.name}",
                        "origin": "synthetic",
                        "rows": int(pl.scan_parquet(p).select(pl.len()).collect().item()),
                    }
                    for p in sorted(folder.iterdir())
                ]
            tables[name] = entry
        manifest = {
            "name": "minnie65-sample-synthetic",
            "generator": GENERATOR_VERSION,
            "spec": asdict(spec),
            "focus_cells": int(focus.sum()),
            "tables": tables,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")

    publish_directory(root, write)
    return root


class SampleSource(SnapshotSource):
    """The offline default: committed real/derived tables plus the cached synthetic ones."""

    def __init__(
        self, cache_dir: str | os.PathLike[str] | None = None, progress: Callable[[str], None] | None = None
    ) -> None:
        committed = sample_data_dir()
        synthetic = ensure_sample_synthetic(committed, Path(cache_dir) if cache_dir else None, progress=progress)
        super().__init__(committed, synthetic)
        self.committed_dir = committed
        self.synthetic_dir = synthetic

    def fingerprint(self) -> dict[str, Any]:
        return {**super().fingerprint(), "kind": "sample"}

    def reopen_config(self) -> dict[str, Any]:
        return {"kind": "sample"}  # regenerated bit for bit from the package wherever it is reopened
