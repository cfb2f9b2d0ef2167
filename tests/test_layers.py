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
        for f in sorted((REPO / pkg).rglob("*.py")):
            parts = f.relative_to(REPO).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
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
    return {m: {t for t in _imports(f) if t in mods and t != m and t not in PACKAGES} for m, f in mods.items() if m not in PACKAGES}


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
    assert len(graph) > 40 and graph["hpo.tune.run"] >= {"hpo.core.spec", "trainables.trial"}  # the walk sees the code
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_loop():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_settings_and_the_report_contract_import_no_framework():
    """The settings and the report contract load anywhere, fast: pydantic at most, no torch, ray or hpo."""
    allowed = {"__future__", "collections", "dataclasses", "typing", "json", "reprlib", "pydantic", "trainables"}
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


# The service's packages, lowest first: each may import those before it, never one after it.
LAYERS = ("hpo.core", "hpo.tune", "hpo.sweep", "hpo.analysis", "hpo.promotion", "hpo.cli")


def _layer(module: str) -> int | None:
    return next((i for i, name in enumerate(LAYERS) if module == name or module.startswith(name + ".")), None)


def test_the_packages_depend_one_way():
    """core < tune (the adapter around Ray) < sweep < analysis (reading a sweep) < promotion < cli: status
    never imports promotion, the core nothing above it."""
    graph = import_graph()
    upward = sorted(
        f"{m} imports {t}"
        for m, targets in graph.items()
        for t in targets
        if _layer(m) is not None and _layer(t) is not None and _layer(t) > _layer(m)
    )
    assert upward == []
    assert {_layer(m) for m in graph if m.startswith("hpo.")} == set(range(len(LAYERS)))  # every package is seen


def _names_ray(path: Path) -> list[str]:
    return sorted(t for t in _imports(path) if t.split(".")[0] == "ray")


def test_only_the_adapter_imports_ray():
    outside = {m: _names_ray(f) for m, f in _modules().items() if m.startswith("hpo") and not m.startswith("hpo.tune")}
    assert {m: names for m, names in outside.items() if names} == {}


def _private_attributes(path: Path) -> list[str]:
    """``x._name`` where ``x`` is a module of Ray, Optuna or W&B imported in ``path``, or any attribute
    ``._name`` on an object (a private member of a framework's object reached from our code)."""
    tree = ast.parse(path.read_text())
    frameworks = {"ray", "optuna", "wandb"}
    aliases = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases.update((a.asname or a.name).split(".")[0] for a in node.names if a.name.split(".")[0] in frameworks)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in frameworks:
            aliases.update(a.asname or a.name for a in node.names)
            if any(part.startswith("_") for part in node.module.split(".")):
                aliases.add(f"from {node.module}")
    found = sorted(a for a in aliases if a.startswith("from "))
    found += [  # a logger or a module named by its dotted path, e.g. "ray._private.x"
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.split(".")[0] in frameworks
        and any(part.startswith("_") for part in node.value.split(".")[1:])
    ]
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            base = node.value
            while isinstance(base, ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name) and base.id in aliases:
                found.append(f"{base.id}...{node.attr}")
    return found


def test_only_the_adapter_names_private_names_of_ray_optuna_or_wandb():
    outside = {m: _private_attributes(f) for m, f in _modules().items() if m.startswith("hpo") and not m.startswith("hpo.tune")}
    assert {m: names for m, names in outside.items() if names} == {}
    inside = {m: _private_attributes(f) for m, f in _modules().items() if m.startswith("hpo.tune")}
    assert any(inside.values())  # the check sees them where they are
