"""The static-exports source: served over real HTTP (Range, HEAD, 404, 503, dropped bodies), converted, built.

The exports are written by the tests in the published format (sidecar + headerless gzip CSV, shuffled
column order, t/f booleans, empty nulls) from the embedded sample's real tables and from a synthetic
snapshot that is also served by the CAVE test server, so all three roads can be compared.
"""

from __future__ import annotations

import csv
import gzip
import itertools
import json
import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from cellfeatures.cli import app
from cellfeatures.config.model import from_dict, load_config
from cellfeatures.errors import SourceError, TableNotFoundError
from cellfeatures.sources.sample import REAL_SYNAPSE_ROOT, SampleSource
from cellfeatures.sources.snapshot import SnapshotSource
from cellfeatures.sources.static.exports import export_file_names, write_export
from cellfeatures.sources.static.fetch import fetch_static
from cellfeatures.sources.synthetic.cells import SyntheticSpec
from cellfeatures.sources.synthetic.snapshot import write_synthetic_snapshot
from cellfeatures.store.store import FeatureStore
from tests.cave_server.server import CaveTestServer, ServerConfig
from tests.static_server import BUCKET_PREFIX, StaticServer

SAMPLE_TABLES = (
    "nucleus_detection_v0",
    "allen_v1_column_types_slanted_ref",
    "soma_nuc_model_83_1_v117",
    "synapses_pni_2",
    "synapse_target_predictions_ssa",
)
SYN = "synapses_pni_2"
SYN_FILE = export_file_names(SYN)[0]


def write_exports(tables: dict[str, pl.DataFrame], root: Path, seed: int = 0, level: int = 1) -> Path:
    """Exports of `tables` under root/<bucket prefix>/v1300, each with its columns in a shuffled order."""
    folder = root / BUCKET_PREFIX / "v1300"
    for i, (name, frame) in enumerate(tables.items()):
        columns = list(frame.columns)
        random.Random(seed + i).shuffle(columns)
        write_export(frame, folder, name, columns=columns, level=level)
    return root


@pytest.fixture(scope="module")
def sample_exports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample's tables (the real neuron's 18,894 synapses among 1,018,894) as a served exports folder."""
    source = SampleSource()
    tables = {t: source.scan(t).collect() for t in SAMPLE_TABLES}
    return write_exports(tables, tmp_path_factory.mktemp("exports"))


SAMPLE_FEATURES = {
    "nucleus": {"depth_method": "standard_transform"},
    "synapses": {
        "synapse_table": SYN,
        "target_table": "synapse_target_predictions_ssa",
        "partner_label_table": "soma_nuc_model_83_1_v117",
    },
}


def static_cfg(base_url: str, out: Path, **extra: object) -> dict:
    return {"kind": "static", "version": 1300, "base_url": base_url, "out": str(out), "backoff_s": 0.0, **extra}


def _brute_force(export: Path, root: int) -> dict[str, int]:
    """Counts, partners and size sums of one root, straight from the export's text (csv module, no Polars)."""
    header = export.with_name(export.name.replace(".csv.gz", "_header.csv")).read_text().split("\n")
    names = [line.split(",")[0] for line in header if line]
    stats = {"in": [0, set(), 0], "out": [0, set(), 0]}
    with gzip.open(export, "rt") as fh:
        for row in csv.reader(fh):
            r = dict(zip(names, row, strict=True))
            pre, post = int(r["pre_pt_root_id"]), int(r["post_pt_root_id"])
            if r["valid"] != "t" or pre == post or 0 in (pre, post):
                continue
            for d, me, other in (("in", post, pre), ("out", pre, post)):
                if me == root:
                    stats[d][0] += 1
                    stats[d][1].add(other)
                    stats[d][2] += int(r["size"])
    return {
        f"syn_{d}_{k}": (v[0], len(v[1]), v[2])[i]
        for d, v in stats.items()
        for i, k in enumerate(("count", "partners", "size_sum_vx"))
    }


@pytest.fixture(scope="module")
def known_neuron(sample_exports: Path) -> dict[str, int]:
    """The real neuron's counts, partners and size sums, computed by hand from the export's text."""
    return _brute_force(sample_exports / BUCKET_PREFIX / "v1300" / SYN_FILE, REAL_SYNAPSE_ROOT)


