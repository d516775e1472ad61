"""The synapse family equals a brute-force pure-Python recomputation, edge cases included."""

from __future__ import annotations

import math
import statistics
import threading
import time
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cellfeatures.errors import StoreError
from cellfeatures.pipelines import synapse_ranges, synapses
from tests.conftest import cell_type_frame, context, nucleus_frame

RES = (4.0, 4.0, 40.0)
# nucleus_id, root, x, y, z (voxels). 4 and 5 share root 104 (merge); 6 has no root; 3 makes no synapses.
NUCLEI = [
    (1, 101, 1000, 2000, 100),
    (2, 102, 1500, 2100, 110),
    (3, 103, 900, 1000, 90),
    (4, 104, 3000, 3000, 200),
    (5, 104, 3100, 3000, 200),
    (6, 0, 50, 50, 5),
]
LABELS = [(1, "23P"), (2, "BC"), (4, "4P"), (5, "MC"), (3, "Unsure")]  # root 104: E and I -> no class
CFG = {
    "synapse_table": "synapses_pni_2",
    "target_table": "synapse_target_predictions_ssa",
    "partner_label_table": "labels",
    "soma_distance": True,
}


def synapse_frame(rows: list[tuple[int, int, int, int | None, float, float, float]]) -> pl.DataFrame:
    """(id, pre_root, post_root, size, ctr x, y, z voxels)."""
    return pl.DataFrame(
        {
            "id": [r[0] for r in rows],
            "valid": [True] * len(rows),
            "pre_pt_root_id": [r[1] for r in rows],
            "post_pt_root_id": [r[2] for r in rows],
            "size": [r[3] for r in rows],
            "ctr_pt_position_x": [float(r[4]) for r in rows],
            "ctr_pt_position_y": [float(r[5]) for r in rows],
            "ctr_pt_position_z": [float(r[6]) for r in rows],
        },
        schema_overrides={"id": pl.Int64, "pre_pt_root_id": pl.Int64, "post_pt_root_id": pl.Int64, "size": pl.Int64},
    )


def tag_frame(tags: dict[int, str]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": list(range(1, len(tags) + 1)),
            "valid": [True] * len(tags),
            "target_id": list(tags),
            "tag": list(tags.values()),
        },
        schema_overrides={"target_id": pl.Int64},
    )


def brute_force(syn_rows: list[tuple], tags: dict[int, str]) -> dict[int, dict[str, Any]]:
    """Every synapse feature by plain loops, straight from the definitions in the module docstring."""
    roots = {}
    for nid, root, *_ in NUCLEI:
        roots.setdefault(root, []).append(nid)
    attributable = {nid: (root, x, y, z) for nid, root, x, y, z in NUCLEI if root != 0 and len(roots[root]) == 1}
    klass = {"23P": "excitatory", "BC": "inhibitory", "4P": "excitatory", "MC": "inhibitory"}
    root_classes: dict[int, set[str]] = {}
    for nid, label in LABELS:
        root = next(r for n, r, *_ in NUCLEI if n == nid)
        if root != 0 and label in klass:
            root_classes.setdefault(root, set()).add(klass[label])
    partner_class = {r: next(iter(c)) for r, c in root_classes.items() if len(c) == 1}
    nucleus_roots = {r for r in roots if r != 0}
    kept = [s for s in syn_rows if s[1] != s[2] and s[1] != 0 and s[2] != 0]
    out: dict[int, dict[str, Any]] = {}
    for nid, (root, cx, cy, cz) in attributable.items():
        feats: dict[str, Any] = {}
        for d, own, other in (("in", 2, 1), ("out", 1, 2)):
            mine = [s for s in kept if s[own] == root]
            p = f"syn_{d}_"
            sizes = [s[3] for s in mine if s[3] is not None]
            partners = {s[other] for s in mine}
            tagged = [tags[s[0]] for s in mine if s[0] in tags]
            labelled = [partner_class[s[other]] for s in mine if s[other] in partner_class]
            # per-synapse distances are rounded to 1e-6 um by definition (see synapse_kernels)
            dists = [
                round(
                    math.dist((s[4] * RES[0], s[5] * RES[1], s[6] * RES[2]), (cx * RES[0], cy * RES[1], cz * RES[2]))
                    / 1000,
                    6,
                )
                for s in mine
            ]
            n = len(mine)
            feats.update(
                {
                    f"{p}count": n,
                    f"{p}size_mean_vx": statistics.fmean(sizes) if sizes else None,
                    f"{p}size_median_vx": float(statistics.median(sizes)) if sizes else None,
                    f"{p}size_sum_vx": sum(sizes),
                    f"{p}partners": len(partners),
                    f"{p}per_partner": n / len(partners) if partners else None,
                    f"{p}frac_partners_with_nucleus": (len(partners & nucleus_roots) / len(partners))
                    if partners
                    else None,
                    f"{p}frac_tagged": len(tagged) / n if n else None,
                    **{
                        f"{p}frac_{t}": (tagged.count(t) / len(tagged) if tagged else None)
                        for t in ("spine", "shaft", "soma")
                    },
                    f"{p}frac_partner_labelled": len(labelled) / n if n else None,
                    f"{p}frac_exc": labelled.count("excitatory") / len(labelled) if labelled else None,
                    f"{p}frac_inh": labelled.count("inhibitory") / len(labelled) if labelled else None,
                    f"{p}soma_dist_mean_um": statistics.fmean(dists) if dists else None,
                    f"{p}soma_dist_p90_um": float(np.percentile(dists, 90)) if dists else None,
                }
            )
        out[nid] = feats
    return out


