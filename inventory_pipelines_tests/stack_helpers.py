"""Shared by the end-to-end tests that drive the real stack (simulator, `dg dev`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from sqlalchemy import Engine, text

from inventory_pipelines.core.database import create_inventory_engine
from inventory_pipelines.devstack import DevStack, graphql
from inventory_pipelines_tests.databases import TRUNCATE

LAUNCH_BACKFILL = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on PartitionKeysNotFoundError { message }
    ... on PartitionSetNotFoundError { message }
  }
}
"""


def wait_for(condition: Callable[[], Any], what: str, stack: DevStack, timeout: float) -> Any:
    """Poll `condition` every second until it returns something truthy, and return that;
    fail early if a service of the stack died, and after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        stack.check_alive()
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(1.0)


def launch_backfill(
    stack: DevStack, partition_names: list[str], title: str, tags: Mapping[str, str] = {}
) -> str:
    """Backfill these inventory_items partitions through GraphQL, as the UI's dialog does."""
    launched = graphql(
        stack.dagster_url,
        LAUNCH_BACKFILL,
        {
            "params": {
                "assetSelection": [{"path": ["inventory_items"]}],
                "partitionNames": partition_names,
                "title": title,
                "tags": [{"key": k, "value": v} for k, v in tags.items()],
            }
        },
    )["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    return str(launched["backfillId"])


@pytest.fixture
def inventory_engine(postgres_url: str) -> Iterator[Engine]:
    """The PostgreSQL inventory database of the session, emptied for this test."""
    engine = create_inventory_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(text(TRUNCATE))
    yield engine
    engine.dispose()
