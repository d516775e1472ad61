"""Every cell-type spelling in the real extracts maps; unknown spellings are reported, not guessed."""

from __future__ import annotations

import polars as pl
import pytest

from cellfeatures.vocab import EXC, INH, VOCABULARY, harmonise_expr, unmapped_values
from tests.conftest import REAL_DATA


def test_the_embedded_sample_vocabularies_map_completely(sample_source) -> None:
    for table in (
        "allen_v1_column_types_slanted_ref",
        "allen_column_mtypes_v2",
        "soma_nuc_model_83_1_v117",
        "aibs_soma_nuc_metamodel_preds_v117",
    ):
        values = sample_source.scan(table).select("cell_type").collect()["cell_type"]
        assert unmapped_values(values) == [], table


@pytest.mark.skipif(not REAL_DATA.exists(), reason="needs ../shared/data/real")
def test_every_vocabulary_in_the_real_extracts_maps_completely() -> None:
    columns = {
        "neurd/public_cave_ground_truth_cell_types_with_nucleus.csv": "cell_type",
        "cortical_layers/minnie_soma_nuc_features_v117era.parquet": "cell_type_pred",
        "perisomatic/column_radial_truncation_v795.feather": "cell_type",
        "nriedman_microns/cells_no_repeats.csv": "cell_type",
        "pedigo_testbed/postsyn_predictions_for_2025-02-28.csv.gz": None,
    }
    for path, column in columns.items():
        if column is None:
            continue
        file = REAL_DATA / path
        frame = (
            pl.read_parquet(file)
            if file.suffix == ".parquet"
            else pl.read_ipc(file)
            if file.suffix == ".feather"
            else pl.read_csv(file)
        )
        assert unmapped_values(frame[column]) == [], path


def test_era_spellings_harmonise_to_one_type() -> None:
    raw = pl.DataFrame({"t": ["5P-PT", "5P-ET", "5P_PT", "L5ET", "6P-IT", "6IT", "Unsure E", "BC", "DTC"]})
    out = raw.select(*(harmonise_expr(pl.col("t"), lvl).alias(lvl) for lvl in ("class", "subclass", "type")))
    assert out["type"].to_list()[:4] == ["5P-ET"] * 4 and out["type"].to_list()[4:6] == ["6P-IT"] * 2
    assert out.row(6) == (EXC, None, None), "'Unsure E' says excitatory and nothing more"
    assert out.row(8) == (INH, "DTC", None), "an m-type without a type-level equivalent stays at subclass"


def test_unknown_spellings_are_reported_and_map_to_null() -> None:
    values = pl.Series(["23P", "pyramidal?", None, "23P"])
    assert unmapped_values(values) == ["pyramidal?"]
    assert pl.DataFrame({"t": values}).select(harmonise_expr(pl.col("t"), "class"))["t"].to_list() == [
        EXC,
        None,
        None,
        EXC,
    ]
    assert all(h.cell_class in (EXC, INH, "nonneuronal", None) for h in VOCABULARY.values())
