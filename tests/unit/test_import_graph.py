"""The import graph of ``scheduler``: no cycles between packages or between modules, and a core
that loads no I/O library.

The graph is read from the source with ``ast`` (every import statement counts, those inside
functions and ``if TYPE_CHECKING:`` included: a cycle hidden behind either still ties the two
ends together). ``lint-imports`` checks the layers; this checks what layers cannot express
about the modules they do not name.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import scheduler

PACKAGE_DIR = Path(scheduler.__file__).parent
ROOT = "scheduler"

# The libraries that do I/O or own a process-wide resource; the core is pure without them.
IO_LIBRARIES = (
    "sqlalchemy",
    "httpx",
    "starlette",
    "uvicorn",
    "apscheduler",
    "aiosqlite",
    "psycopg",
    "prometheus_client",
    "structlog",
)

Graph = Mapping[str, set[str]]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of ``scheduler`` that the module ``name`` imports (itself left out)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            # ``from package import module`` imports that module; ``from module import name``
            # imports the module.
            targets = [
                f"{source}.{alias.name}" if f"{source}.{alias.name}" in known else source
                for alias in node.names
            ]
        else:
            continue
        found.update(t for t in targets if t in known and t != name)
    return found


def module_graph() -> dict[str, set[str]]:
    paths = {module_name(path): path for path in PACKAGE_DIR.rglob("*.py")}
    known = set(paths)
    return {name: imported_modules(name, path, known) for name, path in paths.items()}


def package_of(module: str) -> str:
    """``scheduler.ledger.claims`` -> ``scheduler.ledger``; a top-level module is its own."""
    return ".".join(module.split(".")[:2])


def package_graph(modules: Graph) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, targets in modules.items():
        source = package_of(module)
        edges = graph.setdefault(source, set())
        # ``scheduler/__init__.py`` holds the version only: importing it is no dependency.
        edges.update(package_of(t) for t in targets if t != ROOT and package_of(t) != source)
    return graph


def cycles(graph: Graph) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def describe(graph: Graph, components: Iterable[list[str]]) -> str:
    lines = []
    for component in components:
        members = set(component)
        lines.append(" <-> ".join(component))
        for source in component:
            lines.extend(f"    {source} -> {t}" for t in sorted(graph[source] & members))
    return "\n".join(lines)


def test_the_cycle_finder_finds_a_cycle_and_only_one() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_imports_inside_type_checking_blocks(tmp_path: Path) -> None:
    # The shape of the cycle the HTTP app and its webhook endpoint once had.
    source = tmp_path / "webhooks.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from scheduler.http.app import Runtime\n"
    )
    known = {"scheduler.http.app", "scheduler.http.webhooks"}
    assert imported_modules("scheduler.http.webhooks", source, known) == {"scheduler.http.app"}


def test_no_cycle_between_packages() -> None:
    graph = package_graph(module_graph())
    # The graph is the real one: the ledger is imported by the share pass, not the reverse.
    assert "scheduler.ledger" in graph["scheduler.share"]
    assert "scheduler.share" not in graph["scheduler.ledger"]
    found = cycles(graph)
    assert not found, "packages that import each other:\n" + describe(graph, found)


def test_no_cycle_between_modules() -> None:
    graph = module_graph()
    found = cycles(graph)
    assert not found, "modules that import each other:\n" + describe(graph, found)


def test_the_core_imports_nothing_but_the_base_and_itself() -> None:
    allowed = {"scheduler.core", "scheduler.config", "scheduler.errors", "scheduler.times"}
    graph = package_graph(module_graph())
    assert graph["scheduler.core"] <= allowed, graph["scheduler.core"] - allowed


def test_loading_the_core_loads_no_io_library() -> None:
    # In a fresh interpreter: this one has every library loaded already.
    core_modules = sorted(m for m in module_graph() if package_of(m) == "scheduler.core")
    assert "scheduler.core.rule" in core_modules
    script = (
        "import importlib, sys\n"
        f"for name in {core_modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {IO_LIBRARIES!r}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        cwd=PACKAGE_DIR.parent,
    )
    assert result.stdout.strip() == "[]", result.stdout