def _neuron_row(snapshot: Path, matrix: pl.DataFrame) -> dict:
    nuclei = SnapshotSource(snapshot).scan("nucleus_detection_v0").filter(pl.col("pt_root_id") == REAL_SYNAPSE_ROOT)
    return matrix.filter(pl.col("nucleus_id") == nuclei.collect()["id"][0]).row(0, named=True)


def test_fetch_over_flaky_http_then_build_gives_the_hand_computed_features_of_a_known_neuron(
    sample_exports: Path, tmp_path: Path, known_neuron: dict[str, int]
) -> None:
    with StaticServer(sample_exports, fail_every=4, drop_bodies=2, drop_after=3_000_000, drop_only=SYN_FILE) as server:
        cfg = from_dict(
            {
                "source": static_cfg(server.base_url, tmp_path / "snap"),
                "features": SAMPLE_FEATURES,
                "store": {"root": str(tmp_path / "features")},
            }
        )
        version = FeatureStore(config=cfg).build()
        drops = [r for r in server.data_gets(SYN_FILE) if r.status in (200, 206)]
    assert any(r.status == 206 for r in drops), "a dropped body is resumed with a Range request"
    assert any(r.status == 503 for r in server.log), "503s were injected and retried"
    row = _neuron_row(tmp_path / "snap", version.load())
    expected = known_neuron
    assert {k: row[k] for k in expected} == expected
    assert expected["syn_in_count"] > 1000 and expected["syn_out_count"] > 100  # a real neuron, really counted
    manifest = json.loads((tmp_path / "snap" / "manifest.json").read_text())
    entry = manifest["tables"][SYN]
    served = sample_exports / BUCKET_PREFIX / "v1300" / SYN_FILE
    assert entry["export"]["bytes"] == served.stat().st_size
    from cellfeatures._util.checksums import file_sha256

    assert entry["export"]["sha256"] == file_sha256(served)
    assert not (tmp_path / "snap" / "_download" / SYN_FILE).exists(), "the download is removed once converted"


def test_datasets_of_a_static_version_take_their_labels_from_the_exported_label_table(
    sample_exports: Path, tmp_path: Path
) -> None:
    from cellfeatures.datasets.build import build_dataset
    from cellfeatures.datasets.spec import DatasetSpec

    with StaticServer(sample_exports) as server:
        raw = {
            "source": static_cfg(server.base_url, tmp_path / "snap"),
            "features": SAMPLE_FEATURES,
            "store": {"root": str(tmp_path / "features")},
            "datasets": {"root": str(tmp_path / "datasets")},
            "dataset": {"column_types": {"label": "manual", "level": "raw"}},  # -> the label table is fetched
        }
        store = FeatureStore(config=from_dict(raw))
        version = store.build()
    dataset = build_dataset(
        store,
        DatasetSpec("column_types", level="raw", feature_version=version.id, origins=("real", "derived", "synthetic")),
    )
    labels = dataset.frame().select("nucleus_id", "label_manual_raw")
    table = SnapshotSource(tmp_path / "snap").scan("allen_v1_column_types_slanted_ref").collect()
    expected = dict(zip(table["target_id"], table["cell_type"], strict=True))
    assert labels.height > 1000
    assert all(expected[n] == label for n, label in labels.iter_rows())


@pytest.fixture(scope="module")
def synthetic_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = SyntheticSpec(n_cells=300, n_synapses=30_000, seed=5, chunk_rows=10_000)
    return write_synthetic_snapshot(spec, tmp_path_factory.mktemp("syn") / "snap")


THREE_ROAD_FEATURES = {
    "nucleus": {"area_table": "nucleus_functional_area_assignment", "depth_method": "y_offset"},
    "synapses": {
        "synapse_table": SYN,
        "target_table": "synapse_target_predictions_ssa",
        "partner_label_table": "aibs_metamodel_celltypes_v661",
    },
    "functional": {},
    "proofreading": {},
}


