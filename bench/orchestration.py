"""Orchestration overhead: what Dagster adds around a sync.

1. One queued run of a tenant with no items, from launch (GraphQL) to success.
2. A backfill of many small tenants through the run queue with the shipped limits, and again
   with the limits raised: runs per minute.

Usage: `python -m bench.orchestration --tenants 100 --raised-runs 16 --out bench/orchestration.json`
The sensors are stopped first so that only the measured runs use the queue.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from inventory_pipelines.core.database import create_inventory_engine
from inventory_pipelines.core.migrations import upgrade
from inventory_pipelines.core.tenants import add_tenant
from inventory_pipelines.devstack import CODE_LOCATION as LOCATION
from inventory_pipelines.devstack import (
    REPOSITORY,
    SHIPPED_DAGSTER_YAML,
    DevStack,
    graphql,
    launch_partition_run,
)
from inventory_pipelines.partitions import partition_key

SELECTION = "compliance"

SENSOR_QUERY = """
query($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) { __typename ... on Sensor { id } }
}
"""
STOP_SENSOR = """
mutation($id: String!) { stopSensor(id: $id) { __typename } }
"""
LAUNCH_BACKFILL = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}
"""
RUN_QUERY = """
query($id: ID!) {
  runOrError(runId: $id) { ... on Run { status creationTime startTime endTime } }
}
"""
RUNS_QUERY = """
query($filter: RunsFilter!) {
  runsOrError(filter: $filter) {
    ... on Runs { results { runId status creationTime startTime endTime } }
  }
}
"""


def _tenant_ids(count: int) -> list[str]:
    return [str(uuid.UUID(int=0x0B0B_0000_0000_4000_8000_000000000000 + i)) for i in range(count)]


def _tenant_key(tenant_id: str) -> str:
    """The tenant's key, which names its partitions."""
    return f"bench-{tenant_id[-4:]}"


def _stop_sensors(url: str) -> None:
    for name in ("new_tenant_sensor", "inventory_automation_sensor"):
        selector = {
            "repositoryLocationName": LOCATION,
            "repositoryName": REPOSITORY,
            "sensorName": name,
        }
        sensor = graphql(url, SENSOR_QUERY, {"selector": selector})["sensorOrError"]
        graphql(url, STOP_SENSOR, {"id": sensor["id"]})


def _runs(url: str, tags: list[dict[str, str]]) -> list[dict[str, Any]]:
    result = graphql(url, RUNS_QUERY, {"filter": {"tags": tags}})["runsOrError"]
    return list(result.get("results", []))


def _launch_backfill(url: str, partitions: list[str], title: str) -> str:
    launched = graphql(
        url,
        LAUNCH_BACKFILL,
        {
            "params": {
                "assetSelection": [{"path": ["inventory_items"]}],
                "partitionNames": partitions,
                "title": title,
            }
        },
    )["launchPartitionBackfill"]
    if launched["__typename"] != "LaunchBackfillSuccess":
        raise RuntimeError(f"backfill not launched: {launched}")
    return str(launched["backfillId"])


