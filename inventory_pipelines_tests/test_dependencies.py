"""pyproject.toml declares exactly what the code imports: every third-party import is declared
in a group its code may rely on, and every runtime dependency is imported somewhere (or is on
the commented allow-list of packages used through configuration instead of imports).

A package that only arrives as someone else's dependency (msal brings cryptography, Dagster
brings pydantic) breaks the day that someone drops it; a declared package nothing uses is
weight every deployment installs.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections.abc import Iterator
from functools import cache
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIRST_PARTY = frozenset({"inventory_pipelines", "inventory_pipelines_tests", "bench", "docs"})

# Which requirement groups the code under each directory may import from.
GROUPS_BY_DIRECTORY = {
    "inventory_pipelines": ("runtime",),
    "bench": ("runtime", "bench"),
    "docs": ("runtime", "docs"),
    "inventory_pipelines_tests": ("runtime", "dev", "bench", "celery"),
}

USED_WITHOUT_IMPORT = {
    # The Dagster UI server, started as the `dagster-webserver` command (devstack, end-to-end).
    "dagster-webserver",
    # `dg dev`, run as `python -m dagster_dg_cli.cli dev` (devstack: the demo and end-to-end).
    "dagster-dg-cli",
    # Instance storage named in dagster.yaml (`module: dagster_postgres...`), loaded by Dagster.
    "dagster-postgres",
    # The PostgreSQL driver SQLAlchemy loads for `postgresql+psycopg2://` URLs.
    "psycopg2-binary",
}
"""Runtime dependencies that no `import` names, and what uses them."""


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, f"unreadable requirement {requirement!r} in pyproject.toml"
    return normalized(match.group(1))


@cache
def declared() -> dict[str, frozenset[str]]:
    """Requirement names per group: "runtime" and each optional-dependencies extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups = {"runtime": project["dependencies"], **project["optional-dependencies"]}
    return {group: frozenset(map(requirement_name, reqs)) for group, reqs in groups.items()}


def python_files(directory: str) -> Iterator[Path]:
    yield from sorted((ROOT / directory).rglob("*.py"))


def top_level_imports(path: Path) -> set[str]:
    """Top-level module names of every absolute import, wherever it stands in the file."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def third_party(names: set[str]) -> set[str]:
    return {n for n in names if n not in sys.stdlib_module_names and n not in FIRST_PARTY}


@cache
def imports_by_directory() -> dict[str, dict[str, set[Path]]]:
    """For each directory: third-party module name -> files importing it."""
    found: dict[str, dict[str, set[Path]]] = {}
    for directory in GROUPS_BY_DIRECTORY:
        modules: dict[str, set[Path]] = {}
        for path in python_files(directory):
            for name in third_party(top_level_imports(path)):
                modules.setdefault(name, set()).add(path.relative_to(ROOT))
        found[directory] = modules
    return found


@cache
def installed_distributions() -> dict[str, list[str]]:
    return packages_distributions()


def distributions_of(module: str) -> set[str]:
    """Distributions providing a module; an extra that is not installed here (docs) counts by
    the module's own name."""
    found = installed_distributions().get(module)
    return {normalized(d) for d in found} if found else {normalized(module)}


@pytest.mark.parametrize("directory", sorted(GROUPS_BY_DIRECTORY))
def test_every_import_is_declared_in_a_group_its_code_may_use(directory: str) -> None:
    allowed = set().union(*(declared()[group] for group in GROUPS_BY_DIRECTORY[directory]))
    problems = []
    for module, files in sorted(imports_by_directory()[directory].items()):
        distributions = distributions_of(module)
        if not distributions & allowed:
            problems.append(
                f"{module} (distribution {', '.join(sorted(distributions))}): imported by "
                f"{sorted(map(str, files))[:3]} but not declared in "
                f"{' or '.join(GROUPS_BY_DIRECTORY[directory])}"
            )
    assert problems == [], "\n".join(problems)


def test_every_runtime_dependency_is_imported_or_explained() -> None:
    imported = {
        distribution
        for modules in imports_by_directory().values()
        for module in modules
        for distribution in distributions_of(module)
    }
    unused = declared()["runtime"] - imported - USED_WITHOUT_IMPORT
    assert not unused, f"declared runtime dependencies nothing imports: {sorted(unused)}"
    assert declared()["runtime"] >= USED_WITHOUT_IMPORT
    assert not USED_WITHOUT_IMPORT & imported, "allow-listed but imported: drop it from the list"


def test_the_scan_sees_known_imports() -> None:
    """Guards the scanner itself: an AST walk that found nothing would pass everything."""
    runtime = imports_by_directory()["inventory_pipelines"]
    assert {"dagster", "httpx", "msal", "sqlalchemy"} <= set(runtime)
    assert "pytest" in imports_by_directory()["inventory_pipelines_tests"]
    assert "json" not in runtime and "inventory_pipelines" not in runtime
