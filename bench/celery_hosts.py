"""Throughput of the run queue on Dagster's Celery run launcher (`dagster.celery.yaml`) with 1
and with 2 worker hosts, and the overhead of one run from launch to success.

Each configuration gets a fresh stack: `dg dev` (daemon, webserver, code server) in the
root namespace on a fresh PostgreSQL instance database, the Graph simulator, and N
`dagster-celery` workers, each in its own network namespace (`inventory_pipelines.celery_stack`,
the same set-up as the scale-out test). Tenants have no items and sync the `compliance`
selection, as in `bench/orchestration.py`, so what is measured is orchestration, not Graph.
Per configuration: one warm-up run (first run of a fresh worker process), one measured single
run (launch → success), then a backfill over all tenants through the run queue with the
shipped limits (8 runs, 1 per tenant, pool 6): runs per minute from the first run created to
the last finished. `--latency-ms` adds a second kind of tenant whose every Graph request waits,
so that runs wait on Graph as real ones do and the workers' slots, not the CPU, bound
throughput.

Usage (root, RabbitMQ on 127.0.0.1:5672, PostgreSQL at INVENTORY_BENCH_POSTGRES_URL or
postgres@127.0.0.1:5432):

    python -m bench.celery_hosts --tenants 40 --workers 1,2 --latency-ms 0,3000,10000 --repeat 2 \
        --out bench/celery_hosts.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url

from bench.orchestration import (
    ADD_PARTITION,
    SELECTION,
    _launch_and_wait,
    _launch_backfill,
    _stop_sensors,
    _tenant_ids,
    _tenant_key,
    _wait_backfill_runs,
)
from bench.stack import admin_url, autocommit_engine
from inventory_pipelines.celery_stack import (
    CeleryDevStack,
    CeleryHosts,
    broker_problem,
    netns_problem,
)
from inventory_pipelines.core.database import create_inventory_engine
from inventory_pipelines.core.migrations import upgrade
from inventory_pipelines.core.tenants import add_tenant
from inventory_pipelines.devstack import free_port, graphql
from inventory_pipelines.partitions import partition_key

_SUCCEEDED = re.compile(r"Task execute_job\[[0-9a-f-]+\] succeeded")


def _create_database(prefix: str) -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    engine = autocommit_engine(admin_url())
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return make_url(admin_url()).set(database=name).render_as_string(hide_password=False)


def _drop_database(url: str) -> None:
    engine = autocommit_engine(admin_url())
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    engine.dispose()


def measure(
    tenants: int, workers: int, concurrency: int, latency_ms: int, timeout: float
) -> dict[str, Any]:
    """A fresh stack with `workers` worker hosts: a warm-up run, one run, then a backfill.
    With `latency_ms`, every Graph request of every tenant waits that long first."""
    instance_url = _create_database("inventory_bench_instance")
    inventory_url = _create_database("inventory_bench_celery")
    try:
        with tempfile.TemporaryDirectory(prefix="inventory_bench_celery_") as raw:
            state = Path(raw)
            engine = create_inventory_engine(inventory_url)
            upgrade(engine)
            ids = _tenant_ids(tenants + 2)
            scenario = state / "scenario.toml"
            faults = f'faults = [{{ kind = "latency", ms = {latency_ms} }}]\n' if latency_ms else ""
            scenario.write_text(
                "".join(f'[tenants."{t}"]\ndefault_size = 0\n{faults}\n' for t in ids),
                encoding="utf-8",
            )
            with CeleryHosts(
                state_dir=state,
                instance_database_url=instance_url,
                inventory_database_url=inventory_url,
                simulator_port=free_port(),
                host_count=workers,
                worker_concurrency=concurrency,
            ) as hosts:
                stack = CeleryDevStack(
                    state_dir=state,
                    database_url=inventory_url,
                    scenario=scenario,
                    identity_rps=0,
                    simulator_port=hosts.simulator_port,
                    dagster_yaml=hosts.root_instance_yaml(),
                    extra_environment=hosts.root_environment(),
                )
                try:
                    stack.start_simulator()
                    for host in hosts.hosts:
                        hosts.start_worker(host)
                    stack.start_dagster()
                    hosts.wait_for_workers()
                    url = stack.dagster_url
                    _stop_sensors(url)
                    for tenant_id in ids:
                        add_tenant(
                            engine, tenant_id, f"Bench {tenant_id[-4:]}", key=_tenant_key(tenant_id)
                        )
                    engine.dispose()
                    graphql(url, ADD_PARTITION, {"name": "selection", "key": SELECTION})
                    for tenant_id in ids:
                        graphql(
                            url, ADD_PARTITION, {"name": "tenant", "key": _tenant_key(tenant_id)}
                        )

                    cold_started = time.monotonic()
                    _launch_and_wait(url, _tenant_key(ids[0]), timeout)
                    cold_wall = time.monotonic() - cold_started
                    single = _launch_and_wait(url, _tenant_key(ids[1]), timeout)

                    partitions = [str(partition_key(_tenant_key(t), SELECTION)) for t in ids[2:]]
                    started = time.monotonic()
                    load_before = os.getloadavg()[0]
                    backfill = _launch_backfill(url, partitions, "bench celery")
                    runs = _wait_backfill_runs(url, backfill, len(partitions), timeout)
                    wall = time.monotonic() - started
                    load_after = os.getloadavg()[0]
                    per_worker = {
                        w.node_name: len(_SUCCEEDED.findall(w.service.log_path.read_text()))
                        for w in hosts.workers
                    }
                finally:
                    stack.stop()
    finally:
        _drop_database(instance_url)
        _drop_database(inventory_url)
    first = min(r["creationTime"] for r in runs)
    last = max(r["endTime"] for r in runs)
    durations = sorted(r["endTime"] - r["startTime"] for r in runs)
    overheads = sorted(r["endTime"] - r["creationTime"] for r in runs)
    return {
        "workers": workers,
        "worker_concurrency": concurrency,
        "graph_latency_ms": latency_ms,
        "single_run_launch_to_success_seconds": round(
            single["endTime"] - single["creationTime"], 2
        ),
        "single_run_execution_seconds": round(single["endTime"] - single["startTime"], 2),
        "first_run_after_startup_wall_seconds": round(cold_wall, 2),
        "backfill_runs": len(runs),
        "backfill_successes": sum(1 for r in runs if r["status"] == "SUCCESS"),
        "backfill_wall_seconds": round(wall, 1),
        "runs_per_minute_first_to_last": round(len(runs) / ((last - first) / 60), 1),
        "run_execution_seconds_median": round(durations[len(durations) // 2], 2),
        "run_created_to_success_seconds_median": round(overheads[len(overheads) // 2], 2),
        "tasks_succeeded_per_worker": per_worker,
        "load_average_1min_before_after": [round(load_before, 2), round(load_after, 2)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tenants", type=int, default=40)
    parser.add_argument("--workers", default="1,2", help="worker host counts, comma-separated")
    parser.add_argument(
        "--concurrency", type=int, default=4, help="runs each worker executes at once"
    )
    parser.add_argument(
        "--latency-ms",
        default="0",
        help="Graph latency per request, comma-separated scenarios (0: answers at once)",
    )
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--out", type=Path, default=Path("bench/celery_hosts.json"))
    args = parser.parse_args()
    for problem in (netns_problem(), broker_problem()):
        if problem:
            parser.error(problem)
    counts = [int(part) for part in args.workers.split(",") if part.strip()]
    latencies = [int(part) for part in args.latency_ms.split(",") if part.strip()]
    results = [
        measure(args.tenants, count, args.concurrency, latency, args.timeout)
        for latency in latencies
        for _ in range(args.repeat)
        for count in counts
    ]
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
