"""The package's shape: no import cycles, imports only go down the rooms, the public API is whole.

docs/architecture.md draws the rooms; this test holds the code to that drawing. Imports are
read from the source (``ast``), including the ones inside functions — a lazy import still
ties two modules together — but not the ones under ``if TYPE_CHECKING:``, which never run.
"""

from __future__ import annotations

import ast
import tomllib
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "hubscan"

#: room → the rooms its modules may import (its own room is always allowed). The data flow
#: is source → reader → matrices → spectra/fits → model result → lake → views/plots/report,
#: and every arrow here points down it.
ALLOWED: dict[str, set[str]] = {
    "base": set(),  # errors, refs, options, results, dtypes, the schema files
    "esd": {"base"},  # the numeric core: no I/O, no lake, no Ray
    "net": {"base"},
    "readers": {"base", "net"},
    "sources": {"base", "net", "readers"},
    "analysis": {"base", "esd", "readers", "sources"},
    "lake": {"base"},
    "testing": {"base", "net", "readers"},
    "engine": {"base", "esd", "net", "readers", "sources", "analysis", "lake", "testing"},
    "plots": {"base", "esd", "lake"},
    "report": {"base", "lake", "plots"},
    "serve": {"base", "esd", "lake", "plots", "report"},
    "api": {"base", "esd", "net", "readers", "sources", "analysis", "lake"},
    "cli": {"base", "esd", "net", "readers", "sources", "analysis", "lake", "testing", "engine",
            "plots", "report", "serve", "api"},
}
BASE_MODULES = {"hubscan.errors", "hubscan.refs", "hubscan.options", "hubscan.results",
                "hubscan.dtypes"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def room_of(mod: str) -> str:
    if mod in BASE_MODULES or mod == "hubscan.schemas" or mod.startswith("hubscan.schemas."):
        return "base"
    if mod in ("hubscan", "hubscan.api"):
        return "api"
    return mod.split(".")[1]


def _modules() -> dict[str, Path]:
    mods = {module_name(p): p for p in PKG.rglob("*.py")}
    mods["hubscan.schemas"] = ROOT / "schemas" / "__init__.py"  # package-dir mapping
    return mods


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_imports(tree: ast.AST):
    """Every import statement that can run: all of them but those under TYPE_CHECKING."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _resolve(mod: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> dict[str, set[str]]:
    """module → the hubscan modules it imports (``from pkg import submodule`` → submodule)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for mod, path in MODULES.items():
        graph[mod]
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in _runtime_imports(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                target = _resolve(mod, path.name == "__init__.py", node)
                targets = [f"{target}.{a.name}" if f"{target}.{a.name}" in MODULES else target
                           for a in node.names]
            for t in targets:
                while t and t not in MODULES and "." in t:
                    t = t.rsplit(".", 1)[0]  # ``import hubscan.x.y`` names a module, or an attribute
                if t in MODULES and t != mod:
                    graph[mod].add(t)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


GRAPH = import_graph()


def test_the_graph_is_read():
    """A control: the walker sees lazy imports and resolves relative ones."""
    assert "hubscan.esd.layers" in GRAPH["hubscan.analysis.tensors"]
    assert "hubscan.sources" in GRAPH["hubscan.analysis.model"]  # imported inside a function
    assert "hubscan.lake" not in GRAPH["hubscan.lake.check"]  # a TYPE_CHECKING-only import


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    found = cycles(GRAPH)
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_every_module_is_in_a_room():
    rooms = {room_of(m) for m in MODULES}
    assert rooms <= set(ALLOWED), f"modules outside the rooms of docs/architecture.md: {rooms - set(ALLOWED)}"


def test_imports_only_go_down():
    bad = []
    for mod, targets in GRAPH.items():
        here = room_of(mod)
        for t in sorted(targets):
            there = room_of(t)
            if there != here and there not in ALLOWED[here]:
                bad.append(f"{mod} ({here}) imports {t} ({there})")
    assert not bad, "imports that run against the flow:\n" + "\n".join(bad)


@pytest.mark.parametrize("rule", [("esd", "readers"), ("esd", "lake"), ("esd", "engine"),
                                  ("esd", "plots"), ("esd", "cli"), ("esd", "sources"),
                                  ("readers", "sources"), ("lake", "analysis"),
                                  ("analysis", "lake"), ("plots", "engine")])
def test_the_rules_forbid_what_the_issue_names(rule):
    """The allowed directions themselves: the numeric core reaches nothing above it, and
    the pairs that once ran upward (readers → sources, analysis → lake) stay forbidden."""
    low, high = rule
    assert high not in ALLOWED[low]


def test_pyproject_ships_every_package():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {m for m, p in MODULES.items() if p.name == "__init__.py"}
    assert packages == listed


def test_public_api_is_listed_and_resolves():
    import hubscan

    public = [n for n in dir(hubscan) if not n.startswith("_")]
    assert set(public) == set(hubscan.__all__) - {"__version__"}
    for name in ("analyze", "fit_power_law", "fit_power_law_batch", "Lake", "read_checkpoint",
                 "AnalysisOptions", "ModelRef", "TensorRef", "distribution_compare", "errors"):
        assert name in public
    for name in public:
        assert getattr(hubscan, name) is not None
    from hubscan import Lake, analyze, fit_power_law  # noqa: F401 - the notebook spelling
