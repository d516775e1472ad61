"""Every CLI error path: exit code 2 and a first line that says what is wrong, with nothing eaten.

Messages are printed without rich markup, so square brackets in names and values survive (`[source]`,
`[x y z]`, a stray `[/`) and cannot crash the printer.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cellfeatures.cli import app

runner = CliRunner()


def first_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert lines, f"no error line in:\n{output}"
    return lines[0]


def invoke_error(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    return first_error_line(result.output)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_square_brackets_in_a_message_survive(in_tmp: Path) -> None:
    cfg = write(in_tmp / "c.toml", '[source]\nkind = "[x y z] [/ [features.synapses]"\n[features.nucleus]\n')
    line = invoke_error(["build", "--config", str(cfg)])
    assert "[source] kind must be one of" in line
    assert "'[x y z] [/ [features.synapses]'" in line


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["build", "--config", "missing.toml"], "error: config file missing.toml does not exist"),
        (["show", "nope"], "error: the store {root}/features (found by [store] root of"),
        (["diff", "a", "b"], "error: the store {root}/features (found by [store] root of"),
        (["baseline", "nothing"], "error: no dataset 'nothing' under {root}/datasets"),
        (["export", "nothing"], "error: no dataset 'nothing' under {root}/datasets"),
        (["labels", "manual", "nosuch"], "error: unknown label source 'nosuch'"),
        (["dataset", "brand_new"], "error: no [dataset.brand_new] in"),
        (["score", "missing.parquet", "--dataset", "nothing"], "error: no dataset 'nothing' under {root}/datasets"),
        (["predict", "nothing"], "error: no dataset 'nothing' under {root}/datasets"),
        (["verify", "abc"], "error: the store {root}/features (found by [store] root of"),
        (["baseline", "x", "--model", "no_colon"], "error: no dataset 'x' under {root}/datasets"),
        (["baseline", "x", "--seeds", "a,b"], "error: no dataset 'x' under {root}/datasets"),
        (["build", "--set", "features.nucleus.depth_method"], "error: --set needs KEY=VALUE"),
        (["build", "--set", "features.nucleus.depth_method=y_offset"], "error: --set features.nucleus.depth_method"),
        (["build", "--set", "features.nucleus=3"], "error: [features.nucleus] must be a table"),
        (
            ["build", "--set", 'features.nucleus.depht_method="y_offset"'],
            "unknown key 'depht_method' in [features.nucleus] (did you mean 'depth_method'?)",
        ),
        (
            ["build", "--set", "features.synapses.soma_distance=1"],
            "[features.synapses] soma_distance must be true or false, got 1",
        ),
        (
            ["build", "--set", "features.synapses.range_rows=0"],
            "[features.synapses] range_rows must be a positive integer, got 0",
        ),
    ],
)
def test_error_paths_exit_2_with_a_clear_first_line(in_tmp: Path, args: list[str], expected: str) -> None:
    """Relative store and datasets roots are shown resolved (against the project, here the working directory)."""
    line = invoke_error(args)
    expected = expected.replace("{root}", str(in_tmp.resolve()))
    assert line.startswith("error: ") and expected.removeprefix("error: ") in line, line


def test_invalid_toml_names_the_file(in_tmp: Path) -> None:
    cfg = write(in_tmp / "bad.toml", "[source\nkind = 'sample'\n")
    assert invoke_error(["build", "--config", str(cfg)]).startswith(f"error: {cfg}: invalid TOML")


def test_synthetic_over_another_snapshot_is_refused(in_tmp: Path) -> None:
    (in_tmp / "snap").mkdir()
    (in_tmp / "snap" / "x.parquet").write_text("not mine")
    line = invoke_error(["synthetic", "--out", "snap", "--cells", "50", "--synapses", "100"])
    assert line.startswith("error: snap already exists and holds something else")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_colon", "--model needs module:callable"),
        ("no_such_module_xyz:make", "cannot import 'no_such_module_xyz'"),
        ("json:no_such_callable", "json has no callable 'no_such_callable'"),
        ("builtins:dict", "returned dict, not an estimator"),
    ],
)
def test_a_bad_model_spec_says_what_is_wrong(spec: str, message: str) -> None:
    from cellfeatures.benchmark.models import load_estimator as _load_estimator
    from cellfeatures.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        _load_estimator(spec)


def test_a_version_typo_gets_did_you_mean(in_tmp: Path) -> None:
    from cellfeatures.errors import VersionNotFoundError
    from cellfeatures.store.store import FeatureStore

    store = FeatureStore(in_tmp / "features")
    (store.root / "abcdef0123456789").mkdir(parents=True)
    manifest = {
        "version": "abcdef0123456789",
        "built_at": "2026",
        "config": {},
        "source": {},
        "features": {},
        "rows": 0,
        "families": {},
        "files": {},
    }
    import json

    (store.root / "abcdef0123456789" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(VersionNotFoundError, match="did you mean 'abcdef0123456789'"):
        store.resolve("abcdef0123456788")
