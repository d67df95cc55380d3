"""End to end through the real stack: Graph simulator, `dg dev` (webserver, daemon, code
server), the run queue and the GraphQL API, with the inventory on PostgreSQL.

Tenants are registered; the sensor adds their partitions and requests the first syncs; the
automation sensor follows with `inventory_missing`; a partition backfill is launched through
GraphQL. The run records then prove the limits of the repository's own `dagster.yaml`.
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster import DagsterRunStatus, RunRecord, RunsFilter
from sqlalchemy import Engine, select

from inventory_pipelines.assets import GRAPH_POOL
from inventory_pipelines.core.schema import items as items_table
from inventory_pipelines.core.schema import sync_runs
from inventory_pipelines.core.selection import load_selections
from inventory_pipelines.core.tenants import add_tenant
from inventory_pipelines.devstack import DevStack, graphql
from inventory_pipelines.graph.sync import DEFAULT_TYPE_CONCURRENCY
from inventory_pipelines.partitions import TENANT_DIMENSION, partition_key
from inventory_pipelines.run_tags import TENANT_ID_TAG, TENANT_KEY_TAG, TENANT_NAME_TAG
from inventory_pipelines.simulator import SimulatorControl
from inventory_pipelines_tests.stack_helpers import inventory_engine, launch_backfill

__all__ = ["inventory_engine"]  # fixture

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

REPO = Path(__file__).resolve().parents[1]
TENANT_TAG = f"dagster/partition/{TENANT_DIMENSION}"
TENANTS = {
    "0e2e0000-0000-4000-8000-00000000000a": "Adatum",
    "0e2e0000-0000-4000-8000-00000000000b": "Bellows",
}
KEYS = {  # tenant keys name the partitions
    "0e2e0000-0000-4000-8000-00000000000a": "adatum",
    "0e2e0000-0000-4000-8000-00000000000b": "bellows",
}
# The sensor requests selections in name order and the queue is FIFO per tenant: these two
# sync early, so automation has handled them by the time the first syncs are done.
BACKFILL_SELECTIONS = ("apps", "compliance")
LATENCY_MS = 120
PRIORITY_TAG = "dagster/priority"
BACKFILL_PRIORITY = "10"
# 100-145 s on the quiet 2-core machine, up to 240 s beside the rest of the suite; every wait
# is bounded, the whole test too.
PHASE_TIMEOUT = 300.0
TEST_TIMEOUT = 600.0

BACKFILL_STATUS = """
query($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status numPartitions }
    ... on PythonError { message }
  }
}
"""


def _scenario() -> str:
    """Small tenants (settings catalog pages by 100, so several pages) behind a slow Graph.

    The rendezvous holds the first Graph request until both tenants have one waiting: the
    sensor queues both tenants' first syncs together, so runs of different tenants overlap
    however loaded the machine is, unless the queue refuses to run them side by side (then
    the rendezvous times out and the overlap assertion fails, as it should)."""
    lines = []
    for index, tenant_id in enumerate(TENANTS):
        lines += [
            f'[tenants."{tenant_id}"]',
            f"seed = {100 + index}",
            "default_size = 2",
            "sizes = { settings_catalog_policies = 600, compliance_policies = 7 }",
            "",
        ]
    lines += [
        '[tenants."*"]',
        "faults = [",
        f'  {{ kind = "latency", ms = {LATENCY_MS} }},',
        f'  {{ kind = "rendezvous", tenants = {len(TENANTS)}, timeout_ms = 90000 }},',
        "]",
        "",
    ]
    return "\n".join(lines)


def _shipped_limits() -> dict[str, int]:
    """The limits from the repository's dagster.yaml, the file the test instance copies."""
    config = yaml.safe_load((REPO / "dagster.yaml").read_text())
    concurrency = config["concurrency"]
    (tenant_limit,) = [
        limit
        for limit in concurrency["runs"]["tag_concurrency_limits"]
        if limit["key"] == TENANT_TAG and limit["value"] == {"applyLimitPerUniqueValue": True}
    ]
    return {
        "max_concurrent_runs": concurrency["runs"]["max_concurrent_runs"],
        "per_tenant": tenant_limit["limit"],
        "pool": concurrency["pools"]["default_limit"],
    }


