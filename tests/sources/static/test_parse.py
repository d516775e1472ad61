"""Reading an export: the sidecar's names and types, block cutting, and the checks Polars does not make."""

from __future__ import annotations

import gzip
from pathlib import Path

import polars as pl
import pytest

from cellfeatures.errors import SourceError
from cellfeatures.sources.static.exports import export_file_names, parse_sidecar, write_export
from cellfeatures.sources.static.parse import Block, BlockReader, parse_block


def test_the_sidecar_gives_names_and_types_in_file_order_with_modifiers_and_a_title_line() -> None:
    text = 'column,type\nid,bigint\nname,"character varying(255)"\nwhen,timestamp(6) without time zone\nok,boolean\n'
    columns = parse_sidecar(text, "t", "sidecar")
    assert [(c.name, c.kind) for c in columns] == [
        ("id", "int"),
        ("name", "text"),
        ("when", "timestamp"),
        ("ok", "bool"),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id,bigint\nshape,geometry\n", "line 2: column 'shape' has the type 'geometry'"),
        ("id,bigint\nid,integer\n", "declares ['id'] more than once"),
        ("id\n", "line 1: expected `column,type`"),
        ("\n", "declares no columns"),
    ],
)
def test_a_bad_sidecar_names_the_line_and_the_column(text: str, message: str) -> None:
    with pytest.raises(SourceError, match="table 't'") as err:
        parse_sidecar(text, "t", "sidecar")
    assert message in str(err.value)


def test_the_synapse_table_has_its_own_file_name_and_others_are_merged_exports() -> None:
    assert export_file_names("synapses_pni_2") == (
        "synapses_pni_2_v1_filtered_view.csv.gz",
        "synapses_pni_2_v1_filtered_view_header.csv",
    )
    assert export_file_names("nucleus_detection_v0")[0] == "nucleus_detection_v0_merged.csv.gz"
    assert export_file_names("t", {"t": "custom"})[1] == "custom_header.csv"


COLUMNS = parse_sidecar("id,bigint\nvalue,double precision\nnote,text\n", "t", "s")


def test_a_short_row_is_refused_although_polars_would_fill_it_with_nulls() -> None:
    block = Block(b"1,2.5,a\n2,3.5\n3,1.0,c\n", first_line=41, lines=3)
    with pytest.raises(SourceError, match=r"table 't', line 42: 2 fields, but the sidecar declares 3 columns"):
        parse_block(block, COLUMNS, "t")


def test_a_short_row_is_found_even_when_the_last_column_has_real_nulls() -> None:
    block = Block(b"1,2.5,\n2,3.5\n", first_line=1, lines=2)
    with pytest.raises(SourceError, match="line 2: 2 fields"):
        parse_block(block, COLUMNS, "t")


def test_a_block_inside_a_chunk_is_read_in_place() -> None:
    chunk = b"tail of a record\n1,2.5,a\n2,,b\nhead of the next"
    block = Block(chunk, first_line=7, lines=2, start=chunk.index(b"\n") + 1, end=chunk.rindex(b"\n") + 1)
    frame = parse_block(block, COLUMNS, "t")
    assert frame.rows() == [(1, 2.5, "a"), (2, None, "b")]


def _gzip(tmp_path: Path, text: bytes) -> Path:
    path = tmp_path / "t.csv.gz"
    path.write_bytes(gzip.compress(text))
    return path


def test_blocks_never_cut_a_record_or_a_quoted_newline(tmp_path: Path) -> None:
    rows = [
        f'{i},{i / 2},"line one\nline two, with a comma"\n' if i % 7 == 0 else f"{i},{i / 2},plain\n"
        for i in range(3000)
    ]
    path = _gzip(tmp_path, "".join(rows).encode())
    reader = BlockReader(path, "t", block_bytes=997)
    frames = [parse_block(b, COLUMNS, "t") for b in reader]
    got = pl.concat(frames)
    assert got.height == 3000 and got["id"].to_list() == list(range(3000))
    assert got["note"][7] == "line one\nline two, with a comma"
    assert reader.bytes == path.stat().st_size and len(reader.sha256) == 64


def test_line_numbers_stay_right_across_many_blocks(tmp_path: Path) -> None:
    text = "".join(f"{i},1.0,x\n" for i in range(1, 5001)).replace("4321,1.0,x", "4321,1.0x,x")
    path = _gzip(tmp_path, text.encode())
    with pytest.raises(SourceError, match=r"line 4321, column 'value': '1.0x' is not a double precision"):
        for block in BlockReader(path, "t", block_bytes=1000):
            parse_block(block, COLUMNS, "t")


def test_a_file_that_is_not_gzip_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "t.csv.gz"
    path.write_bytes(b"id,value\n1,2\n")
    with pytest.raises(SourceError, match=r"cannot decompress .*t\.csv\.gz"):
        list(BlockReader(path, "t"))


def test_written_exports_round_trip_every_type(tmp_path: Path) -> None:
    from cellfeatures.sources.static.convert import convert_export

    frame = pl.DataFrame(
        {
            "id": [3, 1, 2],
            "f32": pl.Series([0.1, None, 2.5], dtype=pl.Float32),
            "flag": [True, None, False],
            "day": pl.Series(["2024-01-02", None, "1999-12-31"]).str.to_date(),
            "at": pl.Series(["2020-11-04 06:48:57.134102", "2020-11-04 06:48:57", None]).str.to_datetime(
                time_zone="UTC"
            ),
        }
    )
    data, header = write_export(frame, tmp_path / "e", "t", columns=["flag", "at", "id", "day", "f32"])
    (tmp_path / "o").mkdir()
    convert_export(data, parse_sidecar(header.read_text(), "t", "h"), "t", tmp_path / "o")
    back = pl.read_parquet(tmp_path / "o" / "part-00000.parquet").select(frame.columns)
    assert back.equals(frame.sort("id"))


def test_keeping_rows_parses_only_the_kept_lines_in_full_and_equals_the_full_parse(tmp_path: Path) -> None:
    from cellfeatures.sources.static.parse import parse_kept

    columns = parse_sidecar("id,bigint\nroot,bigint\nflag,boolean\nnote,text\n", "t", "s")
    text = "".join(f"{i},{i % 5},{'t' if i % 2 else 'f'},n{i}\n" for i in range(5000))
    path = _gzip(tmp_path, text.encode())
    keep = pl.col("root").is_in([1, 3])
    kept, read = [], 0
    for block in BlockReader(path, "t", block_bytes=4096):
        frame, n = parse_kept(block, columns, "t", ("root",), keep)
        kept.append(frame)
        read += n
    full = pl.concat([parse_block(b, columns, "t") for b in BlockReader(path, "t", block_bytes=4096)])
    assert read == 5000
    assert pl.concat(kept).equals(full.filter(keep))


def test_a_bad_value_in_a_kept_row_still_names_its_line(tmp_path: Path) -> None:
    from cellfeatures.sources.static.parse import parse_kept

    columns = parse_sidecar("id,bigint\nroot,bigint\nflag,boolean\n", "t", "s")
    text = "".join(f"{i},{i % 5},{'maybe' if i == 3001 else 't'}\n" for i in range(5000))
    with pytest.raises(SourceError, match=r"line 3002, column 'flag': 'maybe' is not a boolean"):
        for block in BlockReader(_gzip(tmp_path, text.encode()), "t", block_bytes=4096):
            parse_kept(block, columns, "t", ("root",), pl.col("root") == 1)
