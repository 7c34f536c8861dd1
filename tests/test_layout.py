"""The package's rooms stay a house: no import cycle between its modules (imports inside
functions and under TYPE_CHECKING count too), and no module grows past what one reader
holds in mind."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "datasette_claude_mem"
NAME = PACKAGE.name
MAX_LINES = 600
# The schema's migrations are one append-only file that the sqlite-utils CLI runs on its own
# (it may import nothing from the package); released steps are never edited, so it only grows,
# and each step is read alone.
APPEND_ONLY = {f"{NAME}.storage.migrations"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The package's modules this file imports, wherever in the file the import stands."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = [f"{node.module}.{a.name}" for a in node.names]
            names = [s for s in subs if s in modules] or [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            while name not in modules and "." in name:
                name = name.rsplit(".", 1)[0]
            if name in modules and name.startswith(NAME):
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(files)
    return {name: imports_of(path, modules) - {name} for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each strongly connected group of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_between_the_package_modules() -> None:
    graph = import_graph()
    assert f"{NAME}.storage.store" in graph and graph[f"{NAME}.plugin"], "the graph is empty"
    assert cycles(graph) == []


def test_the_names_module_is_a_leaf() -> None:
    assert import_graph()[f"{NAME}.names"] <= {f"{NAME}.templates"}


def test_no_module_is_longer_than_one_reader_holds_in_mind() -> None:
    lengths = {
        module_name(path): len(path.read_text(encoding="utf-8").splitlines())
        for path in PACKAGE.rglob("*.py")
    }
    assert len(lengths) > 20
    too_long = {n: lines for n, lines in lengths.items() if lines > MAX_LINES}
    assert {n: lines for n, lines in too_long.items() if n not in APPEND_ONLY} == {}


def test_storage_depends_on_nothing_above_it() -> None:
    """Every read and write of the memory is in storage/: it needs only the names, the
    settings and the redaction it applies to what it stores, never the rooms that call it."""
    allowed = (
        f"{NAME}.storage",
        f"{NAME}.names",
        f"{NAME}.settings",
        f"{NAME}.redaction",
        f"{NAME}.templates",
    )
    outside = {
        module: sorted(other for other in imported if not other.startswith(allowed))
        for module, imported in import_graph().items()
        if module.startswith(f"{NAME}.storage")
    }
    assert {module: others for module, others in outside.items() if others} == {}
