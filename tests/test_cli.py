"""The command line, as a user types it, on the embedded sample."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cellfeatures.cli import app

runner = CliRunner()


def test_run_builds_the_sample_and_summarises(in_tmp: Path) -> None:
    """`cellfeatures run` as typed; the working directory's configs/sample.toml asks for one seed (not three)
    and one dataset so the suite stays fast: the full run is what benchmarks/baselines.py times (a report
    covering several datasets is tested in test_scoring)."""
    from cellfeatures.config.model import packaged_config_path

    text = packaged_config_path("sample").read_text()
    assert "seeds = [0, 1, 2]" in text
    (in_tmp / "configs").mkdir()
    assert 'datasets = ["column_types", "column_classes"]' in text
    quick = text.replace("seeds = [0, 1, 2]", "seeds = [0]")
    quick = quick.replace('datasets = ["column_types", "column_classes"]', 'datasets = ["column_types"]')
    (in_tmp / "configs" / "sample.toml").write_text(quick)
    result = runner.invoke(app, ["run"])
    assert result.exit_code == 0, result.output
    assert "feature version" in result.output and "69,461" in result.output
    assert "real-data features: 14 of" in result.output
    assert "raw spellings agree on 51.0% of 1,327 cells; after harmonisation 80.9% of 1,123" in result.output
    assert "hist_gradient_boosting" in result.output and "table:soma_nuc_model_83_1_v117" in result.output
    report = next((in_tmp / "datasets" / "column_types").glob("*/baselines/*/REPORT.md"))
    html = report.parent / "REPORT.html"
    assert f"report (open in a browser): {html}" in result.output and html.stat().st_size > 100_000
    assert "next: `cellfeatures show" in result.output
    done = next(line for line in result.output.splitlines() if line.startswith("done in"))
    for stage in ("features", "datasets", "fits", "scoring", "report", "html"):
        assert f"{stage} " in done, f"the last line names the {stage} stage: {done}"
    again = runner.invoke(app, ["run"])
    assert "already built (no-op)" in again.output
    as_json = runner.invoke(app, ["run", "--json"])
    assert as_json.exit_code == 0, as_json.output
    outcome = json.loads(as_json.stdout)  # stdout is the JSON alone: the progress went to stderr
    assert outcome["report"] == str(report) and outcome["datasets"][0]["name"] == "column_types"
    assert "features" in outcome["stages"] and "fits" not in outcome["stages"], "a second run fits nothing"
    listed = runner.invoke(app, ["list"])
    assert listed.exit_code == 0 and "sample" in listed.output
    shown = runner.invoke(app, ["show", "latest"])
    assert shown.exit_code == 0 and "somanuc_soma_volume_nm3" in shown.output


def test_build_with_an_override_and_diff(in_tmp: Path) -> None:
    assert runner.invoke(app, ["build"]).exit_code == 0
    out = runner.invoke(app, ["build", "--set", 'features.nucleus.depth_method="y_offset"'])
    assert out.exit_code == 0 and "published" in out.output
    from cellfeatures.store.store import FeatureStore

    a, b = (r["version"] for r in FeatureStore("features").list())
    diff = runner.invoke(app, ["diff", a, b])
    assert "config features.nucleus.depth_method: 'standard_transform' → 'y_offset'" in diff.output
    assert "features with changed values: 1 of" in diff.output


def test_features_catalogue_and_sample_listing(in_tmp: Path) -> None:
    cat = runner.invoke(app, ["features"])
    assert cat.exit_code == 0 and "syn_in_frac_spine" in cat.output and "fraction" in cat.output
    sample = runner.invoke(app, ["sample"])
    assert sample.exit_code == 0 and "synthetic" in sample.output and "real" in sample.output


def test_errors_are_one_clear_line_and_exit_2(in_tmp: Path) -> None:
    (in_tmp / "bad.toml").write_text('[source]\nkind = "sample"\n[features.nucleus]\ndepth_method = "guess"\n')
    out = runner.invoke(app, ["build", "--config", "bad.toml"])
    assert out.exit_code == 2 and "depth_method" in out.output
    missing = runner.invoke(app, ["show", "nope"])
    assert missing.exit_code == 2 and "no versions yet" in missing.output


def test_dataset_export_and_labels_commands(in_tmp: Path) -> None:
    made = runner.invoke(app, ["dataset"])
    assert made.exit_code == 0, made.output
    assert "dataset column_types" in made.output and "1,261 cells" in made.output
    out = runner.invoke(app, ["export", "column_types", "--format", "npz", "--out", "x.npz"])
    assert out.exit_code == 0 and (in_tmp / "x.npz").exists()
    agree = runner.invoke(app, ["labels", "manual", "early_model", "--level", "type"])
    assert agree.exit_code == 0
    assert "raw spellings agree on 51.0% of 1,327 shared cells" in agree.output
    assert "at type level: 80.9% of 1,123" in agree.output


def test_baseline_command_writes_a_leaderboard_and_report(sample_features_in_tmp: Path) -> None:
    in_tmp = sample_features_in_tmp
    assert runner.invoke(app, ["dataset", "column_classes"]).exit_code == 0
    out = runner.invoke(app, ["baseline", "column_classes", "--seeds", "0", "--models", "majority,logistic_regression"])
    assert out.exit_code == 0, out.output
    assert "leaderboard" in out.output and "table:soma_nuc_model_83_1_v117" in out.output
    report = next((in_tmp / "datasets" / "column_classes").glob("*/baselines/*/REPORT.md"))
    text = report.read_text()
    assert "Elabbady et al. 2025" in text and "How the settings differ" in text
    assert list((report.parent / "figures").glob("*.png")) and (report.parent / "leaderboard.csv").exists()
    assert list((report.parent / "models").glob("*.joblib"))
    # predict without --model fits the report's best model and says how many cells extrapolate
    predicted = runner.invoke(app, ["predict", "column_classes"])
    assert predicted.exit_code == 0, predicted.output
    assert "model: logistic_regression (the report's best model" in predicted.output
    assert "outside the labelled region" in predicted.output and "shifted in feature space" in predicted.output


def test_version_and_every_help_has_an_example() -> None:
    import re

    out = runner.invoke(app, ["--version"])
    assert out.exit_code == 0 and re.match(r"cellfeatures \d+\.\d+\.\d+", out.output)
    names = [c.name or c.callback.__name__ for c in app.registered_commands]  # type: ignore[union-attr]
    assert {"run", "report", "doctor", "list", "baseline"} <= set(names)
    for name in names:
        shown = runner.invoke(app, [name, "--help"])
        assert shown.exit_code == 0, name
        assert "Examples:" in shown.output and f"cellfeatures {name}" in shown.output, name
    assert "[store] root" in runner.invoke(app, ["build", "--help"]).output, "no markup may eat [store]"


def test_json_output_is_plain_json_on_stdout(sample_features_in_tmp: Path) -> None:
    """--json on list, show, diff, features, sample, labels and baseline: parseable, progress on stderr."""
    import json

    in_tmp = sample_features_in_tmp
    assert "already built" in runner.invoke(app, ["build"]).output
    listed = json.loads(runner.invoke(app, ["list", "--json"]).stdout)
    version = listed["versions"][-1]["version"]
    assert listed["versions"][-1]["latest"] is True and listed["store"] == str(in_tmp / "features")
    shown = json.loads(runner.invoke(app, ["show", version, "--json"]).stdout)
    assert shown["version"] == version and "soma_depth_um" in shown["features"]
    diffed = json.loads(runner.invoke(app, ["diff", version, "latest", "--json"]).stdout)
    assert diffed["cells_added"] == 0 and diffed["a"] == diffed["b"] == version
    features = json.loads(runner.invoke(app, ["features", "--json"]).stdout)
    assert any(f["feature"] == "syn_in_frac_spine" for f in features)
    sample = json.loads(runner.invoke(app, ["sample", "--json"]).stdout)
    assert {t["origin"] for t in sample["tables"]} >= {"real", "synthetic"}
    agree = json.loads(runner.invoke(app, ["labels", "manual", "early_model", "--json"]).stdout)
    assert agree["raw"]["shared"] == 1327 and round(agree["harmonised"]["agreement"], 3) == 0.809
    assert runner.invoke(app, ["dataset", "column_classes"]).exit_code == 0
    out = runner.invoke(app, ["baseline", "column_classes", "--seeds", "0", "--models", "majority", "--json"])
    assert out.exit_code == 0, out.output
    board = json.loads(out.stdout)
    assert Path(board["html"]).exists() and {r["entry"] for r in board["leaderboard"]} >= {"majority"}


def test_dataset_uses_the_configs_own_version_not_the_last_built(sample_features_in_tmp: Path) -> None:
    """`latest` is the last build; an experiment built after the config's version must not be picked up."""
    from cellfeatures.store.store import FeatureStore

    in_tmp = sample_features_in_tmp
    assert runner.invoke(app, ["build", "--set", 'features.nucleus.depth_method="y_offset"']).exit_code == 0
    own, experiment = (r["version"] for r in FeatureStore(in_tmp / "features").list())
    made = runner.invoke(app, ["dataset", "column_classes"])
    assert made.exit_code == 0, made.output
    from cellfeatures.datasets.dataset import find_dataset

    assert find_dataset("column_classes", in_tmp / "datasets").card["feature_version"] == own != experiment
    typo = runner.invoke(app, ["dataset", "column_clases"])
    assert typo.exit_code == 2 and "did you mean 'column_classes'" in typo.output
