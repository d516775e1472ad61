"""Build the embedded sample (src/cellfeatures/sample_data/) from the real MICrONS extracts in ../shared/data/real.

Reproducible: same inputs -> same files (checked by their content checksums in the manifest).
Run:  python scripts/build_sample.py [--real ../shared/data/real] [--out src/cellfeatures/sample_data]

Only real and derived-from-real tables are written here. The synthetic tables (synapses of the sample
cells, functional tables, proofreading) are generated on first use by cellfeatures.sources.sample.
Every table is written in CAVE wire format (server table and column names, positions in 4x4x40 nm voxels).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import polars as pl

from cellfeatures._util.checksums import file_sha256, frame_checksum
from cellfeatures.vocab import EXC, INH, VOCABULARY

ROOT = Path(__file__).resolve().parents[1]
VOXEL_NM = (4.0, 4.0, 40.0)

# Real inputs (relative to ../shared/data/real), read through these paths only.
MANUAL = "neurd/public_cave_ground_truth_cell_types_with_nucleus.csv"
SOMANUC = "cortical_layers/minnie_soma_nuc_features_v117era.parquet"
MTYPES = "perisomatic/column_radial_truncation_v795.feather"
EXC_MODEL = "nriedman_microns/cells_no_repeats.csv"
SYN_PRE = "meshparty/pre.feather"
SYN_POST = "meshparty/post.feather"
SSA = "pedigo_testbed/postsyn_predictions_for_2025-02-28.csv.gz"
FUNC = "wiring_benchmark/sample_nodes.csv"
SYN_EDITS = "perisomatic/column_syn_edits_df.parquet"

# Synapse counts kept from the perisomatic repo's proofreading table (in: onto the cell, out: from it).
SYN_COUNT_COLUMNS = [
    "proofread_syn_count_in",
    "initial_syn_count_in",
    "proofread_syn_count_out",
    "initial_syn_count_out",
]

# Soma/nucleus morphology columns kept in the external feature table (units in the manifest notes).
SOMANUC_COLUMNS = [
    "nucleus_id",
    "seg_id",
    "nucleus_volume",
    "nucleus_area",
    "nucleus_area_to_volume",
    "nucleus_fold_area",
    "nucleus_fract_fold",
    "soma_volume",
    "soma_area",
    "soma_area_to_volume",
    "num_processes",
    "n_soma_syn",
    "soma_syn_density",
    "nucleus_to_soma",
    "sum_proc_sdf",
    "max_sdf",
    "is_watertight",
]

ATTRIBUTION = """# Attribution of the embedded sample

The tables in this folder are derived from data of the MICrONS project (MICrONS Consortium et al.,
"Functional connectomics spanning multiple areas of mouse visual cortex", Nature 2025), distributed
under CC BY 4.0. Individual tables come from these public extracts (see manifest.json for each file's
checksum and the build script scripts/build_sample.py for every transformation):

- allen_v1_column_types_slanted_ref: manual column cell types (Schneider-Mizell et al. 2025), as shipped
  in reimerlab/NEURD (Celii et al.) training data.
- allen_column_mtypes_v2: column m-types at materialization v795 (Schneider-Mizell et al. 2025), from
  lelabbady/Perisomatic_Based_CellTyping (Elabbady et al., Nature 2025).
- column_synapse_counts_v795: synapse counts of the column cells before and after proofreading
  (lelabbady/Perisomatic_Based_CellTyping, Elabbady et al. 2025), nucleus ids via the repo's v795 column table
- soma_nuc_features_v117 and soma_nuc_model_83_1_v117: soma/nucleus features and model predictions
  (Elabbady et al. 2025), from the PyPI package cortical-layers 0.2.2 (Allen Institute).
- aibs_soma_nuc_metamodel_preds_v117: excitatory model cell types listed in nriedman/microns.
- synapses_pni_2 (real part): synapses of one column PTC interneuron, from CAVEconnectome/MeshParty
  (Apache-2.0).
- synapse_target_predictions_ssa (real part): spine/shaft/soma predictions, from bdpedigo/testbed.
- functional_nodes_ding2025: 50 rows of the Ding et al. 2025 functional node table, from
  hwilner/microns-tuning-from-wiring-benchmark (MIT).

