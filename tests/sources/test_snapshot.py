"""A snapshot reads the same table from Parquet, Feather, CSV and CSV.gz to equal frames."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import polars as pl
import pytest

from cellfeatures.errors import SourceError, TableNotFoundError
from cellfeatures.sources.snapshot import SnapshotSource


def _csv_like_pandas(frame: pl.DataFrame) -> str:
    """How a caveclient frame looks after DataFrame.to_csv: index column, 't' booleans, '[x y z]' positions."""
    out = (
        frame.with_columns(
            pl.concat_str(
                [
                    pl.lit("["),
                    pl.col("pt_position_x").cast(pl.Int64).cast(pl.String),
                    pl.lit("  "),
                    pl.col("pt_position_y").cast(pl.Int64).cast(pl.String),
                    pl.lit(" "),
                    pl.col("pt_position_z").cast(pl.Int64).cast(pl.String),
                    pl.lit("]"),
                ]
            ).alias("pt_position"),
            pl.when(pl.col("valid")).then(pl.lit("t")).otherwise(pl.lit("f")).alias("valid"),
        )
        .drop("pt_position_x", "pt_position_y", "pt_position_z")
        .with_row_index("")
    )
    return out.write_csv()


def test_the_four_formats_read_to_equal_frames(tmp_path: Path, sample_source) -> None:
    table = sample_source.scan("allen_v1_column_types_slanted_ref").collect().drop_nulls("pt_position_x").head(300)
    table = table.with_columns(pl.col("created").fill_null(pl.datetime(2023, 3, 1, 12, time_zone="UTC")))
    dirs = {fmt: tmp_path / fmt for fmt in ("parquet", "feather", "csv", "csvgz")}
    for d in dirs.values():
        d.mkdir()
    table.write_parquet(dirs["parquet"] / "types.parquet")
    table.write_ipc(dirs["feather"] / "types.feather")
    text = _csv_like_pandas(table)
    (dirs["csv"] / "types.csv").write_text(text)
    with gzip.open(dirs["csvgz"] / "types.csv.gz", "wt") as fh:
        fh.write(text)
    frames = {fmt: SnapshotSource(d).scan("types").collect() for fmt, d in dirs.items()}
    reference = frames["parquet"].select(sorted(frames["parquet"].columns))
    for fmt, frame in frames.items():
        frame = frame.select(sorted(frame.columns))
        # superceded_id is all-null: CSV cannot say its dtype; the wire dialect makes it Float64 everywhere
        assert frame.equals(reference), fmt


def test_any_subset_of_tables_and_partitioned_tables(tmp_path: Path) -> None:
    (tmp_path / "syn").mkdir()
    pl.DataFrame({"id": [1, 2]}).write_parquet(tmp_path / "syn" / "a.parquet")
    pl.DataFrame({"id": [3]}).write_parquet(tmp_path / "syn" / "b.parquet")
    pl.DataFrame({"id": [9]}).write_csv(tmp_path / "other.csv")
    (tmp_path / "notes.txt").write_text("ignored")
    source = SnapshotSource(tmp_path)
    assert source.tables() == ["other", "syn"]
    assert source.scan("syn").collect()["id"].to_list() == [1, 2, 3]
    with pytest.raises(TableNotFoundError, match=r"'nucleus_detection_v0' is not in snapshot(.|\n)*has: other, syn"):
        source.scan("nucleus_detection_v0")


def test_column_range_comes_from_parquet_statistics_or_is_unknown(tmp_path: Path) -> None:
    (tmp_path / "syn").mkdir()
    pl.DataFrame({"id": [5, 2, None]}, schema={"id": pl.Int64}).write_parquet(tmp_path / "syn" / "a.parquet")
    pl.DataFrame({"id": list(range(40, 1040))}).write_parquet(tmp_path / "syn" / "b.parquet", row_group_size=100)
    pl.DataFrame({"id": [9]}).write_csv(tmp_path / "other.csv")
    pl.DataFrame({"target_id": [3]}).write_parquet(tmp_path / "renamed.parquet")
    source = SnapshotSource(tmp_path)
    assert source.column_range("syn", "id") == (2, 1039), "over every part and row group, nulls ignored"
    assert source.column_range("other", "id") is None, "CSV has no statistics"
    assert source.column_range("renamed", "id") is None, "a column the file names otherwise is not guessed"


def test_a_gzip_csv_is_decompressed_once_until_it_changes(tmp_path: Path, monkeypatch) -> None:
    from cellfeatures.sources import snapshot as snapshot_module

    reads: list[Path] = []
    real_read_csv = pl.read_csv
    monkeypatch.setattr(
        snapshot_module.pl, "read_csv", lambda path, **kw: reads.append(path) or real_read_csv(path, **kw)
    )
    path = tmp_path / "ext.csv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("nucleus_id,value\n1,2.5\n")
    source = SnapshotSource(tmp_path)
    for _ in range(3):
        assert source.scan("ext").collect()["value"].to_list() == [2.5]
    assert len(reads) == 1, "three scans, one decompression"
    with gzip.open(path, "wt") as fh:
        fh.write("nucleus_id,value\n1,7.0\n2,1.0\n")
    assert source.scan("ext").collect()["value"].to_list() == [7.0, 1.0], "a changed file is read again"


def test_manifest_declares_provenance_and_resolution(tmp_path: Path) -> None:
    pl.DataFrame({"id": [1]}).write_parquet(tmp_path / "t.parquet")
    (tmp_path / "manifest.json").write_text(
        json.dumps(
            {
                "datastack": "minnie65_public",
                "materialization_version": 1300,
                "timestamp": "2025-01-13T10:10:01.286229",
                "position_resolution_nm": [1, 1, 1],
                "tables": {"t": {"origin": "derived", "source": "hand-made"}},
            }
        )
    )
    source = SnapshotSource(tmp_path)
    assert source.position_resolution_nm == (1.0, 1.0, 1.0) and source.materialization_version == 1300
    info = source.info("t")
    assert (info.origin, info.rows, info.source) == ("derived", 1, "hand-made")
    fp = source.fingerprint()
    assert fp["materialization_version"] == 1300 and fp["tables"]["t"]["rows"] == 1


def test_fingerprint_changes_when_a_file_changes(tmp_path: Path) -> None:
    pl.DataFrame({"id": [1]}).write_parquet(tmp_path / "t.parquet")
    before = SnapshotSource(tmp_path).fingerprint()
    pl.DataFrame({"id": [2]}).write_parquet(tmp_path / "t.parquet")
    assert SnapshotSource(tmp_path).fingerprint() != before


def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        SnapshotSource(tmp_path / "nope")