def max_overlap(intervals: Iterable[tuple[float, float]]) -> int:
    """Most intervals open at one instant; an end at the same instant as a start comes first."""
    spans = list(intervals)
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    open_now = peak = 0
    for _, delta in events:
        open_now += delta
        peak = max(peak, open_now)
    return peak


@pytest.mark.parametrize(
    ("intervals", "expected"),
    [
        ([], 0),
        ([(0, 1), (1, 2), (2, 3)], 1),  # back to back is not overlap
        ([(0, 10), (1, 2), (3, 4)], 2),
        ([(0, 5), (1, 6), (2, 7), (6, 8)], 3),
    ],
)
def test_max_overlap(intervals: list[tuple[float, float]], expected: int) -> None:
    assert max_overlap(intervals) == expected
    assert max_overlap(iter(intervals)) == expected


def _interval(record: RunRecord, now: float) -> tuple[float, float]:
    """When the run executed; a run still going when the records were read is open until then."""
    assert record.start_time is not None, record.dagster_run
    return record.start_time, record.end_time or now


def _wait(condition: Callable[[], bool], what: str, stack: DevStack, test_deadline: float) -> None:
    """Poll `condition` for at most PHASE_TIMEOUT, and never past the test's deadline."""
    timeout = min(PHASE_TIMEOUT, test_deadline - time.monotonic())
    deadline = time.monotonic() + timeout
    while not condition():
        stack.check_alive()
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(1.0)


