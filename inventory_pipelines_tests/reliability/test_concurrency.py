"""Many syncs at once, each in its own process like Dagster run workers, on one database.

- Many tenants at once (8 on PostgreSQL, 4 on SQLite as in the demo), two rounds with Graph
  changes in between, while a reader polls counts and recomputes missing items: every run
  `success`, no deadlock (all finish within a bound), no "database is locked", no lost update
  (each tenant's inventory equals its ground truth, with the right inserted/updated counts).
- One partition twice at once outside the run queue: exactly one sync and one `skipped` run
  (`lock_held`, naming the other run as holder).
"""

from __future__ import annotations

import threading
import time
from contextlib import ExitStack
from typing import Any

from sqlalchemy import Engine

from inventory_pipelines.core.database import create_inventory_engine
from inventory_pipelines.core.missing import compute_missing
from inventory_pipelines.core.selection import Selection, validate_payload
from inventory_pipelines.core.store import InventoryStore
from inventory_pipelines.core.tenants import add_tenant
from inventory_pipelines.simulator import SimulatorServer
from inventory_pipelines_tests.reliability.ground_truth import (
    duplicate_rows,
    expected_rows,
    running_runs,
    runs_of,
    stored_rows,
)
from inventory_pipelines_tests.reliability.sync_process import SyncProcess, SyncProcessConfig

SIZES = {
    "settings_catalog_policies": 60,
    "compliance_policies": 40,
    "mobile_apps": 1200,
    "scope_tags": 5,
}
TYPES = list(SIZES)
SELECTION = Selection("concurrency", validate_payload({"policy_types": TYPES}))
LATENCY_MS = 25
# Every process must be done within this after the go (a deadlock or a lock wait that never
# ends shows up here, not as a hung test).
ROUND_TIMEOUT = 60.0
ADDED, MODIFIED, DELETED = 4, 3, 2


def tenant_ids(count: int) -> list[str]:
    return [f"c0c0c0c0-0000-4000-8000-{index:012d}" for index in range(1, count + 1)]


def config(database_url: str, sim: SimulatorServer, tenant_id: str, **overrides: Any) -> Any:
    settings: dict[str, Any] = {
        "database_url": database_url,
        "graph_url": sim.base_url,
        "tenant_id": tenant_id,
        "policy_types": TYPES,
        "selection_name": SELECTION.name,
        "batch_size": 300,
        "lease_seconds": 60.0,  # no takeover between live runs, however loaded the machine
        "heartbeat_seconds": 1.0,
        "wait_for_go": True,
    }
    settings.update(overrides)
    return SyncProcessConfig(**settings)


class Reader(threading.Thread):
    """Polls what operators and the missing asset read while syncs write; counts failures."""

    def __init__(self, database_url: str, tenants: list[str]) -> None:
        super().__init__(daemon=True)
        self.engine = create_inventory_engine(database_url)
        self.store = InventoryStore(self.engine)
        self.tenants = tenants
        self.stop = threading.Event()
        self.polls = 0
        self.errors: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            for tenant_id in self.tenants:
                try:
                    self.store.item_count(tenant_id)
                    compute_missing(self.engine, tenant_id, SELECTION)
                    self.polls += 1
                except Exception as exc:  # every failure is reported by the test
                    self.errors.append(f"{type(exc).__name__}: {exc}")
            time.sleep(0.02)

    def close(self) -> None:
        self.stop.set()
        self.join(30)
        self.engine.dispose()


def run_round(processes: list[SyncProcess], number: int) -> tuple[dict[str, dict[str, Any]], float]:
    """Go all at once; every tenant's `done` of this round, by tenant, and the wall time."""
    began = time.monotonic()
    for process in processes:
        process.go()
    done: dict[str, dict[str, Any]] = {}
    for process in processes:
        for _ in process.config.tenant_ids or [process.config.tenant_id]:
            remaining = ROUND_TIMEOUT - (time.monotonic() - began)
            event = process.wait_for("done", timeout=max(remaining, 0.1))
            assert event["round"] == number, event
            done[event["tenant_id"]] = event
    return done, time.monotonic() - began