ENGINES = {"lazy": {"engine": "lazy"}, "bucketed": {"engine": "bucketed", "range_rows": 4, "buckets": 3}}


def source_with(snapshot, syn_rows: list[tuple], tags: pl.DataFrame):
    """A snapshot of the hand-built nuclei and labels with these synapses and target predictions."""
    return snapshot(
        {
            "nucleus_detection_v0": nucleus_frame(NUCLEI),
            "labels": cell_type_frame(LABELS),
            "synapses_pni_2": synapse_frame(syn_rows),
            "synapse_target_predictions_ssa": tags,
        }
    )


def pipeline(
    snapshot, syn_rows: list[tuple], tags: dict[int, str], cfg: dict | None = None, engine: str = "lazy"
) -> pl.DataFrame:
    cfg = {**(cfg or CFG), **ENGINES[engine]}
    source = source_with(snapshot, syn_rows, tag_frame(tags))
    return synapses.build(context(source), cfg).collect()


def assert_matches(result: pl.DataFrame, expected: dict[int, dict[str, Any]]) -> None:
    assert sorted(result["nucleus_id"].to_list()) == sorted(expected)
    for row in result.iter_rows(named=True):
        want = expected[row["nucleus_id"]]
        for name, value in want.items():
            got = row[name]
            if value is None:
                assert got is None, (row["nucleus_id"], name, got)
            else:
                assert got == pytest.approx(value, rel=1e-12, abs=1e-12), (row["nucleus_id"], name, got, value)


HAND_BUILT = [
    # id, pre, post, size, ctr voxels
    (10, 900, 101, 100, 1000, 2000, 100),  # orphan -> 1, at the soma
    (11, 900, 101, 300, 1010, 2000, 100),  # same orphan again: partners repeat
    (12, 102, 101, 300, 1000, 2100, 100),  # I cell -> 1 (tie in size with 11)
    (13, 101, 101, 999, 1000, 2000, 100),  # autapse: excluded
    (14, 0, 101, 500, 1000, 2000, 100),  # root 0 partner: excluded
    (15, 101, 102, 200, 1400, 2100, 110),  # 1 -> 2
    (16, 101, 104, 50, 3000, 3000, 200),  # 1 -> merged root 104 (partner has a nucleus, no class)
    (17, 101, 901, None, 1000, 2050, 101),  # 1 -> orphan, size unknown
    (18, 104, 102, 70, 1500, 2100, 111),  # merged root -> 2 (2's input partner has no class)
    (19, 104, 104, 10, 3000, 3000, 200),  # autapse of the merged root
    (20, 902, 903, 10, 1, 1, 1),  # between two fragments: nobody's feature
]
HAND_TAGS = {10: "spine", 11: "spine", 12: "shaft", 15: "soma", 16: "spine", 13: "soma", 99: "shaft"}


@pytest.mark.parametrize("engine", ENGINES)
def test_hand_built_table_matches_brute_force(snapshot, engine: str) -> None:
    assert_matches(pipeline(snapshot, HAND_BUILT, HAND_TAGS, engine=engine), brute_force(HAND_BUILT, HAND_TAGS))