def _failed_runs(records: Iterable[RunRecord]) -> list[str]:
    bad = {DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
    return [
        f"{r.dagster_run.run_id} {r.dagster_run.tags.get('dagster/partition')}: "
        f"{r.dagster_run.status.value}"
        for r in records
        if r.dagster_run.status in bad
    ]


def _runs(instance: dg.DagsterInstance, **tags: str) -> list[RunRecord]:
    return list(instance.get_run_records(filters=RunsFilter(tags=tags) if tags else None))


def test_sensor_backfill_automation_and_limits_through_the_real_stack(
    tmp_path: Path, postgres_url: str, inventory_engine: Engine
) -> None:
    began = time.monotonic()
    test_deadline = began + TEST_TIMEOUT
    limits = _shipped_limits()
    scenario = tmp_path / "scenario.toml"
    scenario.write_text(_scenario())
    selections = sorted(load_selections())
    first_partitions = {str(partition_key(k, s)) for k in KEYS.values() for s in selections}
    backfill_partitions = sorted(
        str(partition_key(k, s)) for k in KEYS.values() for s in BACKFILL_SELECTIONS
    )

    stack = DevStack(
        state_dir=tmp_path,
        database_url=postgres_url,
        scenario=scenario,
        identity_rps=0,
        # The shipped dagster.yaml plus a 1 s queue poll (Dagster's default is 5 s) for a
        # shorter test; the limits under test are the shipped ones, untouched.
        dequeue_interval_seconds=1,
    )
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(stack.stop)  # runs last, also on failure
        stack.start_simulator()
        for tenant_id, name in TENANTS.items():
            add_tenant(inventory_engine, tenant_id, name, key=KEYS[tenant_id])
        stack.start_dagster()
        instance = cleanup.enter_context(dg.DagsterInstance.from_config(str(stack.home)))
        timings = {"stack_ready": time.monotonic() - began}

        # 1. The sensor adds the partitions and requests one first sync per (tenant, selection).
        def first_syncs_done() -> bool:
            records = _runs(instance, **{"dagster/sensor_name": "new_tenant_sensor"})
            assert not _failed_runs(records), _failed_runs(records)
            return len(records) >= len(first_partitions) and all(
                r.dagster_run.status == DagsterRunStatus.SUCCESS for r in records
            )

        _wait(first_syncs_done, "the sensor's first syncs", stack, test_deadline)
        # Automation has handled the partitions to backfill (a backfill in progress would hold
        # their inventory_missing back until it completes).
        _wait(
            lambda: set(backfill_partitions) <= _missing_partitions_by_automation(instance),
            "automation to materialize inventory_missing of the partitions to backfill",
            stack,
            test_deadline,
        )
        first_syncs = _runs(instance, **{"dagster/sensor_name": "new_tenant_sensor"})
        assert sorted(r.dagster_run.tags["dagster/partition"] for r in first_syncs) == sorted(
            first_partitions
        )
        assert {r.dagster_run.job_name for r in first_syncs} == {"inventory_sync_job"}
        timings["first_syncs"] = time.monotonic() - began

        # 2. A partition backfill of inventory_items through the GraphQL API, as the UI does.
        backfill_id = launch_backfill(
            stack,
            backfill_partitions,
            "end-to-end backfill",
            # Ahead of the automation runs still queued (the UI's launch dialog takes tags
            # too); limits apply all the same.
            tags={PRIORITY_TAG: BACKFILL_PRIORITY},
        )
        _wait(
            lambda: (
                _backfill_status(stack, backfill_id) not in {"REQUESTED", "CANCELING", "FAILING"}
            ),
            f"backfill {backfill_id} to finish",
            stack,
            test_deadline,
        )
        backfill_runs = _runs(instance, **{"dagster/backfill": backfill_id})
        assert _backfill_status(stack, backfill_id) == "COMPLETED_SUCCESS", _failed_runs(
            backfill_runs
        )
        assert sorted(r.dagster_run.tags["dagster/partition"] for r in backfill_runs) == (
            backfill_partitions
        )
        assert all(r.dagster_run.status == DagsterRunStatus.SUCCESS for r in backfill_runs)
        assert all(r.dagster_run.tags[PRIORITY_TAG] == BACKFILL_PRIORITY for r in backfill_runs)
        # Backfill runs carry only the partition; the asset tagged them with the tenant.
        assert all(
            r.dagster_run.tags[TENANT_KEY_TAG] == r.dagster_run.tags[TENANT_TAG]
            for r in backfill_runs
        )
        assert all(
            r.dagster_run.asset_selection == {dg.AssetKey("inventory_items")} for r in backfill_runs
        )
        timings["backfill"] = time.monotonic() - began

        # 3. Automation materialized inventory_missing for every synced partition.
        _wait(
            lambda: first_partitions <= _missing_partitions_by_automation(instance),
            "inventory_missing to be materialized by automation for every partition",
            stack,
            test_deadline,
        )

        # 4. Inventory equals the simulator's ground truth for every synced (tenant, type).
        with SimulatorControl(stack.simulator_url) as control:
            _assert_inventory_matches_ground_truth(inventory_engine, control, selections)
            counters = control.counters()
            (rendezvous,) = [f for f in control.faults("*") if f["kind"] == "rendezvous"]
        _assert_sync_runs_link_to_dagster_runs(inventory_engine, instance)
        records, records_read_at = _runs(instance), time.time()
    timings["total"] = time.monotonic() - began

    # 5. The limits of the shipped dagster.yaml held, and runs did overlap.
    assert not _failed_runs(records)
    started = [r for r in records if r.start_time is not None]
    overall = max_overlap(_interval(r, records_read_at) for r in started)
    by_tenant: dict[str, list[RunRecord]] = defaultdict(list)
    for record in started:
        tenant = record.dagster_run.tags.get(TENANT_TAG)
        if tenant is not None:  # inventory_coverage runs span every tenant
            by_tenant[tenant].append(record)
    per_tenant = {
        tenant: max_overlap(_interval(r, records_read_at) for r in runs)
        for tenant, runs in by_tenant.items()
    }
    graph_runs = [r for r in started if dg.AssetKey("inventory_items") in _assets_of(r)]
    in_pool = max_overlap(_interval(r, records_read_at) for r in graph_runs)
    print(
        f"end-to-end: {len(records)} runs, max overlap {overall} overall, "
        f"{max(per_tenant.values())} per tenant, {in_pool} in pool {GRAPH_POOL}; "
        f"Graph max in flight per tenant {counters['max_in_flight']}; "
        + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items())
    )
    assert rendezvous["met"], f"runs of the two tenants never reached Graph together: {rendezvous}"
    assert set(per_tenant) == set(KEYS.values())
    assert max(per_tenant.values()) <= limits["per_tenant"], per_tenant
    assert overall <= limits["max_concurrent_runs"]
    assert in_pool <= limits["pool"]
    # Overlap really happened, so the assertions above could have failed.
    assert overall >= 2, "runs never overlapped: the limits were not exercised"
    # Seen from Graph: one run per tenant at a time means at most type_concurrency requests.
    for tenant_id in TENANTS:
        assert 1 <= counters["max_in_flight"][tenant_id] <= DEFAULT_TYPE_CONCURRENCY