def test_many_tenants_at_once_finish_with_ground_truth(
    engine: Engine, database_url: str, sim: SimulatorServer
) -> None:
    postgres = engine.dialect.name == "postgresql"
    # PostgreSQL: 8 tenants, two per process (like 8 run workers, at half the start-up cost);
    # SQLite: the demo's shape, 4 processes with one tenant each.
    tenants = tenant_ids(8 if postgres else 4)
    per_process = 2 if postgres else 1
    for index, tenant_id in enumerate(tenants):
        add_tenant(engine, tenant_id, f"Tenant {index}")
        sim.control.configure_tenant(tenant_id, seed=500 + index, sizes=SIZES)
    sim.control.set_faults("*", [{"kind": "latency", "ms": LATENCY_MS}])

    with ExitStack() as stack:
        processes = []
        for start in range(0, len(tenants), per_process):
            group = tenants[start : start + per_process]
            process = SyncProcess(config(database_url, sim, group[0], tenant_ids=group, rounds=2))
            stack.callback(process.close)
            processes.append(process)
        for process in processes:
            process.wait_for("ready", timeout=90)
        reader = Reader(database_url, tenants)
        reader.start()
        stack.callback(reader.close)

        first, first_seconds = run_round(processes, 1)
        total = sum(SIZES.values())
        assert set(first) == set(tenants)
        for tenant_id, done in first.items():
            assert done["status"] == "success", (tenant_id, done)
            assert done["items_inserted"] == done["items_observed"] == total, done
            assert stored_rows(engine, tenant_id) == expected_rows(sim, tenant_id, TYPES)

        # Graph changes per tenant; the second round must record every one of them.
        deleted: dict[str, set[tuple[str, str]]] = {}
        for tenant_id in tenants:
            sim.control.add_items(tenant_id, "settings_catalog_policies", ADDED)
            apps = [item["id"] for item in sim.control.items(tenant_id, "mobile_apps")]
            sim.control.modify_items(tenant_id, "mobile_apps", apps[:MODIFIED])
            gone = [item["id"] for item in sim.control.items(tenant_id, "compliance_policies")]
            sim.control.delete_items(tenant_id, "compliance_policies", gone[:DELETED])
            deleted[tenant_id] = {("compliance_policies", i) for i in gone[:DELETED]}

        second, second_seconds = run_round(processes, 2)
        for process in processes:
            process.result(timeout=30)
            # Not even a heartbeat (whose failures are only logged) met a locked database.
            assert "database is locked" not in process.stderr, process.stderr[-2000:]
            assert "heartbeat of sync run" not in process.stderr, process.stderr[-2000:]
        reader.close()

    assert set(second) == set(tenants)
    for tenant_id, done in second.items():
        assert done["status"] == "success", (tenant_id, done)
        assert (done["items_inserted"], done["items_updated"]) == (ADDED, MODIFIED), done
        assert done["items_observed"] == total + ADDED - DELETED
        truth = expected_rows(sim, tenant_id, TYPES)
        # Seen by round 2: exactly Graph as it is now; the deleted items keep their old rows.
        assert stored_rows(engine, tenant_id, done["run_id"]) == truth
        assert set(stored_rows(engine, tenant_id)) == set(truth) | deleted[tenant_id]
        assert [r.status for r in runs_of(engine, tenant_id)] == ["success", "success"]
    assert duplicate_rows(engine) == 0
    assert running_runs(engine) == []
    assert reader.errors == [], reader.errors[:5]
    assert reader.polls > 0
    print(
        f"\n{len(tenants)} tenants in {len(processes)} processes on {engine.dialect.name}: "
        f"round 1 {first_seconds:.1f}s, round 2 {second_seconds:.1f}s, slowest sync "
        f"{max(d['seconds'] for d in [*first.values(), *second.values()]):.1f}s, "
        f"reader polls {reader.polls}"
    )


def test_same_partition_twice_at_once_gives_one_sync_and_one_skip(
    engine: Engine, database_url: str, sim: SimulatorServer
) -> None:
    (tenant_id,) = tenant_ids(1)
    add_tenant(engine, tenant_id, "Twice")
    sim.control.configure_tenant(tenant_id, seed=77, sizes=SIZES)
    # Slow pages keep the first sync holding the lock for seconds, far longer than the skew
    # between the two processes starting.
    sim.control.set_faults(tenant_id, [{"kind": "latency", "ms": 400}])
    with ExitStack() as stack:
        processes = []
        for _ in range(2):
            process = SyncProcess(config(database_url, sim, tenant_id))
            stack.callback(process.close)
            processes.append(process)
        for process in processes:
            process.wait_for("ready", timeout=90)
        for process in processes:
            process.go()
        outcomes = sorted(
            (p.result(timeout=ROUND_TIMEOUT) for p in processes), key=lambda d: d["status"]
        )
    skipped, synced = outcomes
    assert (skipped["status"], synced["status"]) == ("skipped", "success")
    assert skipped["error_codes"] == ["lock_held"]
    assert skipped["holder_run_id"] == synced["run_id"]
    runs = {r.id: r for r in runs_of(engine, tenant_id)}
    assert set(runs) == {skipped["run_id"], synced["run_id"]}
    assert runs[skipped["run_id"]].status == "skipped"
    assert runs[skipped["run_id"]].finished_at < runs[synced["run_id"]].finished_at
    assert stored_rows(engine, tenant_id, synced["run_id"]) == expected_rows(sim, tenant_id, TYPES)
    assert running_runs(engine) == []
