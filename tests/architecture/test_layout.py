"""The layout's boundaries, read from the source: no import cycles, and who may import whom.

Imports are read with ``ast``, so an import under ``if TYPE_CHECKING:`` or
inside a function counts like any other: a cycle hidden from the interpreter
is still a cycle for a reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("server", "handlers", "models")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The project modules ``path`` imports (``from a import b`` names ``a.b`` if that is a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            # The longest known module the name starts with (a.b.c → a.b if c is not a module).
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    out = {}
    for name, path in mods.items():
        deps = imports_of(path, known)
        # A package's __init__ is not an edge of its own submodules' imports.
        out[name] = {d for d in deps if d != name and not (name.startswith(d + ".") and mods[d].name == "__init__.py")}
    return out


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
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

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles_among_the_projects_modules():
    edges = graph()
    assert cycles(edges) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_server_never_imports_an_application():
    edges = graph()
    offenders = {m: sorted(d for d in deps if d.startswith("handlers."))
                 for m, deps in edges.items() if m.startswith("server")}
    assert {m: d for m, d in offenders.items() if d} == {}


def test_only_the_registry_wiring_imports_the_handlers_package():
    edges = graph()
    users = sorted(m for m, deps in edges.items() if m.startswith("server") and "handlers" in deps)
    assert users == ["server.app", "server.cli.main"]


def test_models_know_nothing_of_the_web_or_the_app():
    for name, path in modules().items():
        if not name.startswith("models"):
            continue
        tree = ast.parse(path.read_text())
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        assert not any(m == "aiohttp" or m.startswith("aiohttp.") for m in imported), name
        assert not any(m.startswith("server.") and m != "server.config" for m in imported), name


def test_the_hub_does_no_io_and_knows_no_broker():
    deps = graph()["server.hub"]
    assert deps <= {"server.protocol"}, deps
    tree = ast.parse((ROOT / "server" / "hub.py").read_text())
    asynchronous = [n for n in ast.walk(tree) if isinstance(n, (ast.Await, ast.AsyncFunctionDef, ast.AsyncWith))]
    assert asynchronous == [], "the hub must not wait for anything"


def test_a_connection_is_not_given_the_node():
    deps = graph()["server.connection"]
    assert "server.node" not in deps and "server.hub" not in deps, deps
