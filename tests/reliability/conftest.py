"""The reliability suite's shared inputs.

Every test here is marked `corruption` (bad input: a table, a file, a config, a manifest, a damaged
store) or `fault` (the world misbehaving: a server capping, failing, slow or inconsistent; a killed
build; a full disk; two builds at once); tests/conftest.py counts them and prints one line with both
counts, so CI logs show that the suite really ran its cases.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest

from cellfeatures.sources.synthetic.cells import SyntheticSpec
from cellfeatures.sources.synthetic.snapshot import write_synthetic_snapshot

EXTERNAL = "ext_features"
PARTNER_LABELS = "aibs_metamodel_celltypes_v661"


@pytest.fixture(scope="session")
def base_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small valid snapshot (every table one Parquet file) with an external feature table."""
    generated = write_synthetic_snapshot(
        SyntheticSpec(n_cells=80, n_synapses=3_000, seed=5, chunk_rows=3_000, proofread_fraction=0.3),
        tmp_path_factory.mktemp("generated") / "snap",
    )
    root = tmp_path_factory.mktemp("base") / "snap"
    root.mkdir()
    for entry in generated.iterdir():
        if entry.is_dir():
            pl.concat([pl.read_parquet(p) for p in sorted(entry.glob("*.parquet"))]).write_parquet(
                root / f"{entry.name}.parquet"
            )
        elif entry.suffix == ".parquet":
            shutil.copy(entry, root / entry.name)
    nuclei = pl.read_parquet(root / "nucleus_detection_v0.parquet")
    pl.DataFrame(
        {
            "nucleus_id": nuclei["id"],
            "soma_area": [100.0 + i for i in range(nuclei.height)],
            "n_spines": list(range(nuclei.height)),
        }
    ).write_parquet(root / f"{EXTERNAL}.parquet")
    return root


def config_text(snapshot: Path, **family_overrides: str) -> str:
    """A TOML config over the snapshot with all five families."""
    return f"""
name = "reliability"
[source]
kind = "snapshot"
path = "{snapshot}"
[features.nucleus]
area_table = "nucleus_functional_area_assignment"
depth_method = "y_offset"
[features.synapses]
synapse_table = "synapses_pni_2"
target_table = "synapse_target_predictions_ssa"
partner_label_table = "{PARTNER_LABELS}"
[features.functional]
coregistration_table = "coregistration_manual_v4"
digital_twin_table = "digital_twin_properties_bcm_coreg_v4"
[features.proofreading]
table = "proofreading_status_and_strategy"
[features.external.ext]
table = "{EXTERNAL}"
key = "nucleus_id"
[features.external.ext.columns]
soma_area = "um2"
n_spines = "count"
""" + "".join(family_overrides.values())
