"""The package's import graph points one way: no cycles, and the layers hold.

`core/` is plain Python at the bottom: it imports nothing of ours outside `core/`. `graph/`
builds on `core/` only, and the simulator on `core/` and itself, never on the client it
stands in Graph for (shared code could hide a protocol mistake on both sides); none of the three
imports Dagster or the Dagster wiring at the top of the package (assets, resources,
definitions, …), which is where Dagster calls into them.

Every import counts wherever it stands: at module level, inside a function, or under
`TYPE_CHECKING`. A function-level import only hides a cycle until the function runs, and a
type-only one is still a dependency of the design; either is fixed by moving the shared piece
into a module both sides import (or by a Protocol). Only explicit imports are edges: that
importing `a.b.c` first runs `a/__init__.py` is Python's business, not a design dependency.
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "inventory_pipelines"

MAY_IMPORT = {
    "core": frozenset({"core"}),
    "graph": frozenset({"core", "graph"}),
    "simulator": frozenset({"core", "simulator"}),
}
"""For each plain-Python layer, the layers (sub-packages) of ours it may import from."""

NO_DAGSTER = frozenset(MAY_IMPORT)
"""Layers that must not import Dagster or anything built on it."""

Graph = dict[str, set[str]]


def module_files(root: Path, package: str) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package `__init__`)."""
    found: dict[str, tuple[Path, bool]] = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        found[".".join(parts)] = (path, is_package)
    return found


def imported_modules(
    module: str, is_package: bool, tree: ast.AST, modules: Mapping[str, object]
) -> Iterable[str]:
    """What every import statement anywhere in the module names: `import a.b` names `a.b`;
    `from a import x` names the module `a.x` when there is one, else `a` (x is a name in it);
    relative imports are resolved against the module's package."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                yield submodule if submodule in modules else source


def import_graph(root: Path, package: str) -> tuple[Graph, dict[str, set[str]]]:
    """(our modules -> our modules they import, our modules -> other top-level names)."""
    modules = module_files(root, package)
    ours: Graph = {name: set() for name in modules}
    external: dict[str, set[str]] = {name: set() for name in modules}
    for name, (path, is_package) in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for target in imported_modules(name, is_package, tree, modules):
            top = target.split(".")[0]
            if top != package:
                external[name].add(top)
            elif target != name:
                ours[name].add(target)
    return ours, external


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            advanced = False
            for target in edges:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph[target]))))
                    advanced = True
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
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
    return sorted(found)


def layer_of(module: str) -> str | None:
    """The layer (sub-package) a module of ours belongs to; None for the top-level wiring."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in MAY_IMPORT else None


def layer_violations(graph: Mapping[str, set[str]], external: Mapping[str, set[str]]) -> list[str]:
    problems = []
    for module in sorted(graph):
        layer = layer_of(module)
        if layer not in MAY_IMPORT:
            continue
        for target in sorted(graph[module]):
            if layer_of(target) not in MAY_IMPORT[layer]:
                problems.append(f"{module} imports {target}")
        if layer in NO_DAGSTER:
            problems.extend(
                f"{module} imports {name}"
                for name in sorted(external[module])
                if name == "dagster" or name.startswith("dagster_")
            )
    return problems


@pytest.fixture(scope="module")
def package_graph() -> tuple[Graph, dict[str, set[str]]]:
    return import_graph(ROOT, PACKAGE)


def test_the_package_has_no_import_cycles(package_graph: tuple[Graph, dict[str, set[str]]]) -> None:
    found = cycles(package_graph[0])
    assert found == [], "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_layers_import_only_downwards(package_graph: tuple[Graph, dict[str, set[str]]]) -> None:
    problems = layer_violations(*package_graph)
    assert problems == [], "\n".join(problems)


def test_the_scan_sees_known_imports(package_graph: tuple[Graph, dict[str, set[str]]]) -> None:
    """Guards the scanner itself: a walk that found no edges would pass everything."""
    ours, external = package_graph
    assert "inventory_pipelines.core.store" in ours["inventory_pipelines.graph.sync"]
    assert "inventory_pipelines.core.policy_types" in ours["inventory_pipelines.core.selection"]
    assert "dagster" in external["inventory_pipelines.definitions"]
    assert len(ours) > 50 and sum(map(len, ours.values())) > 150


# -- the checks can fail: a small package with each kind of mistake -------------------------


def write_package(root: Path, files: Mapping[str, str]) -> None:
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source), encoding="utf-8")


BROKEN = {
    "pkg/__init__.py": "",
    "pkg/core/__init__.py": "",
    "pkg/graph/__init__.py": "",
    # module level, one way; function level, the other
    "pkg/core/store.py": "from pkg.core.bulk import upsert\n",
    "pkg/core/bulk.py": """\
        def upsert():
            from pkg.core.store import ObservedItem
        """,
    # TYPE_CHECKING and relative imports count too
    "pkg/graph/sync.py": "from . import writer\n",
    "pkg/graph/writer.py": """\
        from typing import TYPE_CHECKING
        if TYPE_CHECKING:
            from .sync import Summary
        """,
    # core reaching up into graph, into the wiring, and into Dagster
    "pkg/core/selection.py": """\
        from pkg.graph.registry import TYPES
        import dagster as dg
        """,
    "pkg/core/missing.py": "from pkg import assets\n",
    "pkg/graph/registry.py": "TYPES = ()\n",
    "pkg/assets.py": "import dagster\nfrom pkg.core import missing\n",
}


def test_a_deliberate_cycle_and_upward_imports_are_caught(tmp_path: Path) -> None:
    write_package(tmp_path, BROKEN)
    graph, external = import_graph(tmp_path, "pkg")
    assert cycles(graph) == [
        ["pkg.assets", "pkg.core.missing"],
        ["pkg.core.bulk", "pkg.core.store"],
        ["pkg.graph.sync", "pkg.graph.writer"],
    ]
    assert layer_violations(graph, external) == [
        "pkg.core.missing imports pkg.assets",
        "pkg.core.selection imports pkg.graph.registry",
        "pkg.core.selection imports dagster",
    ]


def test_a_clean_package_passes(tmp_path: Path) -> None:
    files = {name: source for name, source in BROKEN.items() if name != "pkg/core/bulk.py"}
    files["pkg/core/bulk.py"] = "X = 1\n"
    files["pkg/graph/writer.py"] = "from pkg.core.store import upsert\n"
    files["pkg/core/selection.py"] = "from pkg.core.store import upsert\n"
    files["pkg/core/missing.py"] = "import json\n"
    write_package(tmp_path, files)
    graph, external = import_graph(tmp_path, "pkg")
    assert cycles(graph) == []
    assert layer_violations(graph, external) == []