Cite the MICrONS Consortium (2025) and the paper behind each table when you use them.
"""


def _voxels(df: pl.DataFrame, prefix: str, nm: tuple[str, str, str]) -> pl.DataFrame:
    """Add `{prefix}_x/_y/_z` int64 voxel columns from nm columns, refusing inexact conversions."""
    out = []
    for axis, col, res in zip("xyz", nm, VOXEL_NM, strict=True):
        inexact = df.filter((pl.col(col) % res) != 0).height
        if inexact:
            raise SystemExit(f"{col}: {inexact} values are not whole {res} nm voxels")
        out.append((pl.col(col) / res).round(0).cast(pl.Int64).alias(f"{prefix}_{axis}"))
    return df.with_columns(out)


def _bookkeeping(n: int) -> list[pl.Series]:
    """CAVE annotation book-keeping columns (ids are reconstructed: 1..n, as the originals are unknown)."""
    return [
        pl.Series("id", range(1, n + 1), dtype=pl.Int64),
        pl.Series("created", [None] * n, dtype=pl.Datetime("us", "UTC")),
        pl.Series("superceded_id", [None] * n, dtype=pl.Float64),
        pl.Series("valid", [True] * n, dtype=pl.Boolean),
    ]


def build(real: Path, out: Path) -> dict:
    tables: dict[str, dict] = {}
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)

    def inputs(*paths: str) -> list[dict]:
        return [{"path": p, "sha256": file_sha256(real / p)} for p in paths]

    def write(name: str, df: pl.DataFrame, meta: dict, part: str | None = None) -> None:
        rel = f"{name}/{part}.parquet" if part else f"{name}.parquet"
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        df.write_parquet(path, compression="zstd", compression_level=19, statistics=True)
        entry = {"file": rel, "rows": df.height, "sha256": file_sha256(path), **meta}
        if "trace" in meta:  # content checksum of the traced columns, recomputable from the inputs
            entry["trace"] = {
                **meta["trace"],
                "checksum": frame_checksum(df.select(list(meta["trace"]["columns"].values()))),
            }
        if part:
            tables.setdefault(name, {"parts": []})["parts"].append({"part": part, **entry})
        else:
            tables[name] = entry

    somanuc = pl.read_parquet(real / SOMANUC)
    manual = pl.read_csv(real / MANUAL).drop("")
    mtypes = pl.read_ipc(real / MTYPES)

    # ---- nucleus_detection_v0 (derived): the real nuclei of the soma/nucleus table.
    # Root ids: the manual column table's (~Dec 2024) where the nucleus is labelled, else the v117 seg_id.
    root_of = manual.select(pl.col("nucleus_id"), pl.col("segment_id").alias("manual_root"))
    nuc = (
        somanuc.select("nucleus_id", "seg_id", "nucleus_volume", "centroid_x", "centroid_y", "centroid_z")
        .join(root_of, on="nucleus_id", how="left")
        .sort("nucleus_id")
        .with_columns(
            pl.coalesce("manual_root", "seg_id").alias("pt_root_id"),
            (pl.col("centroid_x") * 16).round(0).cast(pl.Int64).alias("pt_position_x"),
            (pl.col("centroid_y") * 16).round(0).cast(pl.Int64).alias("pt_position_y"),
            pl.col("centroid_z").round(0).cast(pl.Int64).alias("pt_position_z"),
        )
    )
    nucleus_table = pl.DataFrame(
        [
            nuc["nucleus_id"].alias("id"),
            pl.Series("created", [None] * nuc.height, dtype=pl.Datetime("us", "UTC")),
            pl.Series("superceded_id", [None] * nuc.height, dtype=pl.Float64),
            pl.Series("valid", [True] * nuc.height, dtype=pl.Boolean),
            nuc["nucleus_volume"].alias("volume"),
            pl.Series("pt_supervoxel_id", [None] * nuc.height, dtype=pl.Int64),
            nuc["pt_root_id"],
            nuc["pt_position_x"],
            nuc["pt_position_y"],
            nuc["pt_position_z"],
        ]
    )
    write(
        "nucleus_detection_v0",
        nucleus_table,
        {
            "origin": "derived",
            "kind": "cave",
            "inputs": inputs(SOMANUC, MANUAL),
            "source": "nucleus ids, volumes (um^3) and centroids of the Elabbady soma/nucleus table (v117 era)",
            "notes": "pt_position = centroid in 64 nm units x16 (x, y) and 40 nm sections (z), i.e. 4x4x40 nm voxels; "
            "pt_root_id = the manual column table's root (~Dec 2024) for the 1,327 labelled nuclei, else the "
            "v117 seg_id (unchanged for unedited cells; multi-soma roots kept as in the source); "
            "supervoxel ids and created timestamps are unknown (null).",
        },
    )
    positions = nucleus_table.select(
        pl.col("id").alias("target_id"), "pt_root_id", "pt_position_x", "pt_position_y", "pt_position_z"
    )

    def reference_table(target: pl.DataFrame) -> pl.DataFrame:
        """target has target_id, classification_system, cell_type (+ optional pt_root_id override)."""
        joined = target.join(positions, on="target_id", how="left", suffix="_nucleus")
        if "pt_root_id_nucleus" in joined.columns:
            joined = joined.with_columns(pl.coalesce("pt_root_id", "pt_root_id_nucleus").alias("pt_root_id"))
        return pl.DataFrame(
            [
                *_bookkeeping(joined.height),
                joined["target_id"],
                joined["classification_system"],
                joined["cell_type"],
                pl.Series("pt_supervoxel_id", [None] * joined.height, dtype=pl.Int64),
                joined["pt_root_id"].fill_null(0),
                joined["pt_position_x"],
                joined["pt_position_y"],
                joined["pt_position_z"],
            ]
        )

    # ---- allen_v1_column_types_slanted_ref (real labels, nucleus ids and roots)
    system = {
        k: ("aibs_coarse_excitatory" if v.cell_class == EXC else "aibs_coarse_inhibitory")
        for k, v in VOCABULARY.items()
        if v.cell_class in (EXC, INH)
    }
    manual_ref = reference_table(
        manual.select(
            pl.col("nucleus_id").alias("target_id"),
            pl.col("cell_type").replace_strict(system, default=None).alias("classification_system"),
            "cell_type",
            pl.col("segment_id").alias("pt_root_id"),
        ).sort("target_id")
    )
    write(
        "allen_v1_column_types_slanted_ref",
        manual_ref,
        {
            "origin": "real",
            "kind": "cave",
            "inputs": inputs(MANUAL),
            "source": "CAVE allen_v1_column_types_slanted_ref via reimerlab/NEURD (minnie65_phase3_v1, ~Dec 2024)",
            "trace": {
                "inputs": [MANUAL],
                "columns": {"nucleus_id": "target_id", "segment_id": "pt_root_id", "cell_type": "cell_type"},
            },
            "notes": "annotation ids reconstructed (1..n); classification_system derived from cell_type "
            "(null for 'Unsure'); positions from nucleus_detection_v0 (null for the 30 nuclei it lacks).",
        },
    )

    # ---- allen_column_mtypes_v2 (real m-types at v795; roots replaced by the sample's nucleus roots)
    mt_ref = reference_table(
        mtypes.select(pl.col("id").alias("target_id"), "classification_system", "cell_type").sort("target_id")
    )
    write(
        "allen_column_mtypes_v2",
        mt_ref,
        {
            "origin": "real",
            "kind": "cave",
            "inputs": inputs(MTYPES),
            "source": "CAVE allen_column_mtypes_v2 at v795 via lelabbady/Perisomatic_Based_CellTyping",
            "trace": {
                "inputs": [MTYPES],
                "columns": {
                    "id": "target_id",
                    "classification_system": "classification_system",
                    "cell_type": "cell_type",
                },
            },
            "notes": "pt_root_id/positions from the sample's nucleus_detection_v0 (0/null where it lacks the nucleus).",
        },
    )

    # ---- early soma/nucleus model predictions (real, v117 era)
    early = reference_table(
        somanuc.select(
            pl.col("nuc_id").alias("target_id"),
            pl.lit("soma_nuc_model_83_1").alias("classification_system"),
            pl.col("cell_type_pred").alias("cell_type"),
        ).sort("target_id")
    )
    write(
        "soma_nuc_model_83_1_v117",
        early,
        {
            "origin": "real",
            "kind": "cave",
            "inputs": inputs(SOMANUC),
            "source": "Elabbady soma/nucleus model 83_1 predictions for 69,461 neurons (cortical-layers 0.2.2)",
            "trace": {"inputs": [SOMANUC], "columns": {"nuc_id": "target_id", "cell_type_pred": "cell_type"}},
            "notes": "Not a server table name (the closest public table of that era is "
            "allen_soma_coarse_cell_class_model_v1); written in CAVE reference-table wire format.",
        },
    )

    # ---- external soma/nucleus morphology feature table (real)
    write(
        "soma_nuc_features_v117",
        somanuc.select(SOMANUC_COLUMNS).sort("nucleus_id"),
        {
            "origin": "real",
            "kind": "external",
            "inputs": inputs(SOMANUC),
            "source": "Elabbady soma/nucleus features (cortical-layers 0.2.2, v117 era)",
            "trace": {"inputs": [SOMANUC], "columns": {c: c for c in SOMANUC_COLUMNS}},
            "notes": "units: nucleus_volume um^3, nucleus_area um^2, nucleus_fold_area um^2, soma_volume nm^3, "
            "soma_area nm^2, soma_area_to_volume 1/nm, nucleus_to_soma ratio, n_soma_syn count, "
            "soma_syn_density count/nm^2; seg_id is the v117 root id.",
        },
    )

    # ---- excitatory model types (derived: nucleus ids recovered by joining v117 root ids)
    exc = pl.read_csv(real / EXC_MODEL).drop("Unnamed: 0")
    single = somanuc.filter(pl.col("seg_id").is_unique()).select(pl.col("seg_id"), pl.col("nucleus_id"))
    exc_j = exc.join(single, left_on="pt_root_id", right_on="seg_id", how="inner")
    exc_ref = reference_table(
        exc_j.select(
            pl.col("nucleus_id").alias("target_id"),
            pl.lit("excitatory_neuron").alias("classification_system"),
            "cell_type",
        ).sort("target_id")
    )
    write(
        "aibs_soma_nuc_metamodel_preds_v117",
        exc_ref,
        {
            "origin": "derived",
            "kind": "cave",
            "inputs": inputs(EXC_MODEL, SOMANUC),
            "source": "excitatory model cell types listed in nriedman/microns (probably "
            "aibs_soma_nuc_metamodel_preds_v117; unverified)",
            "notes": f"{exc_j.height} of {exc.height} rows kept: nucleus ids recovered by joining pt_root_id to "
            "single-soma v117 seg_ids of the soma/nucleus table; excitatory types only.",
        },
    )

    # ---- synapses_pni_2, real part: every input and output synapse of one column PTC interneuron
    syn = pl.concat([pl.read_ipc(real / SYN_PRE), pl.read_ipc(real / SYN_POST)]).unique("id").sort("id")
    syn = _voxels(syn, "pre_pt_position", ("pre_pt_position_x", "pre_pt_position_y", "pre_pt_position_z"))
    syn = _voxels(syn, "post_pt_position", ("post_pt_position_x", "post_pt_position_y", "post_pt_position_z"))
    syn = _voxels(syn, "ctr_pt_position", ("ctr_pt_position_x", "ctr_pt_position_y", "ctr_pt_position_z"))
    syn = syn.with_columns(pl.col("valid") == "t", pl.col("created").dt.cast_time_unit("us"))
    write(
        "synapses_pni_2",
        syn.select(
            "id",
            "created",
            "superceded_id",
            "valid",
            "pre_pt_supervoxel_id",
            "pre_pt_root_id",
            "post_pt_supervoxel_id",
            "post_pt_root_id",
            "size",
            "pre_pt_position_x",
            "pre_pt_position_y",
            "pre_pt_position_z",
            "post_pt_position_x",
            "post_pt_position_y",
            "post_pt_position_z",
            "ctr_pt_position_x",
            "ctr_pt_position_y",
            "ctr_pt_position_z",
        ),
        {
            "origin": "real",
            "kind": "cave",
            "inputs": inputs(SYN_PRE, SYN_POST),
            "source": "synapses_pni_2 rows of root 864691135101289504 via CAVEconnectome/MeshParty (~Jan 2025)",
            "trace": {
                "inputs": [SYN_PRE, SYN_POST],
                "unique": "id",
                "columns": {
                    "id": "id",
                    "pre_pt_root_id": "pre_pt_root_id",
                    "post_pt_root_id": "post_pt_root_id",
                    "size": "size",
                },
            },
            "notes": "positions converted from nm to 4x4x40 nm voxels (exact); valid 't' -> true.",
        },
        part="real-meshparty",
    )

    # ---- synapse_target_predictions_ssa, real part
    ssa = pl.read_csv(real / SSA).sort("synapse_id")
    ssa_t = pl.DataFrame([*_bookkeeping(ssa.height), ssa["synapse_id"].alias("target_id"), ssa["label"].alias("tag")])
    write(
        "synapse_target_predictions_ssa",
        ssa_t,
        {
            "origin": "real",
            "kind": "cave",
            "inputs": inputs(SSA),
            "source": "spine/shaft/soma predictions by synapse id via bdpedigo/testbed (model behind the SSA table)",
            "trace": {"inputs": [SSA], "columns": {"synapse_id": "target_id", "label": "tag"}},
            "notes": "annotation ids reconstructed; class probabilities dropped. These synapses are inputs onto "
            "cells outside the sample, so they reference synapse ids the sample does not hold.",
        },
        part="real-pedigo",
    )

    # ---- synapse counts before / after proofreading of the column cells (real; keyed by v795 root id)
    edits = pl.read_parquet(real / SYN_EDITS)
    v795 = pl.read_ipc(real / MTYPES).select("root_id", pl.col("id").alias("nucleus_id"))
    counts = edits.join(v795, on="root_id", how="inner").select(
        "nucleus_id", pl.col("root_id").alias("root_id_v795"), *SYN_COUNT_COLUMNS
    )
    write(
        "column_synapse_counts_v795",
        counts.sort("nucleus_id"),
        {
            "origin": "real",
            "kind": "external",
            "inputs": inputs(SYN_EDITS, MTYPES),
            "source": "per-cell synapse counts before and after proofreading of the V1 column cells "
            "(lelabbady/Perisomatic_Based_CellTyping, data/column_syn_edits_df.pkl; Elabbady et al. 2025)",
            "trace": {  # nucleus_id: the `id` of the v795 table row with the same root_id
                "inputs": [SYN_EDITS],
                "semi_join": {"path": MTYPES, "on": "root_id"},
                "columns": {"root_id": "root_id_v795", **{c: c for c in SYN_COUNT_COLUMNS}},
            },
            "notes": f"{counts.height} of {edits.height} rows kept: their root ids are root ids of materialization "
            "v795 in the repo's column table; the other rows carry root ids of another materialization, "
            "which offline data cannot map to nucleus ids. Output counts depend on how far each axon was "
            "proofread, which followed a protocol that differed by cell class.",
        },
    )

    # ---- functional node table (real, 50 rows; an external table, not a CAVE one)
    func = pl.read_csv(real / FUNC)
    write(
        "functional_nodes_ding2025",
        func,
        {
            "origin": "real",
            "kind": "external",
            "inputs": inputs(FUNC),
            "source": "50-row sample of the Ding et al. 2025 functional node table (hwilner benchmark repo)",
            "trace": {"inputs": [FUNC], "columns": {c: c for c in func.columns}},
            "notes": "positions in nm; pref_ori in degrees [0, 180).",
        },
    )

    manifest = {
        "name": "minnie65-sample",
        "datastack": "minnie65_public",
        "materialization_version": None,
        "version_label": "sample-1",
        "position_resolution_nm": list(VOXEL_NM),
        "license": "MICrONS data CC BY 4.0; see ATTRIBUTION.md",
        "tables": dict(sorted(tables.items())),
    }
    for entry in tables.values():
        if "parts" in entry:
            entry["rows"] = sum(p["rows"] for p in entry["parts"])
            entry["origin"] = entry["parts"][0]["origin"]
            entry["kind"] = entry["parts"][0]["kind"]
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (out / "ATTRIBUTION.md").write_text(ATTRIBUTION)
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", type=Path, default=ROOT.parent / "shared" / "data" / "real")
    parser.add_argument("--out", type=Path, default=ROOT / "src" / "cellfeatures" / "sample_data")
    args = parser.parse_args()
    manifest = build(args.real, args.out)
    total = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    for name, entry in manifest["tables"].items():
        print(f"{name:40s} {entry['origin']:9s} {entry['rows']:>8,d} rows")
    print(f"total committed size: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
