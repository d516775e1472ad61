"""examples/quickstart.ipynb runs from top to bottom on the embedded sample, headless, as committed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cellfeatures.store.store import FeatureStore
from tests.conftest import copy_sample_features

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"


def test_the_notebook_is_committed_without_outputs() -> None:
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert code and all(not c["outputs"] and c.get("execution_count") is None for c in code)


@pytest.mark.slow
def test_the_quickstart_notebook_executes_without_an_error_cell(tmp_path: Path, sample_project: Path) -> None:
    """In a project folder whose store already holds the sample's version (the build is tested elsewhere: here
    the notebook must find it there), through a real Jupyter kernel (nbclient + ipykernel)."""
    import nbclient
    import nbformat

    from cellfeatures.config.model import packaged_config_path

    copy_sample_features(sample_project, tmp_path / "features")
    (tmp_path / "configs").mkdir()
    shutil.copy(packaged_config_path("sample"), tmp_path / "configs" / "sample.toml")
    (tmp_path / "examples").mkdir()
    shutil.copy(NOTEBOOK, tmp_path / "examples" / NOTEBOOK.name)
    nb = nbformat.read(tmp_path / "examples" / NOTEBOOK.name, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path / "examples")}}
    )
    client.execute()  # raises CellExecutionError naming the failing cell
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    html = [o for o in outputs if "text/html" in o.get("data", {})]
    assert any("FeatureVersion" in o["data"]["text/html"] for o in html), "the version shows itself as HTML"
    assert any("Leaderboard" in o["data"]["text/html"] for o in html)
    assert any("image/png" in o.get("data", {}) for o in outputs), "the depth plot was drawn"
    versions = FeatureStore(tmp_path / "features").list()
    assert len(versions) == 1, "the notebook found the sample's version in the project's store, built none"
    assert not (tmp_path / "examples" / "features").exists()
