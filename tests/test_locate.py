"""Where the project, its store and its datasets are, wherever Python was started."""

from __future__ import annotations

from pathlib import Path

import pytest

from cellfeatures.config.model import load_config
from cellfeatures.config.paths import find_project, project_of_config, resolve_under


def _project(root: Path) -> Path:
    (root / "configs").mkdir(parents=True)
    (root / "configs" / "sample.toml").write_text('[source]\nkind = "sample"\n[features.nucleus]\n')
    return root


def test_the_project_is_found_from_a_nested_folder(tmp_path: Path) -> None:
    project = _project(tmp_path / "lab")
    (project / "examples" / "deep").mkdir(parents=True)
    assert find_project(project / "examples" / "deep") == project.resolve()
    assert find_project(tmp_path) is None


def test_a_config_in_configs_belongs_to_the_folder_above(tmp_path: Path) -> None:
    project = _project(tmp_path / "lab")
    assert project_of_config(project / "configs" / "sample.toml") == project.resolve()
    (tmp_path / "elsewhere").mkdir()
    loose = tmp_path / "elsewhere" / "mine.toml"
    loose.write_text("")
    assert project_of_config(loose) == (tmp_path / "elsewhere").resolve()


def test_relative_roots_resolve_against_the_project_not_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The notebook bug: FeatureStore("features") in examples/ listed nothing; a config's roots now mean
    the project's folders from wherever the code runs."""
    project = _project(tmp_path / "lab")
    (project / "examples").mkdir()
    monkeypatch.chdir(project / "examples")
    cfg = load_config(project / "configs" / "sample.toml")
    assert Path(cfg.store_root) == project.resolve() / "features"
    assert Path(cfg.datasets_root) == project.resolve() / "datasets"


def test_absolute_and_home_paths_are_kept(tmp_path: Path) -> None:
    assert resolve_under(tmp_path, "/data/store") == Path("/data/store")
    assert resolve_under(tmp_path, "~/store") == Path("~/store").expanduser()
    assert resolve_under(tmp_path, "store") == tmp_path / "store"
