"""The shape of the code, checked: layers only import downwards, no import cycles at all (counting imports
inside functions and under TYPE_CHECKING), modules that fit in a head, command functions that only parse,
call one library function and print."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "cellfeatures"


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), over every import grimp sees."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.find_modules_directly_imported_by(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_no_module_imports_another_that_imports_it_back() -> None:
    graph = grimp.build_graph("cellfeatures", cache_dir=None)
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_planted_cycle() -> None:
    graph = grimp.ImportGraph()
    for name in ("p", "p.a", "p.b", "p.c"):
        graph.add_module(name)
    graph.add_import(importer="p.a", imported="p.b")
    graph.add_import(importer="p.b", imported="p.c")
    graph.add_import(importer="p.c", imported="p.a")
    assert _cycles(graph) == [["p.a", "p.b", "p.c"]]


def test_the_layer_contracts_hold() -> None:
    """The same contracts `lint-imports` checks in CI (pyproject.toml [tool.importlinter])."""
    command = Path(sys.executable).with_name("lint-imports")
    run = subprocess.run([str(command), "--no-cache"], cwd=SRC.parents[1], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "0 broken" in run.stdout


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_every_module_fits_in_a_head_and_says_its_job(path: Path) -> None:
    text = path.read_text()
    assert len(text.splitlines()) <= 450, f"{path} has {len(text.splitlines())} lines"
    if text.strip():
        assert ast.get_docstring(ast.parse(text)), f"{path} has no docstring saying its job"


def test_every_command_function_is_thin() -> None:
    commands = []
    for path in sorted((SRC / "cli").glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and any("command" in ast.unparse(d) for d in node.decorator_list):
                commands.append((f"{path.name}:{node.name}", node.end_lineno - node.lineno + 1))  # type: ignore[operator]
    assert len(commands) == 19  # lookup joined the 18 of the layers refactor
    assert [c for c in commands if c[1] > 30] == []
