"""Writing synthetic tables as a snapshot folder (partitioned synapses, bounded memory), and the source over it."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from cellfeatures._util.atomic import publish_directory
from cellfeatures.errors import ConfigError
from cellfeatures.sources.snapshot import SnapshotSource
from cellfeatures.sources.synthetic.cells import (
    GENERATOR_VERSION,
    SYNAPSE_ID_BASE,
    VOXEL_NM,
    SyntheticSpec,
    generate_cells,
    iter_synapse_chunks,
)
from cellfeatures.sources.synthetic.functional import generate_functional, generate_proofreading


def nucleus_table(cells: pl.DataFrame) -> pl.DataFrame:
    n = cells.height
    return pl.DataFrame(
        {
            "id": cells["nucleus_id"],
            "valid": np.ones(n, dtype=bool),
            "volume": cells["volume_um3"],
            "pt_supervoxel_id": np.zeros(n, dtype=np.int64),
            "pt_root_id": cells["root_id"],
            "pt_position_x": cells["x_vx"],
            "pt_position_y": cells["y_vx"],
            "pt_position_z": cells["z_vx"],
        }
    )


def cell_type_table(cells: pl.DataFrame, system: str = "aibs_metamodel") -> pl.DataFrame:
    n = cells.height
    return pl.DataFrame(
        {
            "id": np.arange(1, n + 1, dtype=np.int64),
            "valid": np.ones(n, dtype=bool),
            "target_id": cells["nucleus_id"],
            "classification_system": cells["cell_class"].replace_strict(
                {"excitatory": "excitatory_neuron", "inhibitory": "inhibitory_neuron"}, default="nonneuron"
            ),
            "cell_type": cells["cell_type"],
            "pt_root_id": cells["root_id"],
            "pt_position_x": cells["x_vx"],
            "pt_position_y": cells["y_vx"],
            "pt_position_z": cells["z_vx"],
        }
    )


def write_tables(
    tmp: Path,
    cells: pl.DataFrame,
    spec: SyntheticSpec,
    *,
    n_synapses: int,
    anchor_mask: np.ndarray | None,
    real_nodes: pl.DataFrame | None,
    proofread_focus: np.ndarray | None,
) -> dict[str, int]:
    """Write synapses (partitioned), tags (partitioned), functional and proofreading tables into tmp."""
    rows: dict[str, int] = {}
    (tmp / "synapses_pni_2").mkdir()
    (tmp / "synapse_target_predictions_ssa").mkdir()
    tag_rows = 0
    for k, (syn, tags) in enumerate(iter_synapse_chunks(cells, spec, n_synapses, anchor_mask)):
        syn.write_parquet(
            tmp / "synapses_pni_2" / f"synthetic-{k:05d}.parquet", compression="zstd", row_group_size=256_000
        )
        first = SYNAPSE_ID_BASE + tag_rows + 1  # own id range: never collides with real annotation ids
        tags = tags.with_columns(
            pl.Series("id", np.arange(first, first + tags.height, dtype=np.int64)), pl.lit(True).alias("valid")
        ).select("id", "valid", "target_id", "tag")
        tags.write_parquet(
            tmp / "synapse_target_predictions_ssa" / f"synthetic-{k:05d}.parquet",
            compression="zstd",
            row_group_size=256_000,
        )
        rows["synapses_pni_2"] = rows.get("synapses_pni_2", 0) + syn.height
        tag_rows += tags.height
    rows["synapse_target_predictions_ssa"] = tag_rows
    for name, frame in generate_functional(cells, spec, real_nodes).items():
        frame.write_parquet(tmp / f"{name}.parquet")
        rows[name] = frame.height
    proof = generate_proofreading(cells, spec, proofread_focus)
    proof.write_parquet(tmp / "proofreading_status_and_strategy.parquet")
    rows["proofreading_status_and_strategy"] = proof.height
    return rows


# Generated feature tables follow each cell's latent class, which is also what the generated cell-type
# table says: a dataset labelled by that table must not train on them (leakage_check reads this).
SYNTHETIC_LABEL_TABLE = "aibs_metamodel_celltypes_v661"


def _manifest_tables(rows: dict[str, int], source: str) -> dict[str, Any]:
    tables: dict[str, Any] = {}
    for name, n in rows.items():
        tables[name] = {"origin": "synthetic", "kind": "cave", "rows": n, "source": source}
        if name not in ("nucleus_detection_v0", SYNTHETIC_LABEL_TABLE):
            tables[name]["conditioned_on"] = [SYNTHETIC_LABEL_TABLE]
    return tables


def write_synthetic_snapshot(spec: SyntheticSpec, out: str | os.PathLike[str]) -> Path:
    """Write a complete synthetic snapshot (cells, labels, synapses, tags, functional, proofreading)."""

    def write(tmp: Path) -> None:
        cells = generate_cells(spec)
        nucleus_table(cells).write_parquet(tmp / "nucleus_detection_v0.parquet")
        labelled = cells.filter(pl.col("root_id") != 0)
        cell_type_table(labelled).write_parquet(tmp / "aibs_metamodel_celltypes_v661.parquet")
        rows = write_tables(
            tmp, cells, spec, n_synapses=spec.n_synapses, anchor_mask=None, real_nodes=None, proofread_focus=None
        )
        rows["nucleus_detection_v0"] = cells.height
        rows["aibs_metamodel_celltypes_v661"] = labelled.height
        manifest = {
            "name": f"synthetic-{spec.key()}",
            "datastack": "synthetic",
            "materialization_version": None,
            "timestamp": None,
            "position_resolution_nm": list(VOXEL_NM),
            "generator": GENERATOR_VERSION,
            "spec": asdict(spec),
            "tables": _manifest_tables(rows, f"cellfeatures synthetic generator v{GENERATOR_VERSION}"),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")

    out = Path(out)
    if out.exists():
        try:
            existing = json.loads((out / "manifest.json").read_text()).get("spec")
        except (OSError, ValueError):
            existing = None
        if existing != asdict(spec):
            raise ConfigError(
                f"{out} already exists and holds something else than a synthetic snapshot of this spec "
                f"({'another spec' if existing else 'no synthetic manifest'}): choose another --out or remove it"
            )
    publish_directory(out, write)  # once, atomically
    return out


def default_cache_dir() -> Path:
    """Where generated tables are cached: $CELLFEATURES_CACHE, else ~/.cache/cellfeatures."""
    env = os.environ.get("CELLFEATURES_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cellfeatures"


class SyntheticSource(SnapshotSource):
    """A synthetic snapshot of the given spec, generated once into the cache and then read from disk."""

    def __init__(self, spec: SyntheticSpec | None = None, cache_dir: str | os.PathLike[str] | None = None) -> None:
        self.spec = spec or SyntheticSpec()
        root = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "synthetic"
        path = write_synthetic_snapshot(self.spec, root / self.spec.key())
        super().__init__(path)

    def fingerprint(self) -> dict[str, Any]:
        return {**super().fingerprint(), "kind": "synthetic", "spec": asdict(self.spec), "generator": GENERATOR_VERSION}

    def reopen_config(self) -> dict[str, Any]:
        return {"kind": "synthetic", **asdict(self.spec)}  # same spec -> same tables, bit for bit
