"""Where the project, its config, its feature store and its datasets are, wherever Python was started.

A notebook runs in `examples/`, a script in `scripts/`, the CLI wherever the user stands: a store path
resolved against the working directory alone silently finds nothing from elsewhere. So relative paths
in a config resolve against the config's *project* (the folder holding `configs/`, or the config's own
folder), and code that names no config looks for the project from the working directory upwards.
"""

from __future__ import annotations

import os
from pathlib import Path

# A folder is a cellfeatures project when it holds one of these.
PROJECT_MARKERS = ("configs/sample.toml", "configs/minnie65_public.toml", "features/README.md")


def find_project(start: str | os.PathLike[str] | None = None) -> Path | None:
    """The nearest folder at or above `start` (default: the working directory) that looks like a project."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if any((folder / marker).exists() for marker in PROJECT_MARKERS):
            return folder
    return None


def project_of_config(config_path: Path | None) -> Path:
    """The folder a config's relative paths mean: the parent of `configs/`, else the config's folder.

    The packaged default config (inside site-packages) and a config built in memory belong to the
    project found from the working directory, or to the working directory itself.
    """
    if config_path is None or _is_packaged(config_path):
        return find_project() or Path.cwd().resolve()
    # the path as the user gave it, made absolute but NOT resolved: a configs/ entry that is a symlink
    # into an installed package still belongs to the project it sits in (resolving it once put stores
    # inside site-packages or src/cellfeatures)
    folder = Path(os.path.abspath(config_path)).parent
    return folder.parent if folder.name == "configs" else folder


def resolve_under(project: Path, path: str | os.PathLike[str]) -> Path:
    """`path` as is when absolute (or ~), else under the project."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else project / p


def _is_packaged(path: Path) -> bool:
    from importlib.resources import files

    package = Path(str(files("cellfeatures")))
    given = Path(os.path.abspath(path))  # as given: a project's symlink into the package is the project's
    return any(p in given.parents for p in (package, package.resolve()))