@pytest.mark.parametrize("engine", ENGINES)
def test_edge_cases_by_name(snapshot, engine: str) -> None:
    result = {
        r["nucleus_id"]: r for r in pipeline(snapshot, HAND_BUILT, HAND_TAGS, engine=engine).iter_rows(named=True)
    }
    assert set(result) == {1, 2, 3}, "merged (4, 5) and rootless (6) nuclei get no synapse features"
    assert result[1]["syn_in_count"] == 3, "autapse 13 and root-0 synapse 14 are excluded"
    assert result[1]["syn_in_partners"] == 2 and result[1]["syn_in_per_partner"] == 1.5
    assert result[1]["syn_in_frac_spine"] == pytest.approx(2 / 3)
    assert result[1]["syn_out_frac_tagged"] == pytest.approx(2 / 3), "synapse 17 is untagged"
    assert result[1]["syn_out_size_sum_vx"] == 250, "a null size is ignored, not counted as 0"
    assert result[1]["syn_out_frac_partners_with_nucleus"] == pytest.approx(2 / 3)
    assert result[1]["syn_in_frac_inh"] == 1.0 and result[1]["syn_in_frac_partner_labelled"] == pytest.approx(1 / 3)
    assert result[2]["syn_in_frac_exc"] == 1.0, "root 104's nuclei disagree on class, so it counts as unlabelled"
    assert result[3]["syn_in_count"] == 0 and result[3]["syn_in_size_mean_vx"] is None, (
        "a cell without synapses has measured zero counts and undefined means"
    )


def test_without_tags_labels_or_positions_the_features_are_not_produced(snapshot) -> None:
    cfg = {"synapse_table": "synapses_pni_2", "soma_distance": False}
    result = pipeline(snapshot, HAND_BUILT, HAND_TAGS, cfg)
    assert not [c for c in result.columns if "frac_spine" in c or "frac_exc" in c or "soma_dist" in c]
    assert result.columns == ["nucleus_id", *[s.name for s in synapses.features(cfg)]]


syn_strategy = st.lists(
    st.tuples(
        st.sampled_from([101, 102, 103, 104, 0, 900, 901, 902]),
        st.sampled_from([101, 102, 103, 104, 0, 900, 901, 902]),
        st.one_of(st.none(), st.integers(0, 50)),
        st.integers(0, 4000),
        st.integers(0, 4000),
        st.integers(0, 300),
    ),
    min_size=0,
    max_size=40,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=syn_strategy, tag_seed=st.integers(0, 2**16))
def test_random_tables_match_brute_force(snapshot, rows, tag_seed) -> None:
    syn_rows = [(i + 1, *r) for i, r in enumerate(rows)]
    rng = np.random.default_rng(tag_seed)
    tags = {s[0]: str(rng.choice(["spine", "shaft", "soma"])) for s in syn_rows if rng.random() < 0.7}
    expected = brute_force(syn_rows, tags)
    lazy = pipeline(snapshot, syn_rows, tags, engine="lazy")
    assert_matches(lazy, expected)
    bucketed = pipeline(snapshot, syn_rows, tags, engine="bucketed")
    assert bucketed.sort("nucleus_id").equals(lazy.sort("nucleus_id")), "the two strategies agree bit for bit"


def test_a_size_beyond_int32_in_one_range_is_kept_exactly(snapshot) -> None:
    rows = [*HAND_BUILT, (21, 900, 101, 3_000_000_000, 1000, 2000, 100)]  # alone in the last id range
    lazy = pipeline(snapshot, rows, HAND_TAGS, engine="lazy")
    assert lazy.filter(pl.col("nucleus_id") == 1)["syn_in_size_sum_vx"].item() == 700 + 3_000_000_000
    assert pipeline(snapshot, rows, HAND_TAGS, engine="bucketed").sort("nucleus_id").equals(lazy.sort("nucleus_id"))


def test_a_sparse_id_range_takes_tags_by_join_with_the_same_result(snapshot, monkeypatch) -> None:
    lazy = pipeline(snapshot, HAND_BUILT, HAND_TAGS, engine="lazy")
    monkeypatch.setattr(synapse_ranges, "DENSE_TAG_SPAN", 1)  # every range too wide for a dense array
    assert (
        pipeline(snapshot, HAND_BUILT, HAND_TAGS, engine="bucketed").sort("nucleus_id").equals(lazy.sort("nucleus_id"))
    )


@pytest.mark.parametrize("dense_span", [2**28, 1])
def test_duplicate_predictions_are_refused_by_the_bucketed_strategy_too(snapshot, monkeypatch, dense_span) -> None:
    from cellfeatures.errors import SchemaError

    monkeypatch.setattr(synapse_ranges, "DENSE_TAG_SPAN", dense_span)
    tags = tag_frame({10: "spine", 11: "shaft"})
    tags = pl.concat([tags, tags.head(1).with_columns(pl.lit(3, dtype=pl.Int64).alias("id"))])
    source = source_with(snapshot, HAND_BUILT, tags)
    cfg = {**CFG, **ENGINES["bucketed"], "validate_max_rows": 0}  # too big to validate: the merge must notice
    with pytest.raises(SchemaError, match=r"synapse_target_predictions_ssa(.|\n)*target_id(.|\n)*\[10\]"):
        synapses.build(context(source), cfg).collect()


