"""A snapshot holding only some tables builds every family it can and says what it skipped."""

from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner

from cellfeatures.cli import app
from cellfeatures.store.store import FeatureStore
from tests.reliability.conftest import config_text

KEEP = {"nucleus_detection_v0", "synapses_pni_2", "aibs_metamodel_celltypes_v661"}


def _partial(base: Path, tmp: Path) -> Path:
    snap = tmp / "snap"
    shutil.copytree(base, snap)
    for path in snap.iterdir():
        if path.name.split(".")[0] not in KEEP:
            path.unlink()
    return snap


def test_a_partial_snapshot_builds_what_it_can_and_lists_the_rest(base_snapshot: Path, tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(config_text(_partial(base_snapshot, tmp_path)))
    store = FeatureStore(tmp_path / "features")
    result = CliRunner().invoke(app, ["build", "--config", str(config), "--store", str(store.root)])
    assert result.exit_code == 0, result.output
    manifest = store.manifest("latest")
    assert set(manifest["families"]) == {"nucleus", "synapses", "proofreading"}
    skipped = {(s["family"], s["table"]) for s in manifest["skipped"]}
    assert skipped == {
        ("nucleus", "nucleus_functional_area_assignment"),
        ("synapses", "synapse_target_predictions_ssa"),
        ("functional", "coregistration_manual_v4"),
        ("proofreading", "proofreading_status_and_strategy"),
        ("external.ext", "ext_features"),
    }
    assert "skipped functional: coregistration_manual_v4" in result.output
    features = manifest["features"]
    assert "syn_in_count" in features and "syn_in_frac_exc" in features, "partner labels were present"
    assert "syn_in_frac_spine" not in features and "nuc_area" not in features


def test_strict_refuses_a_partial_snapshot(base_snapshot: Path, tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(config_text(_partial(base_snapshot, tmp_path)))
    result = CliRunner().invoke(app, ["build", "--strict", "--config", str(config), "--store", str(tmp_path / "f")])
    assert result.exit_code == 2
    assert "--strict and the source lacks tables" in result.output and "coregistration_manual_v4" in result.output


def test_without_the_nucleus_table_nothing_is_built(base_snapshot: Path, tmp_path: Path) -> None:
    snap = _partial(base_snapshot, tmp_path)
    (snap / "nucleus_detection_v0.parquet").unlink()
    config = tmp_path / "c.toml"
    config.write_text(config_text(snap))
    result = CliRunner().invoke(app, ["build", "--config", str(config), "--store", str(tmp_path / "f")])
    assert result.exit_code == 2 and "nothing can be built without it" in result.output


def test_the_stock_minnie65_config_builds_from_a_partial_snapshot(base_snapshot: Path, tmp_path: Path) -> None:
    """Issue #12's bar: the stock configs/minnie65_public.toml with its source switched to a snapshot of
    only nucleus_detection_v0, synapses_pni_2 and a cell-type table publishes nucleus + synapses and says
    which families it skipped."""
    import re

    from cellfeatures.config.model import packaged_config_path

    snap = _partial(base_snapshot, tmp_path)
    stock = packaged_config_path("minnie65_public").read_text()
    switched = re.sub(
        r"\[source\].*?(?=\[identity\])", f'[source]\nkind = "snapshot"\npath = "{snap}"\n\n', stock, flags=re.S
    )
    assert 'kind = "snapshot"' in switched and "[features.functional]" in switched
    (tmp_path / "configs").mkdir()
    config = tmp_path / "configs" / "minnie65_public.toml"
    config.write_text(switched)
    result = CliRunner().invoke(app, ["build", "--config", str(config)])
    assert result.exit_code == 0, result.output
    manifest = FeatureStore(tmp_path / "features").manifest("latest")
    # proofreading keeps what the identity map alone gives (several nuclei on a root, no root)
    assert set(manifest["families"]) == {"nucleus", "synapses", "proofreading"}
    skipped = {s["family"] for s in manifest["skipped"]}
    assert {"functional", "proofreading"} <= skipped
    for family in ("functional", "proofreading"):
        assert f"skipped {family}:" in result.output
