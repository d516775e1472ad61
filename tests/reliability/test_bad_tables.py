"""Generated bad-input cases: one mutation of one table of a small valid snapshot, built through the CLI.

Each case says what a demanding user is owed: `error` — exit code 2, a first line naming the table (or
its file), no traceback, no version and no temporary directory left in the store; or `ok` — the input
is legitimately odd (an extra column, CSV instead of Parquet, `yes`/`no` booleans, a null synapse size)
and the build publishes a sound version. The generator covers every table the config reads; a
hypothesis test adds random garbage in random cells.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cellfeatures._util.checksums import file_sha256
from cellfeatures.cli import app
from cellfeatures.store.store import FeatureStore
from tests.reliability.conftest import EXTERNAL, PARTNER_LABELS, config_text

NUCLEUS = "nucleus_detection_v0"
REQUIRED_TABLES = {
    NUCLEUS,
    "synapses_pni_2",
    "coregistration_manual_v4",
    "digital_twin_properties_bcm_coreg_v4",
    EXTERNAL,
}
SYNAPSES = "synapses_pni_2"
TAGS = "synapse_target_predictions_ssa"
AREA = "nucleus_functional_area_assignment"
COREG = "coregistration_manual_v4"
TWIN = "digital_twin_properties_bcm_coreg_v4"
PROOF = "proofreading_status_and_strategy"

# the key column of each table (ids, roots) and one column the table cannot do without
KEY = {
    NUCLEUS: "id",
    PARTNER_LABELS: "target_id",
    SYNAPSES: "pre_pt_root_id",
    TAGS: "target_id",
    AREA: "target_id",
    COREG: "pt_root_id",
    TWIN: "pt_root_id",
    PROOF: "pt_root_id",
    EXTERNAL: "nucleus_id",
}
REQUIRED = {
    NUCLEUS: "pt_root_id",
    PARTNER_LABELS: "cell_type",
    SYNAPSES: "post_pt_root_id",
    TAGS: "tag",
    AREA: "tag",
    COREG: "unit_id",
    TWIN: "cc_abs",
    PROOF: "valid_id",
    EXTERNAL: "soma_area",
}
Mutation = Callable[[Path, str], None]


def _path(snap: Path, table: str) -> Path:
    return snap / f"{table}.parquet"


def _rewrite(fn: Callable[[pl.DataFrame], pl.DataFrame]) -> Mutation:
    def mutate(snap: Path, table: str) -> None:
        path = _path(snap, table)
        fn(pl.read_parquet(path)).write_parquet(path)

    return mutate


def _as_csv(snap: Path, table: str) -> Path:
    """The table as CSV (positions split, booleans as true/false); returns the CSV path."""
    path = _path(snap, table)
    frame = pl.read_parquet(path)
    path.unlink()
    out = snap / f"{table}.csv"
    frame.write_csv(out)
    return out


def _csv_lines(fn: Callable[[list[str]], list[str]]) -> Mutation:
    def mutate(snap: Path, table: str) -> None:
        out = _as_csv(snap, table)
        out.write_text("\n".join(fn(out.read_text().splitlines())) + "\n")

    return mutate


def _key_as(values: Callable[[pl.Series], pl.Series]) -> Mutation:
    def mutate(snap: Path, table: str) -> None:
        path = _path(snap, table)
        frame = pl.read_parquet(path)
        frame.with_columns(values(frame[KEY[table]]).alias(KEY[table])).write_parquet(path)

    return mutate


def _zero_bytes(snap: Path, table: str) -> None:
    _path(snap, table).write_bytes(b"")


def _truncate(snap: Path, table: str) -> None:
    data = _path(snap, table).read_bytes()
    _path(snap, table).write_bytes(data[: len(data) // 2])


def _parquet_named_csv(snap: Path, table: str) -> None:
    _path(snap, table).rename(snap / f"{table}.csv")


def _csv_named_parquet(snap: Path, table: str) -> None:
    _as_csv(snap, table).rename(_path(snap, table))


def _two_formats(snap: Path, table: str) -> None:
    pl.read_parquet(_path(snap, table)).write_csv(snap / f"{table}.csv")


def _corrupt_with_manifest(snap: Path, table: str) -> None:
    """Bytes flipped in the middle of a file whose SHA-256 the snapshot manifest records."""
    path = _path(snap, table)
    manifest = {"tables": {table: {"origin": "real", "sha256": file_sha256(path)}}}
    (snap / "manifest.json").write_text(json.dumps(manifest))
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 8] = bytes(b ^ 0x5A for b in data[middle : middle + 8])
    path.write_bytes(bytes(data))


def _set_valid(values: Callable[[int], object]) -> Mutation:
    return _rewrite(lambda f: f.with_columns(pl.Series("valid", [values(i) for i in range(f.height)])))


GENERIC: dict[str, tuple[Mutation, Callable[[str], str]]] = {
    "missing required column": (_rewrite(lambda f: f.drop(f.columns[0])), lambda t: "error"),
    "extra column": (_rewrite(lambda f: f.with_columns(pl.lit("x").alias("book_keeping"))), lambda t: "ok"),
    "zero-byte file": (_zero_bytes, lambda t: "error"),
    "truncated file": (_truncate, lambda t: "error"),
    "Parquet named .csv": (_parquet_named_csv, lambda t: "error"),
    "CSV named .parquet": (_csv_named_parquet, lambda t: "error"),
    "same table in two formats": (_two_formats, lambda t: "error"),
    "written as CSV": (lambda s, t: _as_csv(s, t) and None, lambda t: "ok"),
    "CSV with a ragged row": (_csv_lines(lambda rows: [*rows[:3], rows[3] + ",1,2,3", *rows[4:]]), lambda t: "error"),
    "CSV with a broken quote": (_csv_lines(lambda rows: [*rows[:3], '"' + rows[3], *rows[4:]]), lambda t: "error"),
    "bytes corrupted in the middle (checksummed)": (_corrupt_with_manifest, lambda t: "error"),
    "key through float64 with NaN": (_key_as(lambda s: s.cast(pl.Float64).scatter(0, float("nan"))), lambda t: "error"),
    "key as text": (_key_as(lambda s: s.cast(pl.String).scatter(0, "abc")), lambda t: "error"),
    "key beyond int64": (_key_as(lambda s: s.cast(pl.String).scatter(0, "9223372036854775808")), lambda t: "error"),
    "key null": (_key_as(lambda s: s.scatter(0, None)), lambda t: "error"),
    "duplicated row": (_rewrite(lambda f: pl.concat([f, f.head(1)])), lambda t: "error"),
    # a required table with 0 rows is a failed export, not "0 synapses, measured" for every cell
    "empty table": (_rewrite(lambda f: f.head(0)), lambda t: "error" if t in REQUIRED_TABLES else "ok"),
}
WITH_VALID = [t for t in KEY if t != EXTERNAL]
VALID: dict[str, tuple[Mutation, str]] = {
    "valid spelled yes/no": (_set_valid(lambda i: "yes" if i % 7 else "no"), "ok"),
    "valid spelled Y/N": (_set_valid(lambda i: "Y" if i % 7 else "N"), "ok"),
    "valid as 0/1": (_set_valid(lambda i: 1 if i % 7 else 0), "ok"),
    "valid spelled maybe": (_set_valid(lambda i: "maybe" if i == 2 else "t"), "error"),
}


def _col(name: str, fn: Callable[[pl.Series], pl.Series]) -> Mutation:
    return _rewrite(lambda f: f.with_columns(fn(f[name]).alias(name)))


def _pos_strings(fmt: Callable[[int, int, int, int], str]) -> Mutation:
    def change(f: pl.DataFrame) -> pl.DataFrame:
        xyz = f.select("pt_position_x", "pt_position_y", "pt_position_z").rows()
        strings = [fmt(i, *p) for i, p in enumerate(xyz)]
        return f.drop("pt_position_x", "pt_position_y", "pt_position_z").with_columns(pl.Series("pt_position", strings))

    return _rewrite(change)


SPECIFIC: list[tuple[str, str, Mutation, str]] = [
    (NUCLEUS, "position NaN", _col("pt_position_x", lambda s: s.cast(pl.Float64).scatter(1, float("nan"))), "error"),
    (
        NUCLEUS,
        "position infinite",
        _col("pt_position_y", lambda s: s.cast(pl.Float64).scatter(1, float("inf"))),
        "error",
    ),
    (NUCLEUS, "positions in the wrong unit", _col("pt_position_z", lambda s: s * 100_000), "error"),
    (NUCLEUS, "absurd volume", _col("volume", lambda s: s.scatter(3, 1e7)), "error"),
    (NUCLEUS, "negative volume", _col("volume", lambda s: s.scatter(3, -5.0)), "error"),
    (NUCLEUS, "every nucleus invalid", _rewrite(lambda f: f.with_columns(pl.lit(False).alias("valid"))), "error"),
    (NUCLEUS, "positions as '[x y z]' strings", _pos_strings(lambda i, x, y, z: f"[{x} {y} {z}]"), "ok"),
    (
        NUCLEUS,
        "a position with two components",
        _pos_strings(lambda i, x, y, z: f"[{x} {y}]" if i == 4 else f"[{x} {y} {z}]"),
        "error",
    ),
    (
        NUCLEUS,
        "a garbage position string",
        _pos_strings(lambda i, x, y, z: "n/a?" if i == 4 else f"[{x}, {y}, {z}]"),
        "error",
    ),
    (SYNAPSES, "fractional sizes", _col("size", lambda s: s.cast(pl.Float64) + 0.5), "error"),
    (SYNAPSES, "text sizes", _col("size", lambda s: s.cast(pl.String).scatter(2, "big")), "error"),
    (SYNAPSES, "negative size", _col("size", lambda s: s.scatter(2, -1)), "error"),
    (SYNAPSES, "absurd size", _col("size", lambda s: s.scatter(2, 10**12)), "error"),
    (SYNAPSES, "null sizes (documented: size unknown)", _col("size", lambda s: s.scatter([2, 5], None)), "ok"),
    (SYNAPSES, "null synapse position", _col("ctr_pt_position_x", lambda s: s.scatter(2, None)), "ok"),
    (
        SYNAPSES,
        "NaN synapse position",
        _col("ctr_pt_position_x", lambda s: s.cast(pl.Float64).scatter(2, float("nan"))),
        "error",
    ),
    (TAGS, "unknown tag spelling", _col("tag", lambda s: s.scatter(0, "spines")), "error"),
    (TAGS, "capitalised tag", _col("tag", lambda s: s.scatter(0, "Spine")), "error"),
    (
        TAGS,
        "duplicated tag for one synapse",
        _rewrite(lambda f: pl.concat([f, f.head(1).with_columns(pl.col("id") + 10**9)])),
        "error",
    ),
    (
        TAGS,
        "tag for an unknown synapse (applies to nothing)",
        _rewrite(
            lambda f: pl.concat([f, f.head(1).with_columns(pl.col("id") + 10**9, pl.lit(10**15).alias("target_id"))])
        ),
        "ok",
    ),
    (PARTNER_LABELS, "unknown cell-type spelling", _col("cell_type", lambda s: s.scatter(0, "pyramidal-ish")), "error"),
    (PARTNER_LABELS, "lower-case spelling", _col("cell_type", lambda s: s.scatter(0, "23p")), "error"),
    (PARTNER_LABELS, "unicode dash in a spelling", _col("cell_type", lambda s: s.scatter(0, "5P\u2013IT")), "error"),
    (AREA, "unknown area", _col("tag", lambda s: s.scatter(0, "V9")), "error"),
    (AREA, "infinite border distance", _col("value", lambda s: s.scatter(0, float("inf"))), "error"),
    (AREA, "negative border distance", _col("value", lambda s: s.scatter(0, -3.0)), "error"),
    (TWIN, "infinite OSI", _col("OSI", lambda s: s.scatter(0, float("inf"))), "error"),
    (TWIN, "preferred orientation of 400 degrees", _col("pref_ori", lambda s: s.scatter(0, 400.0)), "error"),
    (COREG, "text session", _col("session", lambda s: s.cast(pl.String).scatter(0, "four")), "error"),
    (PROOF, "garbage strategy", _col("strategy_axon", lambda s: s.scatter(0, "axon_mostly_ok")), "error"),
    (PROOF, "status spelled yes/no", _col("status_axon", lambda s: s.replace({"t": "yes", "f": "no"})), "ok"),
    (PROOF, "status spelled maybe", _col("status_axon", lambda s: s.scatter(0, "maybe")), "error"),
    (EXTERNAL, "infinite value", _col("soma_area", lambda s: s.scatter(0, float("inf"))), "error"),
]

CASES = (
    [
        pytest.param(table, mutation, expected(table), id=f"{table}: {name}")
        for table in KEY
        for name, (mutation, expected) in GENERIC.items()
    ]
    + [
        pytest.param(table, mutation, expected, id=f"{table}: {name}")
        for table in WITH_VALID
        for name, (mutation, expected) in VALID.items()
    ]
    + [pytest.param(table, mutation, expected, id=f"{table}: {name}") for table, name, mutation, expected in SPECIFIC]
)


def build_case(base: Path, tmp: Path, table: str, mutation: Mutation) -> tuple[int, str, FeatureStore]:
    snap = tmp / "snap"
    shutil.copytree(base, snap)
    mutation(snap, table)
    config = tmp / "config.toml"
    config.write_text(config_text(snap))
    store = FeatureStore(tmp / "features")
    result = CliRunner().invoke(app, ["build", "--config", str(config), "--store", str(store.root)])
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"a traceback instead of a message: {result.exception!r}\n{result.output}"
    )
    return result.exit_code, result.output, store


def assert_clean_error(code: int, output: str, store: FeatureStore, names: tuple[str, ...]) -> str:
    assert code == 2, output
    line = next((ln for ln in output.splitlines() if ln.startswith("error:")), "")
    assert line, output
    assert any(n in line for n in names), f"the message does not name {names}: {line}"
    leftovers = list(store.root.iterdir()) if store.root.exists() else []
    assert not [p for p in leftovers if p.name != ".gitkeep"], f"left in the store: {leftovers}"
    return line


@pytest.mark.corruption
@pytest.mark.parametrize(("table", "mutation", "expected"), CASES)
def test_a_bad_table(base_snapshot: Path, tmp_path: Path, table: str, mutation: Mutation, expected: str) -> None:
    code, output, store = build_case(base_snapshot, tmp_path, table, mutation)
    if expected == "ok":
        assert code == 0, output
        version = store.list()[0]["version"]
        assert store.verify(version) == []
    else:
        assert_clean_error(code, output, store, (table,))


def _manifest(text: str) -> Mutation:
    def mutate(snap: Path, table: str) -> None:
        (snap / "manifest.json").write_text(text)

    return mutate


MANIFESTS = {
    "not JSON": "{materialization_version: 1300",
    "a list": "[1, 2]",
    "version as text": '{"materialization_version": "v1300"}',
    "resolution of two": '{"position_resolution_nm": [4, 4]}',
    "negative resolution": '{"position_resolution_nm": [4, -4, 40]}',
    "tables as a list": '{"tables": []}',
    "timestamp as a number": '{"timestamp": 5}',
}


@pytest.mark.corruption
@pytest.mark.parametrize("text", list(MANIFESTS.values()), ids=list(MANIFESTS))
def test_a_bad_snapshot_manifest(base_snapshot: Path, tmp_path: Path, text: str) -> None:
    code, output, store = build_case(base_snapshot, tmp_path, NUCLEUS, _manifest(text))
    assert_clean_error(code, output, store, ("manifest.json",))


CONFIG_CASES = {
    "typo in [source]": ("[source]", "[source]\npaht = 'x'", "unknown key 'paht' in [source]"),
    "typo in [identity]": (
        "[features.nucleus]",
        "[identity]\nnucleus_tabel = 'x'\n[features.nucleus]",
        "unknown key 'nucleus_tabel'",
    ),
    "typo in [store]": (
        "[features.nucleus]",
        "[store]\nrooot = 'x'\n[features.nucleus]",
        "unknown key 'rooot' in [store]",
    ),
    "typo in a family": ("depth_method", "depht_method", "did you mean 'depth_method'"),
    "typo in synapses": (
        "partner_label_table",
        "soma_distanse = true\npartner_label_table",
        "unknown key 'soma_distanse'",
    ),
    "typo in an external block": ('key = "nucleus_id"', 'kee = "nucleus_id"', "unknown key 'kee'"),
    "typo in [run]": ("[features.nucleus]", "[run]\nseed = [0]\n[features.nucleus]", "unknown key 'seed' in [run]"),
    "path as a number": ('path = "', 'path = 5\nx = "', "[source] path must be a string"),
    "resolution as text": (
        'kind = "snapshot"',
        'kind = "snapshot"\nposition_resolution_nm = "4,4,40"',
        "position_resolution_nm must be three positive numbers",
    ),
    "resolution of two": (
        'kind = "snapshot"',
        'kind = "snapshot"\nposition_resolution_nm = [4, 40]',
        "position_resolution_nm must be three positive numbers",
    ),
    "negative resolution": (
        'kind = "snapshot"',
        'kind = "snapshot"\nposition_resolution_nm = [4, -4, 40]',
        "position_resolution_nm must be three positive numbers",
    ),
    "a family that is not a table": (
        "[features.proofreading]\ntable",
        "[features.x]\n[features.proofreading]\ntable",
        "unknown feature famil",
    ),
    "range_rows = 0": (
        "partner_label_table",
        "range_rows = 0\npartner_label_table",
        "range_rows must be a positive integer",
    ),
    "negative bucket count": (
        "partner_label_table",
        "buckets = -2\npartner_label_table",
        "buckets must be a positive integer",
    ),
    "engine misspelt": ("partner_label_table", "engine = 'buckets'\npartner_label_table", "engine must be one of"),
    "a boolean as an int": (
        "partner_label_table",
        "soma_distance = 1\npartner_label_table",
        "soma_distance must be true or false",
    ),
}


@pytest.mark.corruption
@pytest.mark.parametrize(("old", "new", "message"), list(CONFIG_CASES.values()), ids=list(CONFIG_CASES))
def test_a_bad_config(base_snapshot: Path, tmp_path: Path, old: str, new: str, message: str) -> None:
    text = config_text(base_snapshot)
    assert old in text
    config = tmp_path / "config.toml"
    config.write_text(text.replace(old, new, 1))
    result = CliRunner().invoke(app, ["build", "--config", str(config), "--store", str(tmp_path / "features")])
    line = assert_clean_error(result.exit_code, result.output, FeatureStore(tmp_path / "features"), (message,))
    assert str(config) in line, "the message names the file"


@pytest.mark.corruption
@pytest.mark.parametrize("_example", ["nucleus position ''"])
def test_an_empty_string_position_found_by_hypothesis(base_snapshot: Path, tmp_path: Path, _example: str) -> None:
    """Found by the random-garbage test below: '' in a CSV position column used to be an engine error."""

    def mutate(snap: Path, name: str) -> None:
        frame = pl.read_parquet(_path(snap, name))
        values = frame["pt_position_x"].cast(pl.String).to_list()
        values[0] = ""
        frame.with_columns(pl.Series("pt_position_x", values)).write_csv(snap / f"{name}.csv")
        _path(snap, name).unlink()

    code, output, store = build_case(base_snapshot, tmp_path, NUCLEUS, mutate)
    assert_clean_error(code, output, store, (NUCLEUS,))


@pytest.mark.corruption
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    table=st.sampled_from(sorted(KEY)),
    column_index=st.integers(0, 20),
    row=st.integers(0, 10),
    garbage=st.one_of(
        st.text(max_size=6), st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2**63), 2**63 - 1)
    ),
)
def test_random_garbage_in_a_cell_is_a_message_or_a_sound_version(
    base_snapshot: Path,
    tmp_path_factory: pytest.TempPathFactory,
    table: str,
    column_index: int,
    row: int,
    garbage: object,
) -> None:
    tmp = tmp_path_factory.mktemp("garbage")

    def mutate(snap: Path, name: str) -> None:
        frame = pl.read_parquet(_path(snap, name))
        column = frame.columns[column_index % frame.width]
        values = frame[column].cast(pl.String).to_list()
        values[row % frame.height] = None if garbage is None else str(garbage)
        frame.with_columns(pl.Series(column, values, dtype=pl.String)).write_csv(snap / f"{name}.csv")
        _path(snap, name).unlink()

    code, output, store = build_case(base_snapshot, tmp, table, mutate)
    if code == 0:
        assert store.verify(store.list()[0]["version"]) == []
    else:
        assert_clean_error(code, output, store, (table, "config", "family"))


def test_the_generator_covers_every_table_with_at_least_a_hundred_cases() -> None:
    assert len(CASES) + len(MANIFESTS) + len(CONFIG_CASES) >= 100
    assert {p.values[0] for p in CASES} == set(KEY)
    assert np.mean([p.values[2] == "error" for p in CASES]) > 0.5
