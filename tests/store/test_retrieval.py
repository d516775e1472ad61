"""Features for *my* cells: one row per input row, in order, with a `match` column that says why."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from cellfeatures.cli import app
from cellfeatures.config.model import load_config
from cellfeatures.errors import ConfigError, StoreError
from cellfeatures.store.store import FeatureStore

STALE_ROOT = 864691135999999999  # shaped like a minnie65 root, carried by no nucleus of the version


@pytest.fixture(scope="module")
def store(sample_project: Path) -> FeatureStore:
    return FeatureStore(config=load_config(sample_project / "configs" / "sample.toml"))


@pytest.fixture(scope="module")
def picks(store: FeatureStore) -> dict[str, list[int]]:
    """Real ids of the sample version, one kind each."""
    m = store.load(columns=["root_id"]).with_columns(pl.len().over("root_id").alias("n"))
    single = m.filter((pl.col("n") == 1) & (pl.col("root_id") != 0)).sort("nucleus_id")
    multi = m.filter((pl.col("n") > 1) & (pl.col("root_id") != 0)).sort("nucleus_id")
    return {
        "nuclei": single["nucleus_id"].head(2).to_list(),
        "roots": single["root_id"].slice(10, 2).to_list(),
        "root_nuclei": single["nucleus_id"].slice(10, 2).to_list(),
        "multi_root": [multi["root_id"][0]],
    }


def mixed(picks: dict[str, list[int]]) -> pl.DataFrame:
    """Nucleus ids and root ids in one frame (a row uses its nucleus id when it has one)."""
    n, r = picks["nuclei"], picks["roots"]
    return pl.DataFrame(
        {
            "nucleus_id": [n[0], None, None, None, None, 12, n[1], None],
            "root_id": [None, r[0], STALE_ROOT, picks["multi_root"][0], 0, None, None, r[1]],
            "note": ["a", "b", "c", "d", "e", "f", "g", "h"],
        },
        schema={"nucleus_id": pl.Int64, "root_id": pl.Int64, "note": pl.String},
    )


def test_every_input_row_gets_one_row_in_order_with_the_right_match(store, picks) -> None:
    result = store.get_features(mixed(picks), features=["syn_*", "nucleus"])
    assert result["note"].to_list() == list("abcdefgh"), "input order, every row, input columns kept"
    assert result["match"].to_list() == [
        "ok",
        "ok",
        "root_not_in_version",
        "root_multi_soma",
        "no_nucleus",
        "unknown_id",
        "ok",
        "ok",
    ]
    ok = result.filter(pl.col("match") == "ok")
    expected_ids = [picks["nuclei"][0], picks["root_nuclei"][0], picks["nuclei"][1], picks["root_nuclei"][1]]
    assert ok["nucleus_id"].to_list() == expected_ids
    names = [c for c in result.columns if c not in ("nucleus_id", "root_id", "note", "match")]
    assert names and all(n.startswith("syn_") or n in store.manifest("latest")["features"] for n in names)
    truth = store.load().filter(pl.col("nucleus_id").is_in(expected_ids)).select("nucleus_id", *names)
    got = ok.select("nucleus_id", *names)
    assert got.sort("nucleus_id").equals(truth.sort("nucleus_id")), "the same values as store.load()"
    withheld = result.filter(pl.col("match") != "ok").select(names)
    assert withheld.null_count().sum_horizontal().item() == withheld.height * len(names), "nothing for the others"


def test_csv_parquet_and_cave_style_inputs_give_the_same_result(store, picks, tmp_path: Path) -> None:
    frame = pl.DataFrame({"nucleus_id": picks["nuclei"] + [12]})
    a = store.get_features(frame, features="syn_in_count")
    frame.write_csv(tmp_path / "cells.csv")
    frame.write_parquet(tmp_path / "cells.parquet")
    b = store.get_features(tmp_path / "cells.csv", features="syn_in_count")
    c = store.get_features(tmp_path / "cells.parquet", features="syn_in_count")
    cave = frame.rename({"nucleus_id": "target_id"}).with_columns(pl.lit("23P").alias("cell_type"))
    d = store.get_features(cave.to_pandas(), features="syn_in_count")
    assert a.equals(b) and a.equals(c)
    assert d.select("nucleus_id", "match", "syn_in_count").equals(a.select("nucleus_id", "match", "syn_in_count"))
    roots = pl.DataFrame({"pt_root_id": picks["roots"]})
    e = store.get_features(roots, features="syn_in_count")
    assert e["nucleus_id"].to_list() == picks["root_nuclei"] and e["match"].to_list() == ["ok", "ok"]


def test_a_materialization_the_store_lacks_is_an_error_listing_what_it_has(store, picks) -> None:
    roots = pl.DataFrame({"root_id": picks["roots"], "materialization_version": [943, 943]})
    with pytest.raises(StoreError, match=r"materialization 943 .* it has: .*materialization None"):
        store.get_features(roots)


def test_a_pattern_that_matches_nothing_is_an_error(store, picks) -> None:
    with pytest.raises(ConfigError, match="matches nothing"):
        store.get_features(pl.DataFrame({"nucleus_id": picks["nuclei"]}), features="syn_inn_*")


def test_float_root_ids_are_refused(store, picks) -> None:
    from cellfeatures.errors import SchemaError

    with pytest.raises(SchemaError, match="went through float64"):
        store.get_features(pl.DataFrame({"root_id": [float(r) for r in picks["roots"]]}))


def test_cli_lookup_counts_each_status_and_writes_the_result(sample_project: Path, picks, tmp_path: Path) -> None:
    mixed(picks).write_csv(tmp_path / "mine.csv")
    out = tmp_path / "mine_features.parquet"
    config = str(sample_project / "configs" / "sample.toml")
    result = CliRunner().invoke(app, ["lookup", str(tmp_path / "mine.csv"), "--config", config, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "8 rows: ok 4, root_not_in_version 1, root_multi_soma 1, no_nucleus 1, unknown_id 1" in result.output
    assert pl.read_parquet(out).height == 8