def test_static_exports_snapshot_and_cave_give_the_same_matrix_bit_for_bit(
    synthetic_snapshot: Path, tmp_path: Path, cave_token: str
) -> None:
    snap = SnapshotSource(synthetic_snapshot)
    tables = {t: snap.scan(t).collect() for t in snap.tables()}
    exports = write_exports(tables, tmp_path / "exports", seed=3)

    def build(source: dict, name: str) -> pl.DataFrame:
        cfg = from_dict({"source": source, "features": THREE_ROAD_FEATURES, "store": {"root": str(tmp_path / name)}})
        return FeatureStore(config=cfg).build().load()

    direct = build({"kind": "snapshot", "path": str(synthetic_snapshot)}, "a")
    with StaticServer(exports, fail_every=3, drop_bodies=1, drop_after=20_000, drop_only=SYN_FILE) as server:
        static = build(static_cfg(server.base_url, tmp_path / "static", part_rows=7_000), "b")
    with CaveTestServer(ServerConfig(snapshot=synthetic_snapshot, row_limit=4000)) as cave:
        cave_cfg = {
            "kind": "cave",
            "server": cave.url,
            "version": 1300,
            "out": str(tmp_path / "cave"),
            "backoff_s": 0.0,
        }
        fetched = build(cave_cfg, "c")
    assert direct.height == 300
    assert static.equals(direct), "static exports vs snapshot"
    assert fetched.equals(direct), "CAVE fetch vs snapshot"
    parts = json.loads((tmp_path / "static" / "manifest.json").read_text())["tables"][SYN]["parts"]
    assert len(parts) > 1 and all(a["id_max"] < b["id_min"] for a, b in itertools.pairwise(parts))


def test_an_export_out_of_id_order_is_recut_into_disjoint_sorted_parts(tmp_path: Path) -> None:
    from cellfeatures.sources.static.convert import convert_export
    from cellfeatures.sources.static.exports import parse_sidecar

    n = 50_000
    ids = pl.Series(random.Random(0).sample(range(1, 10 * n), n), dtype=pl.Int64)
    frame = pl.DataFrame({"id": ids, "size": pl.int_range(n, eager=True)})
    data, header = write_export(frame, tmp_path / "exports", SYN)
    (tmp_path / "out").mkdir()
    columns = parse_sidecar(header.read_text(), SYN, str(header))
    result = convert_export(data, columns, SYN, tmp_path / "out", part_rows=9_000, block_bytes=100_000)
    assert result.in_id_order is False
    assert len(result.parts) >= 5
    got = [pl.read_parquet(tmp_path / "out" / p["file"]) for p in result.parts]
    assert all(g["id"].is_sorted() for g in got)
    assert all(a["id"][-1] < b["id"][0] for a, b in itertools.pairwise(got))
    assert pl.concat(got).sort("id").equals(frame.sort("id"))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p["file"] for p in result.parts)


def test_a_duplicated_id_is_refused(tmp_path: Path) -> None:
    from cellfeatures.sources.static.convert import convert_export
    from cellfeatures.sources.static.exports import parse_sidecar

    frame = pl.DataFrame({"id": [5, 1, 3, 1], "size": [1, 2, 3, 4]})
    data, header = write_export(frame, tmp_path / "exports", SYN)
    (tmp_path / "out").mkdir()
    with pytest.raises(SourceError, match=r"column 'id': 1 id\(s\) appear more than once, e.g. \[1\]"):
        convert_export(data, parse_sidecar(header.read_text(), SYN, "h"), SYN, tmp_path / "out")