def _assets_of(record: RunRecord) -> frozenset[dg.AssetKey]:
    run = record.dagster_run
    if run.asset_selection is not None:
        return frozenset(run.asset_selection)
    # The sync job's runs carry no explicit selection: the job is inventory_items only.
    assert run.job_name == "inventory_sync_job", run.job_name
    return frozenset({dg.AssetKey("inventory_items")})


def _backfill_status(stack: DevStack, backfill_id: str) -> str:
    backfill = graphql(stack.dagster_url, BACKFILL_STATUS, {"id": backfill_id})[
        "partitionBackfillOrError"
    ]
    assert backfill["__typename"] == "PartitionBackfill", backfill
    return str(backfill["status"])


def _missing_partitions_by_automation(instance: dg.DagsterInstance) -> set[str]:
    """Partitions of inventory_missing materialized by runs of the automation sensor."""
    result = instance.fetch_materializations(dg.AssetKey("inventory_missing"), limit=1000)
    partitions: set[str] = set()
    for event in result.records:
        run = instance.get_run_by_id(event.run_id)
        assert run is not None
        assert run.tags.get("dagster/sensor_name") == "inventory_automation_sensor", run.tags
        assert run.tags.get("dagster/from_automation_condition") == "true", run.tags
        assert event.partition_key is not None
        partitions.add(event.partition_key)
    return partitions


def _assert_inventory_matches_ground_truth(
    engine: Engine, control: SimulatorControl, selections: Iterable[str]
) -> None:
    loaded = load_selections()
    policy_types = sorted({t for name in selections for t in loaded[name].policy_types})
    with engine.connect() as conn:
        rows = conn.execute(
            select(items_table.c.tenant_id, items_table.c.policy_type, items_table.c.external_id)
        ).all()
    stored: dict[tuple[str, str], set[str]] = defaultdict(set)
    for tenant_id, policy_type, external_id in rows:
        stored[(tenant_id, policy_type)].add(external_id)
    assert {tenant_id for tenant_id, _ in stored} == set(TENANTS)
    for tenant_id in TENANTS:
        for policy_type in policy_types:
            truth = {item["id"] for item in control.items(tenant_id, policy_type)}
            assert stored.get((tenant_id, policy_type), set()) == truth, (tenant_id, policy_type)
    assert {policy_type for _, policy_type in stored} <= set(policy_types)


def _assert_sync_runs_link_to_dagster_runs(engine: Engine, instance: dg.DagsterInstance) -> None:
    """Every sync row was a successful sync (never `skipped`: no two runs of a partition met)
    whose correlation id is the Dagster run of that very partition."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                sync_runs.c.tenant_id,
                sync_runs.c.selection_name,
                sync_runs.c.status,
                sync_runs.c.correlation_id,
            )
        ).all()
    assert rows
    for tenant_id, selection_name, status, correlation_id in rows:
        assert status == "success", (tenant_id, selection_name, status)
        run = instance.get_run_by_id(correlation_id)
        assert run is not None, correlation_id
        assert run.tags["dagster/partition"] == str(partition_key(KEYS[tenant_id], selection_name))
        assert run.tags[TENANT_ID_TAG] == tenant_id and run.tags[TENANT_KEY_TAG] == KEYS[tenant_id]
        assert run.tags[TENANT_NAME_TAG] == TENANTS[tenant_id]
