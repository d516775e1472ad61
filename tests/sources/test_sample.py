"""The embedded sample: manifest, origins, checksums, and traceability of real tables to their inputs."""

from __future__ import annotations

import json

import polars as pl
import pytest

from cellfeatures._util.checksums import file_sha256, frame_checksum
from cellfeatures.sources.sample import sample_data_dir
from tests.conftest import REAL_DATA

MANIFEST = json.loads((sample_data_dir() / "manifest.json").read_text())


def test_manifest_lists_every_committed_table_with_origin_and_rows() -> None:
    files = {p.relative_to(sample_data_dir()).as_posix() for p in sample_data_dir().rglob("*.parquet")}
    declared = set()
    for name, entry in MANIFEST["tables"].items():
        assert entry["origin"] in ("real", "derived", "synthetic"), name
        for part in entry.get("parts", [entry]):
            declared.add(part["file"])
            path = sample_data_dir() / part["file"]
            assert pl.scan_parquet(path).select(pl.len()).collect().item() == part["rows"], part["file"]
            assert file_sha256(path) == part["sha256"], f"{part['file']} changed since scripts/build_sample.py wrote it"
    assert declared == files


def test_committed_sample_stays_within_budget() -> None:
    size = sum(p.stat().st_size for p in sample_data_dir().rglob("*") if p.is_file())
    assert size < 15_000_000


@pytest.mark.skipif(not REAL_DATA.exists(), reason="needs ../shared/data/real")
def test_real_tables_trace_to_the_build_inputs_by_checksum() -> None:
    traced = 0
    for name, entry in MANIFEST["tables"].items():
        for part in entry.get("parts", [entry]):
            for source in part["inputs"]:
                assert file_sha256(REAL_DATA / source["path"]) == source["sha256"], source["path"]
            trace = part.get("trace")
            if not trace:
                assert part["origin"] != "real", f"{name}: a real table must be traceable"
                continue
            frames = []
            for path in trace["inputs"]:
                file = REAL_DATA / path
                frames.append(
                    pl.read_parquet(file)
                    if path.endswith(".parquet")
                    else pl.read_ipc(file)
                    if path.endswith(".feather")
                    else pl.read_csv(file)
                )
            expected = pl.concat([f.select(list(trace["columns"])) for f in frames])
            if trace.get("semi_join"):  # rows kept only where the key is in another input (an id map)
                join = trace["semi_join"]
                assert file_sha256(REAL_DATA / join["path"]) in {s["sha256"] for s in part["inputs"]}
                keys = pl.read_ipc(REAL_DATA / join["path"])[join["on"]]
                expected = expected.filter(pl.col(join["on"]).is_in(keys.implode()))
            if trace.get("unique"):
                expected = expected.unique(trace["unique"])
            expected = expected.rename(trace["columns"])
            committed = pl.read_parquet(sample_data_dir() / part["file"], columns=list(trace["columns"].values()))
            assert frame_checksum(expected) == trace["checksum"] == frame_checksum(committed), name
            assert committed.height == expected.height
            traced += 1
    assert traced >= 7


def test_sample_tables_say_where_they_come_from(sample_source) -> None:
    origins = {t: sample_source.info(t).origin for t in sample_source.tables()}
    assert origins["allen_v1_column_types_slanted_ref"] == "real"
    assert origins["nucleus_detection_v0"] == "derived"
    assert origins["coregistration_manual_v4"] == "synthetic"
    parts = {p.origin: p.rows for p in sample_source.info("synapses_pni_2").parts}
    assert parts["real"] == 18_894 and parts["synthetic"] > 100_000
    assert origins["synapses_pni_2"] == "synthetic", "a table with a synthetic part is not real"
