"""The shape of the code: ``trainables/`` (what runs inside a trial) imports nothing from ``hpo/`` (the
service), no module of either imports itself back through others, and ``import hpo`` stays light.

Imports are read with ``ast`` from the source, so an import inside a function counts as much as one
at the top of a file."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("hpo", "trainables")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for f in sorted((REPO / pkg).glob("*.py")):
            out[pkg if f.stem == "__init__" else f"{pkg}.{f.stem}"] = f
    return out


def _imports(path: Path) -> set[str]:
    """Every module name an import statement in ``path`` names (``from a import b``: ``a`` and ``a.b``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def import_graph() -> dict[str, set[str]]:
    """Product module -> the product modules it imports (a package's own ``__init__`` left out)."""
    mods = _modules()
    return {m: {t for t in _imports(f) if t in mods and t != m and t not in PACKAGES} for m, f in mods.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import one another, directly or round a loop (strongly connected
    components of more than one module, Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_trainables_import_nothing_from_hpo():
    offending = {m: sorted(t for t in _imports(f) if t.split(".")[0] == "hpo") for m, f in _modules().items() if m.startswith("trainables")}
    assert {m: names for m, names in offending.items() if names} == {}


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    assert len(graph) > 40 and graph["hpo.driver"] >= {"hpo.spec", "trainables.trial"}  # the walk sees the code
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_loop():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_settings_and_the_report_contract_import_no_framework():
    """The settings and the report contract load anywhere, fast: pydantic at most, no torch, ray or hpo."""
    allowed = {"__future__", "collections", "dataclasses", "typing", "json", "pydantic", "trainables"}
    for name in ("settings", "report", "errors"):
        roots = {t.split(".")[0] for t in _imports(REPO / "trainables" / f"{name}.py")}
        assert roots <= allowed, (name, roots - allowed)


def test_the_python_api_is_exported_lazily():
    code = (
        "import sys, hpo\n"
        "light = not {'torch', 'ray', 'transformers'} & set(sys.modules)\n"
        "api = [hpo.run_sweep, hpo.resume_sweep, hpo.load_sweep, hpo.promote, hpo.PromoteOptions, hpo.load_spec]\n"
        "print(light, all(callable(f) for f in api), sorted(hpo.__all__) == sorted(dir(hpo)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["True", "True", "True"], out.stderr[-2000:]