def test_keep_cells_keeps_exactly_the_synapses_touching_labelled_cells(sample_exports: Path, tmp_path: Path) -> None:
    cfg = static_cfg(
        str(sample_exports / BUCKET_PREFIX),
        tmp_path / "snap",
        keep="cells",
        cells_from="allen_v1_column_types_slanted_ref",
    )
    path, reports, _s = fetch_static(
        cfg, [SYN, "synapse_target_predictions_ssa"], tag_table="synapse_target_predictions_ssa"
    )
    source = SampleSource()
    labelled = source.scan("allen_v1_column_types_slanted_ref").select(pl.col("target_id").alias("id"))
    roots = source.scan("nucleus_detection_v0").join(labelled, on="id").filter(pl.col("pt_root_id") != 0)
    roots_list = roots.collect()["pt_root_id"].implode()
    expected = source.scan(SYN).filter(
        pl.col("pre_pt_root_id").is_in(roots_list) | pl.col("post_pt_root_id").is_in(roots_list)
    )
    kept = SnapshotSource(path).scan(SYN).collect()
    assert sorted(kept["id"]) == sorted(expected.collect()["id"])
    tags = SnapshotSource(path).scan("synapse_target_predictions_ssa").collect()
    assert set(tags["target_id"]) <= set(kept["id"]) and tags.height > 0
    entry = json.loads((path / "manifest.json").read_text())["tables"][SYN]
    assert entry["fetch"] == {"mode": "cells", "cells_from": "allen_v1_column_types_slanted_ref"}
    assert next(r for r in reports if r.table == SYN).rows_read == 1_018_894


def test_with_keep_cells_only_the_fetched_cells_have_synapse_features_and_the_summary_says_why(
    sample_exports: Path, tmp_path: Path
) -> None:
    source = static_cfg(
        str(sample_exports / BUCKET_PREFIX),
        tmp_path / "snap",
        keep="cells",
        cells_from="allen_v1_column_types_slanted_ref",
    )
    cfg = from_dict({"source": source, "features": SAMPLE_FEATURES, "store": {"root": str(tmp_path / "features")}})
    version = FeatureStore(config=cfg).build()
    matrix = version.load()
    labelled = set(SampleSource().scan("allen_v1_column_types_slanted_ref").collect()["target_id"])
    nuclei = SampleSource().scan("nucleus_detection_v0").select("id", "pt_root_id").collect()
    per_root = nuclei.group_by("pt_root_id").len()
    single = set(
        nuclei.join(per_root, on="pt_root_id").filter((pl.col("len") == 1) & (pl.col("pt_root_id") != 0))["id"]
    )
    measured = set(matrix.filter(pl.col("syn_in_count").is_not_null())["nucleus_id"])
    assert measured == labelled & single, "labelled single-soma cells only: no partial counts for the others"
    coverage = version.manifest["synapse_coverage"]
    assert coverage["with_synapse_features"] == len(labelled & single)
    assert coverage["cells_from"] == "allen_v1_column_types_slanted_ref"
    root_0 = set(nuclei.filter(pl.col("pt_root_id") == 0)["id"])
    assert coverage["root_0"] == len(root_0)
    assert coverage["outside_fetched_cells"] == len(single - labelled)
    assert (
        sum(coverage[k] for k in ("with_synapse_features", "root_0", "multi_soma", "outside_fetched_cells"))
        == matrix.height
    )


def test_a_table_the_version_does_not_export_names_the_url_and_lists_what_is_there(
    sample_exports: Path, tmp_path: Path
) -> None:
    with StaticServer(sample_exports) as server, pytest.raises(TableNotFoundError) as err:
        fetch_static(static_cfg(server.base_url, tmp_path / "snap"), ["nucleus_functional_area_assignment"])
    text = str(err.value)
    assert f"{server.base_url}/v1300/nucleus_functional_area_assignment_merged_header.csv" in text
    assert "nucleus_detection_v0" in text and SYN_FILE.removesuffix(".csv.gz") in text


# ---------------------------------------------------------------------------------------------- faults


def _one_table(tmp_path: Path, frame: pl.DataFrame, table: str = "types") -> Path:
    return write_exports({table: frame}, tmp_path / "exports") / BUCKET_PREFIX


TYPES = pl.DataFrame(
    {
        "id": [1, 2, 3, 4],
        "valid": [True, True, False, True],
        "target_id": [10, 20, 30, 40],
        "cell_type": ["23P", None, "BC", "MC, odd"],
        "created": pl.Series(["2020-11-04 06:48:57.134102"] * 4).str.to_datetime(time_zone="UTC"),
    }
)


def _fails_and_leaves_nothing(tmp_path: Path, base: Path, table: str = "types") -> str:
    with pytest.raises(SourceError) as err:
        fetch_static(static_cfg(str(base), tmp_path / "snap"), [table])
    snap = tmp_path / "snap"
    visible = [p.name for p in snap.iterdir() if not p.name.startswith((".", "_"))] if snap.exists() else []
    assert visible == [], f"nothing half-visible, got {visible}"
    assert not list(snap.glob(".building-*")), "the staging folder is removed"
    return str(err.value)


