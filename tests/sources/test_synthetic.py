"""The generator: deterministic per seed, partitioned, and shaped like the real data."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from cellfeatures.sources.synthetic.cells import SyntheticSpec
from cellfeatures.sources.synthetic.snapshot import SyntheticSource, write_synthetic_snapshot

SPEC = SyntheticSpec(n_cells=400, n_synapses=60_000, seed=7, chunk_rows=25_000)


def _frames(path: Path) -> dict[str, pl.DataFrame]:
    from cellfeatures.sources.snapshot import SnapshotSource

    source = SnapshotSource(path)
    return {t: source.scan(t).collect() for t in source.tables()}


def test_same_seed_same_tables_other_seed_other_tables(tmp_path: Path) -> None:
    a = _frames(write_synthetic_snapshot(SPEC, tmp_path / "a"))
    b = _frames(write_synthetic_snapshot(SPEC, tmp_path / "b"))
    c = _frames(write_synthetic_snapshot(SyntheticSpec(**{**SPEC.__dict__, "seed": 8}), tmp_path / "c"))
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].equals(b[name]), name
    assert not a["synapses_pni_2"].equals(c["synapses_pni_2"])


def test_synapses_are_written_in_parts_of_bounded_size(tmp_path: Path) -> None:
    path = write_synthetic_snapshot(SPEC, tmp_path / "s")
    parts = sorted((path / "synapses_pni_2").glob("*.parquet"))
    sizes = [pl.scan_parquet(p).select(pl.len()).collect().item() for p in parts]
    assert sizes == [25_000, 25_000, 10_000]
    ids = pl.scan_parquet(path / "synapses_pni_2" / "*.parquet").select("id").collect()["id"]
    assert ids.is_unique().all() and ids.is_sorted()


def test_distributions_follow_the_real_data(tmp_path: Path) -> None:
    source = SyntheticSource(
        SyntheticSpec(n_cells=1_500, n_synapses=400_000, seed=3, chunk_rows=400_000), cache_dir=tmp_path
    )
    cells = (
        source.scan("aibs_metamodel_celltypes_v661")
        .select(pl.col("pt_root_id").alias("root"), "classification_system", "cell_type", "pt_position_y")
        .collect()
    )
    syn = source.scan("synapses_pni_2").select("id", "pre_pt_root_id", "post_pt_root_id").collect()
    tags = source.scan("synapse_target_predictions_ssa").select(pl.col("target_id").alias("id"), "tag").collect()
    # inhibitory cells' outputs land on soma/shaft more than excitatory cells' outputs
    out = syn.join(cells.unique("root", keep="none"), left_on="pre_pt_root_id", right_on="root").join(tags, on="id")
    frac = out.group_by("classification_system").agg((pl.col("tag") != "spine").mean().alias("non_spine"))
    by_class = dict(zip(frac["classification_system"], frac["non_spine"], strict=True))
    assert by_class["inhibitory_neuron"] > by_class["excitatory_neuron"] + 0.2
    # heavy-tailed inputs: the busiest decile of cells receives far more than the median cell
    counts = syn.group_by("post_pt_root_id").len().join(cells, left_on="post_pt_root_id", right_on="root")["len"]
    assert counts.quantile(0.9) > 2.5 * counts.median()
    # layer-dependent depth: 23P above 4P above 6P-CT
    depth = cells.group_by("cell_type").agg(pl.col("pt_position_y").median())
    d = dict(zip(depth["cell_type"], depth["pt_position_y"], strict=True))
    assert d["23P"] < d["4P"] < d["6P-CT"]
    # ~2-3 ROIs per coregistered cell
    coreg = source.scan("coregistration_auto_phase3_fwd_apl_vess_combined_v2").collect()
    rois_per_cell = coreg.group_by("pt_root_id").len()["len"].mean()
    assert 1.8 < rois_per_cell < 3.0
