"""The package's structure: no import cycle among python/loggrad modules.

Every relative import counts, at module level or inside a function (a lazy
import is still a dependency); imports under ``if TYPE_CHECKING:`` do not.
"""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1] / "python" / "loggrad"


def _imports(path: pathlib.Path, modules: set[str]) -> set[str]:
    tree = ast.parse(path.read_text())
    typing_only = {id(sub) for node in ast.walk(tree)
                   if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                   for sub in ast.walk(node)}
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only or not isinstance(node, ast.ImportFrom) or node.level != 1:
            continue
        names = [node.module.split(".")[0]] if node.module else [a.name for a in node.names]
        out.update(n for n in names if n in modules)
    return out


def _graph() -> dict[str, set[str]]:
    files = {p.stem: p for p in ROOT.glob("*.py")}
    modules = set(files) - {"__init__"}
    return {m: _imports(files[m], modules) for m in modules}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_no_import_cycle():
    graph = _graph()
    assert "network" in graph and graph["network"], "the graph was not read"
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_checker_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_imports_another_modules_private_names():
    # Helpers that several modules use live in internal modules (_json, _layout, _formats, ...);
    # a feature module's own _names stay its own.
    bad = []
    for path in ROOT.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module \
                    and not node.module.startswith("_"):
                bad += [f"{path.name}: from .{node.module} import {a.name}" for a in node.names
                        if a.name.startswith("_")]
    assert not bad, bad
