"""Shared fixtures. PostgreSQL is required under CI=true; elsewhere its absence is loud. So are
RabbitMQ and network namespaces, which the Celery worker-host test needs."""

from __future__ import annotations

import os

import pytest

pytest_plugins = [
    "inventory_pipelines_tests.databases",
    "inventory_pipelines_tests.simulator_fixtures",
]

_POSTGRES_PROBLEM_KEY = pytest.StashKey[str | None]()
CELERY_HOSTS_PROBLEM_KEY = pytest.StashKey[str | None]()
"""Why the Celery worker-host test cannot run here (no broker, no network namespaces), or None."""


def running_in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def pytest_configure(config: pytest.Config) -> None:
    from inventory_pipelines.celery_stack import broker_problem, netns_problem
    from inventory_pipelines_tests.databases import postgres_problem

    config.stash[CELERY_HOSTS_PROBLEM_KEY] = (
        "; ".join(p for p in (netns_problem(), broker_problem()) if p) or None
    )
    problem = postgres_problem()
    config.stash[_POSTGRES_PROBLEM_KEY] = problem
    if problem and running_in_ci():
        raise pytest.UsageError(
            f"CI=true but the PostgreSQL test server is unreachable ({problem}); "
            "start it (see .ci/run) or set INVENTORY_TEST_POSTGRES_URL"
        )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.stash.get(_POSTGRES_PROBLEM_KEY, None):
        deselected = [item for item in items if item.get_closest_marker("postgres")]
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = [item for item in items if not item.get_closest_marker("postgres")]
    # The long end-to-end tests first, so the short ones fill the workers around them instead
    # of the long ones running last, one per worker, on an otherwise idle machine.
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    celery_problem = terminalreporter.config.stash.get(CELERY_HOSTS_PROBLEM_KEY, None)
    if celery_problem and not running_in_ci():
        bar = "!" * 78
        terminalreporter.write_line(bar, red=True, bold=True)
        terminalreporter.write_line(
            f"CELERY WORKER HOSTS NOT TESTED: {celery_problem}.", red=True, bold=True
        )
        terminalreporter.write_line(
            "Skipped: runs on Celery workers in network namespaces (test_celery_hosts). "
            "Run as root with RabbitMQ on 127.0.0.1:5672 (see .ci/run).",
            red=True,
            bold=True,
        )
        terminalreporter.write_line(bar, red=True, bold=True)
    problem = terminalreporter.config.stash.get(_POSTGRES_PROBLEM_KEY, None)
    if problem:
        bar = "!" * 78
        terminalreporter.write_line(bar, red=True, bold=True)
        terminalreporter.write_line(
            f"PostgreSQL NOT TESTED: test server unreachable ({problem}).", red=True, bold=True
        )
        terminalreporter.write_line(
            "Only SQLite ran. Start PostgreSQL or set INVENTORY_TEST_POSTGRES_URL.",
            red=True,
            bold=True,
        )
        terminalreporter.write_line(bar, red=True, bold=True)


@pytest.fixture(autouse=True)
def _fresh_page_size_memory() -> None:
    """Each test starts from the registry's page sizes and with `$batch` not yet refused,
    as a new process would."""
    from inventory_pipelines.graph.batch import PROCESS_BATCH_REFUSALS
    from inventory_pipelines.graph.page_size import PROCESS_PAGE_SIZES

    PROCESS_PAGE_SIZES.reset()
    PROCESS_BATCH_REFUSALS.reset()