def test_the_round_trip_keeps_nulls_booleans_timestamps_and_quoted_commas(tmp_path: Path) -> None:
    path, _r, _s = fetch_static(static_cfg(str(_one_table(tmp_path, TYPES)), tmp_path / "snap"), ["types"])
    assert pl.read_parquet(path / "types.parquet").select(TYPES.columns).equals(TYPES)


def test_a_truncated_gzip_is_refused_naming_the_file(tmp_path: Path) -> None:
    base = _one_table(tmp_path, pl.concat([TYPES.with_columns(pl.col("id") + 4 * i) for i in range(3000)]))
    data = base / "v1300" / "types_merged.csv.gz"
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    text = _fails_and_leaves_nothing(tmp_path, base)
    assert "truncated gzip" in text and "types_merged.csv.gz" in text


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda lines: lines[:-1], "line 1: 5 fields, but the sidecar declares 4 columns"),
        (lambda lines: [*lines, "extra_column,bigint"], "line 1: 5 fields, but the sidecar declares 6 columns"),
        (lambda lines: [lines[0].replace("bigint", "geometry"), *lines[1:]], "which cellfeatures does not know"),
    ],
    ids=["missing column", "extra column", "unknown type"],
)
def test_a_sidecar_that_does_not_describe_the_file_is_refused(tmp_path: Path, edit, expected: str) -> None:
    base = _one_table(tmp_path, TYPES.select("id", "valid", "target_id", "cell_type", "created"))
    sidecar = base / "v1300" / "types_merged_header.csv"
    sidecar.write_text("\n".join(edit(sidecar.read_text().splitlines())) + "\n")
    assert expected in _fails_and_leaves_nothing(tmp_path, base)


def test_a_bad_value_names_the_table_the_line_and_the_column(tmp_path: Path) -> None:
    frame = pl.DataFrame({"id": list(range(1, 201)), "target_id": list(range(1000, 1200)), "valid": [True] * 200})
    base = (
        write_exports({"types": frame.select("id", "target_id", "valid")}, tmp_path / "exports", seed=99)
        / BUCKET_PREFIX
    )
    data = base / "v1300" / "types_merged.csv.gz"
    lines = gzip.decompress(data.read_bytes()).decode().splitlines()
    order = [line.split(",")[0] for line in (base / "v1300" / "types_merged_header.csv").read_text().splitlines()]
    fields = lines[136].split(",")
    fields[order.index("target_id")] = "12x"
    lines[136] = ",".join(fields)
    data.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    text = _fails_and_leaves_nothing(tmp_path, base)
    assert "table 'types', line 137, column 'target_id': '12x' is not a bigint" in text


def test_a_bad_boolean_names_its_line(tmp_path: Path) -> None:
    base = _one_table(tmp_path, TYPES.select("id", "valid"))
    data = base / "v1300" / "types_merged.csv.gz"
    text = gzip.decompress(data.read_bytes()).decode().replace(",f", ",maybe").replace("f,", "maybe,")
    data.write_bytes(gzip.compress(text.encode()))
    assert "line 3, column 'valid': 'maybe' is not a boolean" in _fails_and_leaves_nothing(tmp_path, base)


def test_not_enough_disk_space_is_refused_before_the_download_starts(
    sample_exports: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _p: usage(10**9, 10**9 - 1000, 1000))
    with StaticServer(sample_exports) as server, pytest.raises(SourceError, match="not enough disk space") as err:
        fetch_static(static_cfg(server.base_url, tmp_path / "snap"), [SYN])
        assert not server.data_gets(SYN_FILE)
    assert "GB free" in str(err.value)


FETCH_SCRIPT = """
import resource, signal, sys
from pathlib import Path
from cellfeatures.errors import CellFeaturesError
from cellfeatures.sources.static.fetch import fetch_static
limit = int(sys.argv[3])
if limit:  # a disk that fills up: writes past `limit` bytes fail with EFBIG, as ENOSPC would
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
cfg = {{"kind": "static", "version": 1300, "base_url": sys.argv[1], "out": sys.argv[2], "backoff_s": 0.0}}
try:
    fetch_static(cfg, ["{table}"])
except CellFeaturesError as exc:
    print("ERROR", exc)
    sys.exit(2)
"""


