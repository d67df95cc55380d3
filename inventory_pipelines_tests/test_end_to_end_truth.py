"""What the user sees is true, through the real stack (simulator, `dg dev`, daemon, GraphQL).

A clean tenant and one with a forbidden type are synced by the sensor; then the clean tenant's
consent is revoked and one sync of it is launched as the UI would. Partial and failed syncs
must stay loud: a failed run, a failed check, and a *failed* partition in the asset's
Partitions tab (never the green of fresh data), while `inventory_missing` still follows them to
their baseline; the per-partition statuses read over GraphQL, as the UI reads them, show which
partitions are clean, partial or failed; the client's own log lines are in the run's log.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster import DagsterRunStatus, RunsFilter
from sqlalchemy import Engine

from inventory_pipelines.assets import MISSING_SHARE_CHECK, SYNC_CHECK
from inventory_pipelines.core.missing import missing_items_for
from inventory_pipelines.core.selection import get_selection, load_selections
from inventory_pipelines.core.tenants import add_tenant
from inventory_pipelines.devstack import DevStack, graphql
from inventory_pipelines.partitions import partition_key
from inventory_pipelines.simulator import SIMULATOR_CLIENT_SECRET, SimulatorControl
from inventory_pipelines_tests.stack_helpers import inventory_engine, launch_backfill, wait_for

__all__ = ["inventory_engine"]  # fixture

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

CLEAN = ("0e2e0000-0000-4000-8000-0000000000c1", "Clean Co")
PARTIAL = ("0e2e0000-0000-4000-8000-0000000000c2", "Partial Co")
FORBIDDEN_TYPE = "conditional_access_policies"
PHASE_TIMEOUT = 300.0  # load-dependent: up to ~150 s beside the rest of the suite

CHECK_STATUSES = """
query($path: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) {
    __typename
    ... on AssetNode {
      assetChecksOrError {
        __typename
        ... on AssetChecks {
          checks {
            name
            partitionKeysByDimension { name partitionKeys }
            partitionStatuses {
              __typename
              ... on AssetCheckMultiPartitionStatuses {
                primaryDimensionName
                ranges {
                  primaryDimStartKey
                  primaryDimEndKey
                  secondaryDim {
                    __typename
                    ... on AssetCheckDefaultPartitionStatuses {
                      succeededPartitions failedPartitions inProgressPartitions
                      skippedPartitions executionFailedPartitions
                    }
                  }
                }
              }
            }
          }
        }
      }
    }
  }
}
"""

PARTITION_STATUSES = """
query($path: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) {
    __typename
    ... on AssetNode {
      partitionKeysByDimension { name partitionKeys }
      assetPartitionStatuses {
        __typename
        ... on MultiPartitionStatuses {
          primaryDimensionName
          ranges {
            primaryDimStartKey
            primaryDimEndKey
            secondaryDim {
              __typename
              ... on DefaultPartitionStatuses {
                materializedPartitions failedPartitions materializingPartitions
              }
            }
          }
        }
      }
    }
  }
}
"""

RUN_LOGS = """
query($runId: ID!) {
  logsForRun(runId: $runId) {
    __typename
    ... on EventConnection {
      events {
        __typename
        ... on MessageEvent { message level }
        ... on ExecutionStepFailureEvent { error { message } }
      }
    }
  }
}
"""


def _scenario() -> str:
    return "\n".join(
        [
            f'[tenants."{CLEAN[0]}"]',
            "seed = 301",
            "default_size = 2",
            "",
            f'[tenants."{PARTIAL[0]}"]',
            "seed = 302",
            "default_size = 2",
            'faults = [{ kind = "status", status = 403, code = "Forbidden", '
            f'policy_type = "{FORBIDDEN_TYPE}" }}]',
            "",
        ]
    )


def _by_partition(
    dimensions: list[dict[str, Any]], statuses: dict[str, Any], kinds: tuple[str, ...]
) -> dict[str, str]:
    """{partition key: status} from the UI's two-dimensional status ranges; a later kind in
    `kinds` wins over an earlier one for the same partition."""
    keys = {d["name"]: d["partitionKeys"] for d in dimensions}
    primary_name = statuses["primaryDimensionName"]
    primary = keys[primary_name]
    (secondary_name,) = set(keys) - {primary_name}
    by_partition: dict[str, str] = {}
    for block in statuses["ranges"]:
        first = primary.index(block["primaryDimStartKey"])
        last = primary.index(block["primaryDimEndKey"])
        for kind in kinds:
            for secondary_key in block["secondaryDim"][f"{kind}Partitions"]:
                for primary_key in primary[first : last + 1]:
                    key = dg.MultiPartitionKey(
                        {primary_name: primary_key, secondary_name: secondary_key}
                    )
                    by_partition[str(key)] = kind
    return by_partition


def partition_statuses(stack: DevStack, asset: str) -> dict[str, str]:
    """{partition key: status} as the asset's Partitions tab reads them over GraphQL; a failed
    partition that was materialized before counts as failed, as the tab colours it."""
    node = graphql(stack.dagster_url, PARTITION_STATUSES, {"path": [asset]})["assetNodeOrError"]
    assert node["__typename"] == "AssetNode", node
    statuses = node["assetPartitionStatuses"]
    assert statuses["__typename"] == "MultiPartitionStatuses", statuses
    return _by_partition(
        node["partitionKeysByDimension"], statuses, ("materialized", "materializing", "failed")
    )


def check_statuses(stack: DevStack, asset: str) -> dict[str, dict[str, str]]:
    """{check name: {partition key: status}} as the UI reads them over GraphQL."""
    node = graphql(stack.dagster_url, CHECK_STATUSES, {"path": [asset]})["assetNodeOrError"]
    assert node["__typename"] == "AssetNode", node
    checks = node["assetChecksOrError"]
    assert checks["__typename"] == "AssetChecks", checks
    result: dict[str, dict[str, str]] = {}
    for check in checks["checks"]:
        statuses = check["partitionStatuses"]
        assert statuses is not None, f"{check['name']} is not partitioned"
        assert statuses["__typename"] == "AssetCheckMultiPartitionStatuses", statuses
        result[check["name"]] = _by_partition(
            check["partitionKeysByDimension"],
            statuses,
            ("succeeded", "failed", "inProgress", "skipped", "executionFailed"),
        )
    return result


def _wait(condition: Callable[[], Any], what: str, stack: DevStack) -> Any:
    return wait_for(condition, what, stack, PHASE_TIMEOUT)


def test_failed_and_partial_syncs_are_visible_and_missing_follows_a_failure(
    tmp_path: Path, postgres_url: str, inventory_engine: Engine
) -> None:
    scenario = tmp_path / "scenario.toml"
    scenario.write_text(_scenario())
    selections = sorted(load_selections())
    stack = DevStack(
        state_dir=tmp_path,
        database_url=postgres_url,
        scenario=scenario,
        identity_rps=0,
        dequeue_interval_seconds=1,
    )
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(stack.stop)
        stack.start_simulator()
        # Partitions are keyed by the tenants' readable keys, the tables by their GUIDs.
        keys = {
            tenant_id: add_tenant(inventory_engine, tenant_id, name)[0].tenant_key
            for tenant_id, name in (CLEAN, PARTIAL)
        }
        stack.start_dagster()
        instance = cleanup.enter_context(dg.DagsterInstance.from_config(str(stack.home)))
        every_partition = {
            str(partition_key(keys[t], s)) for t, _ in (CLEAN, PARTIAL) for s in selections
        }

        def missing_materialized(key: str, after: float = 0.0) -> dg.EventLogRecord | None:
            records = instance.fetch_materializations(
                dg.AssetKey("inventory_missing"), limit=100
            ).records
            newest = [r for r in records if r.partition_key == key and r.timestamp > after]
            return newest[0] if newest else None

        # 1. First syncs by the sensor; automation follows with inventory_missing everywhere.
        _wait(
            lambda: all(missing_materialized(k) for k in every_partition),
            "first syncs and inventory_missing for every partition",
            stack,
        )
        partial_keys = {
            str(partition_key(keys[PARTIAL[0]], s))
            for s in selections
            if FORBIDDEN_TYPE in get_selection(s).policy_types
        }
        sensor_runs = instance.get_run_records(
            RunsFilter(tags={"dagster/sensor_name": "new_tenant_sensor"})
        )
        # A partial first sync is a failed run; the others succeed.
        assert {
            r.dagster_run.tags["dagster/partition"]: r.dagster_run.status for r in sensor_runs
        } == {
            k: DagsterRunStatus.FAILURE if k in partial_keys else DagsterRunStatus.SUCCESS
            for k in every_partition
        }

        # 2. Consent revoked for the clean tenant; one sync of it launched as the UI does.
        failing = str(partition_key(keys[CLEAN[0]], "all"))
        with SimulatorControl(stack.simulator_url) as control:
            control.set_faults(CLEAN[0], [{"kind": "token_error", "aadsts": 65001}])
        backfill_id = launch_backfill(stack, [failing], "after consent was revoked")

        def failed_run() -> dg.RunRecord | None:
            runs = instance.get_run_records(RunsFilter(tags={"dagster/backfill": backfill_id}))
            done = [r for r in runs if r.dagster_run.status == DagsterRunStatus.FAILURE]
            assert not [r for r in runs if r.dagster_run.status == DagsterRunStatus.SUCCESS]
            return done[0] if done else None

        run = _wait(failed_run, "the sync after the revoked consent to fail", stack)
        assert run.start_time is not None and run.end_time is not None
        # inventory_missing followed in the failed run itself: no automation tick needed.
        follow_up = missing_materialized(failing, after=run.start_time)
        assert follow_up is not None and follow_up.run_id == run.dagster_run.run_id
        metadata = {
            k: v.value
            for k, v in follow_up.asset_materialization.metadata.items()  # type: ignore[union-attr]
        }
        assert metadata["baseline_status"] == "failed" and metadata["confidence"] == "low"
        rows = missing_items_for(inventory_engine, CLEAN[0], get_selection("all").hash)
        assert rows and {(r["reason"], r["confidence"]) for r in rows} == {
            ("type_not_fetched", "low")
        }

        # 3. The failure is loud in the run's log: the client's own line and the ERROR check.
        logs = graphql(stack.dagster_url, RUN_LOGS, {"runId": run.dagster_run.run_id})["logsForRun"]
        messages = [e for e in logs["events"] if e.get("message")]
        assert any(
            "authentication" in e["message"] and "AADSTS65001" in e["message"] for e in messages
        ), messages
        assert SIMULATOR_CLIENT_SECRET not in str(logs) and "Bearer " not in str(logs)
        [step_failure] = [
            e for e in logs["events"] if e["__typename"] == "ExecutionStepFailureEvent"
        ]
        assert "failed (authentication_failed)" in step_failure["error"]["message"], step_failure

        # 4. Per-partition check results, as the asset page reads them.
        sync_checks = check_statuses(stack, "inventory_items")[SYNC_CHECK]
        assert partial_keys and failing not in partial_keys
        assert {k for k, v in sync_checks.items() if v == "failed"} == partial_keys | {failing}
        assert {k for k, v in sync_checks.items() if v == "succeeded"} == (
            every_partition - partial_keys - {failing}
        )
        missing_checks = check_statuses(stack, "inventory_missing")[MISSING_SHARE_CHECK]
        assert set(missing_checks) == every_partition
        assert set(missing_checks.values()) == {"succeeded"}

        # 5. The Partitions tab: partial and failed syncs are failed partitions, even the one
        # that was materialized before; clean ones are materialized. Missing data is
        # materialized everywhere (it followed every sync).
        items = partition_statuses(stack, "inventory_items")
        assert {k for k, v in items.items() if v == "failed"} == partial_keys | {failing}
        assert {k for k, v in items.items() if v == "materialized"} == (
            every_partition - partial_keys - {failing}
        )
        missing = partition_statuses(stack, "inventory_missing")
        assert missing == dict.fromkeys(every_partition, "materialized")