def _launch_and_wait(url: str, tenant_key: str, timeout: float) -> dict[str, Any]:
    """Launch one partition run straight into the run queue (as the UI's Materialize does)."""
    run_id = launch_partition_run(url, tenant_key, SELECTION)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = graphql(url, RUN_QUERY, {"id": run_id})["runOrError"]
        if run["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
            if run["status"] != "SUCCESS":
                raise RuntimeError(f"run {run_id} ended {run['status']}")
            return dict(run)
        time.sleep(0.2)
    raise TimeoutError(f"run {run_id} did not finish within {timeout:.0f}s")


def _wait_backfill_runs(url: str, backfill_id: str, expected: int, timeout: float) -> list[dict]:
    deadline = time.monotonic() + timeout
    tags = [{"key": "dagster/backfill", "value": backfill_id}]
    while time.monotonic() < deadline:
        runs = _runs(url, tags)
        done = [r for r in runs if r["status"] in ("SUCCESS", "FAILURE", "CANCELED")]
        if len(done) >= expected:
            return runs
        time.sleep(1.0)
    raise TimeoutError(f"backfill {backfill_id} did not finish within {timeout:.0f}s")


def _dagster_yaml(directory: Path, max_runs: int | None) -> Path:
    config = yaml.safe_load(SHIPPED_DAGSTER_YAML.read_text())
    if max_runs is not None:
        config["concurrency"]["runs"]["max_concurrent_runs"] = max_runs
        config["concurrency"]["pools"]["default_limit"] = max_runs
    path = directory / f"dagster-{max_runs or 'shipped'}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def measure(tenants: int, max_runs: int | None, timeout: float) -> dict[str, Any]:
    """Start a fresh stack, run one empty-tenant run, then a backfill over `tenants`."""
    with tempfile.TemporaryDirectory(prefix="inventory_bench_orch_") as raw:
        state = Path(raw)
        url = f"sqlite:///{state / 'inventory.db'}"
        engine = create_inventory_engine(url)
        upgrade(engine)
        ids = _tenant_ids(tenants + 2)
        scenario = state / "scenario.toml"
        scenario.write_text(
            "".join(f'[tenants."{t}"]\ndefault_size = 0\n\n' for t in ids), encoding="utf-8"
        )
        limits_yaml = _dagster_yaml(state, max_runs)
        with DevStack(
            state_dir=state,
            database_url=url,
            scenario=scenario,
            dagster_yaml=limits_yaml,
            identity_rps=0,
        ) as stack:
            _stop_sensors(stack.dagster_url)
            # Registered only now: a running sensor would request first syncs of every
            # selection for each of them.
            for tenant_id in ids:
                add_tenant(engine, tenant_id, f"Bench {tenant_id[-4:]}", key=_tenant_key(tenant_id))
            engine.dispose()
            graphql(stack.dagster_url, ADD_PARTITION, {"name": "selection", "key": SELECTION})
            for tenant_id in ids:
                graphql(
                    stack.dagster_url,
                    ADD_PARTITION,
                    {"name": "tenant", "key": _tenant_key(tenant_id)},
                )

            cold_started = time.monotonic()
            _launch_and_wait(stack.dagster_url, _tenant_key(ids[0]), timeout)  # cold start
            cold_wall = time.monotonic() - cold_started
            single_started = time.monotonic()
            run = _launch_and_wait(stack.dagster_url, _tenant_key(ids[1]), timeout)
            single_wall = time.monotonic() - single_started
            single_run = run["endTime"] - run["creationTime"]
            single_exec = run["endTime"] - run["startTime"]

            partitions = [str(partition_key(_tenant_key(t), SELECTION)) for t in ids[2:]]
            started = time.monotonic()
            backfill = _launch_backfill(stack.dagster_url, partitions, "bench")
            runs = _wait_backfill_runs(stack.dagster_url, backfill, len(partitions), timeout)
            wall = time.monotonic() - started
    first = min(r["creationTime"] for r in runs)
    last = max(r["endTime"] for r in runs)
    durations = sorted(r["endTime"] - r["startTime"] for r in runs)
    return {
        "limits": "shipped" if max_runs is None else f"max_concurrent_runs={max_runs}",
        "single_run_launch_to_success_seconds": round(single_run, 2),
        "single_run_execution_seconds": round(single_exec, 2),
        "single_run_wall_seconds": round(single_wall, 2),
        "first_run_after_startup_wall_seconds": round(cold_wall, 2),
        "backfill_runs": len(runs),
        "backfill_successes": sum(1 for r in runs if r["status"] == "SUCCESS"),
        "backfill_wall_seconds": round(wall, 1),
        "runs_per_minute_first_to_last": round(len(runs) / ((last - first) / 60), 1),
        "run_execution_seconds_median": round(durations[len(durations) // 2], 2),
    }


ADD_PARTITION = """
mutation($name: String!, $key: String!) {
  addDynamicPartition(partitionsDefName: $name, partitionKey: $key,
    repositorySelector: {repositoryLocationName: "inventory_pipelines.definitions",
                         repositoryName: "__repository__"}) { __typename }
}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--raised-runs", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--out", type=Path, default=Path("bench/orchestration.json"))
    args = parser.parse_args()
    results = [measure(args.tenants, None, args.timeout)]
    if args.raised_runs:
        results.append(measure(args.tenants, args.raised_runs, args.timeout))
    args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