def _fetch_process(base_url: str, out: Path, limit: int = 0) -> subprocess.Popen:
    script = textwrap.dedent(FETCH_SCRIPT.format(table=SYN))
    return subprocess.Popen(
        [sys.executable, "-c", script, base_url, str(out), str(limit)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def test_a_killed_fetch_resumes_and_requests_only_the_missing_bytes(sample_exports: Path, tmp_path: Path) -> None:
    served = sample_exports / BUCKET_PREFIX / "v1300" / SYN_FILE
    size = served.stat().st_size
    part = tmp_path / "snap" / "_download" / (SYN_FILE + ".part")
    with StaticServer(sample_exports, throttle_bps=8_000_000) as server:
        proc = _fetch_process(server.base_url, tmp_path / "snap")
        deadline = time.time() + 60
        while (not part.exists() or part.stat().st_size < size // 4) and time.time() < deadline:
            time.sleep(0.05)
        proc.kill()
        proc.wait()
        have = part.stat().st_size
        assert 0 < have < size
        server.throttle_bps = 0
        server.log.clear()
        path, reports, _s = fetch_static(static_cfg(server.base_url, tmp_path / "snap"), [SYN])
        gets = server.data_gets(SYN_FILE)
    assert gets[0].range == f"bytes={have}-" and gets[0].status == 206
    assert sum(g.sent for g in gets) == size - have, "only the missing bytes travel"
    assert reports[0].rows == 1_018_894
    assert SnapshotSource(path).scan(SYN).select(pl.len()).collect().item() == 1_018_894


def test_a_full_disk_during_conversion_is_a_clear_error_and_publishes_nothing(
    sample_exports: Path, tmp_path: Path
) -> None:
    local = str(sample_exports / BUCKET_PREFIX)
    proc = _fetch_process(local, tmp_path / "snap", limit=8_000_000)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err.decode()[-2000:]
    assert "the disk is full while writing" in out.decode()
    visible = [p.name for p in (tmp_path / "snap").iterdir() if not p.name.startswith((".", "_"))]
    assert visible == []


# ---------------------------------------------------------------------------------------------- CLI


def test_cli_fetch_then_build_with_the_shipped_static_config(
    sample_exports: Path, tmp_path: Path, known_neuron: dict[str, int]
) -> None:
    shipped = load_config(Path(__file__).parents[3] / "configs" / "minnie65_static.toml")
    assert shipped.source["kind"] == "static" and shipped.source["version"] == 1300
    with StaticServer(sample_exports, fail_every=5, drop_bodies=2, drop_after=2_000_000, drop_only=SYN_FILE) as server:
        config = tmp_path / "configs" / "static.toml"
        config.parent.mkdir()
        config.write_text(
            textwrap.dedent(
                f"""
                [source]
                kind = "static"
                version = 1300
                base_url = "{server.base_url}"
                backoff_s = 0.0

                [features.nucleus]
                depth_method = "standard_transform"

                [features.synapses]
                synapse_table = "{SYN}"
                target_table = "synapse_target_predictions_ssa"
                """
            )
        )
        runner = CliRunner()
        fetched = runner.invoke(app, ["fetch", "--config", str(config)])
        assert fetched.exit_code == 0, fetched.output
        assert "synapses_pni_2: 1,018,894 rows" in fetched.output
        built = runner.invoke(app, ["build", "--config", str(config)])
        assert built.exit_code == 0, built.output
        assert "synapse features: " in built.output and "multi-soma" in built.output
        again = runner.invoke(app, ["fetch", "--config", str(config)])
    assert "already converted" in again.output
    snapshot = tmp_path / "static_exports" / "minnie65_public" / "v1300"
    assert (snapshot / "manifest.json").exists()
    row = _neuron_row(snapshot, FeatureStore(tmp_path / "features").load())
    assert {k: row[k] for k in known_neuron} == known_neuron, "fetch then build: the hand-computed numbers"