@pytest.mark.parametrize("engine", ENGINES)
def test_an_unknown_tag_spelling_is_refused_with_its_rows(snapshot, engine: str) -> None:
    from cellfeatures.errors import SchemaError

    tags = tag_frame({10: "spine", 11: "Spine", 12: "shaft"})
    cfg = {**CFG, **ENGINES[engine], "validate_max_rows": 0}  # too big to validate: the pipeline must notice
    with pytest.raises(SchemaError, match=r"synapse_target_predictions_ssa(.|\n)*'tag'(.|\n)*target_id e.g. \[11\]"):
        synapses.build(context(source_with(snapshot, HAND_BUILT, tags)), cfg).collect()


@pytest.mark.parametrize("engine", ENGINES)
def test_a_prediction_row_without_a_tag_counts_as_untagged(snapshot, engine: str) -> None:
    tags = tag_frame({10: "spine", 11: "spine", 12: "shaft"}).with_columns(
        pl.when(pl.col("target_id") == 11).then(None).otherwise(pl.col("tag")).alias("tag")
    )
    cfg = {**CFG, **ENGINES[engine], "validate_max_rows": 0}
    result = synapses.build(context(source_with(snapshot, HAND_BUILT, tags)), cfg).collect()
    cell = result.filter(pl.col("nucleus_id") == 1)
    assert cell["syn_in_frac_tagged"].item() == pytest.approx(2 / 3) and cell["syn_in_frac_spine"].item() == 0.5


def test_duplicate_predictions_are_refused_by_the_one_frame_plan_without_validation(snapshot) -> None:
    """A table above validate_max_rows is not validated, and `engine = "lazy"` may be forced on it."""
    from cellfeatures.errors import SchemaError

    tags = tag_frame({10: "spine", 11: "shaft"})
    tags = pl.concat([tags, tags.head(1).with_columns(pl.lit(3, dtype=pl.Int64).alias("id"))])
    source = source_with(snapshot, HAND_BUILT, tags)
    cfg = {**CFG, **ENGINES["lazy"], "validate_max_rows": 0}
    with pytest.raises(SchemaError, match=r"synapse_target_predictions_ssa(.|\n)*target_id(.|\n)*\[10\]"):
        synapses.build(context(source), cfg).collect()


def test_duplicate_target_predictions_are_refused(snapshot) -> None:
    from cellfeatures.errors import SchemaError

    tags = tag_frame({10: "spine"})
    tags = pl.concat([tags, tags.with_columns(pl.lit(2, dtype=pl.Int64).alias("id"), pl.lit("shaft").alias("tag"))])
    source = source_with(snapshot, HAND_BUILT, tags)
    with pytest.raises(SchemaError, match=r"synapse_target_predictions_ssa(.|\n)*target_id(.|\n)*uniqueness"):
        synapses.build(context(source), CFG).collect()


@pytest.mark.parametrize("failing", ["read", "aggregate"])
def test_a_failing_phase_2_batch_stops_the_build_with_its_error_and_nothing_hangs(
    snapshot, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    """Readers run ahead of the aggregators, each waiting for free buffers: a batch that fails must not
    leave a reader waiting for buffers that no aggregation will give back (the build would hang)."""
    from cellfeatures.pipelines import record_runs

    monkeypatch.setattr(synapse_ranges, "READERS", 2)
    monkeypatch.setattr(synapse_ranges, "AGGREGATORS", 1)
    monkeypatch.setattr(synapse_ranges, "BATCH_BUFFERS", 2)  # readers blocked on buffers when batch 0 fails
    module, name = (record_runs, "read_batch") if failing == "read" else (synapse_ranges, "aggregate_batch")
    real = getattr(module, name)

    def fails_on_batch_0(*args: Any) -> Any:
        if (args[1] if failing == "read" else args[3]) == 0:  # read_batch(readers, k, ..), aggregate_batch(.., k, ..)
            time.sleep(0.2)  # the readers fill every buffer meanwhile and wait for more
            raise StoreError(f"batch 0 could not be {failing}")
        return real(*args)

    monkeypatch.setattr(module, name, fails_on_batch_0)
    outcome: list[BaseException | None] = []

    def build() -> None:
        try:
            pipeline(snapshot, HAND_BUILT, HAND_TAGS, engine="bucketed")
            outcome.append(None)
        except BaseException as exc:  # handed to the test's thread
            outcome.append(exc)

    worker = threading.Thread(target=build, daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "phase 2 hung after a failed batch"
    assert isinstance(outcome[0], StoreError) and f"batch 0 could not be {failing}" in str(outcome[0])
