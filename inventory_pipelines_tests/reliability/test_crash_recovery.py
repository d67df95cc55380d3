"""SIGKILL a sync process at chosen points, then prove the partition recovers cleanly.

Each kill lands at one point of a real sync in a child process (short lease, fast
heartbeat): before the lock, inside the lock's transaction, while a page is in flight, inside
an upsert's transaction, before and inside the closing transaction, and at random moments.
After every kill: at most one `running` run, the killed run's items form whole batches (never
half a batch), and the next sync of the partition succeeds within the lease (first `skipped`
with `lock_held` while the dead run's heartbeat is fresh, then taking over and closing the dead
run `failed` with `run_abandoned`), leaving the inventory equal to the simulator's ground
truth.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from inventory_pipelines.core.policy_types import get_policy_type
from inventory_pipelines.core.selection import Selection, validate_payload
from inventory_pipelines.core.store import InventoryStore
from inventory_pipelines.core.tenants import add_tenant
from inventory_pipelines.graph.client import GraphClient
from inventory_pipelines.graph.sync import SyncOptions, sync_partition
from inventory_pipelines.simulator import SimulatorServer
from inventory_pipelines.simulator.paging import learned_page_size
from inventory_pipelines_tests.reliability.ground_truth import (
    duplicate_rows,
    expected_rows,
    graph_client,
    runs_of,
    stored_rows,
)
from inventory_pipelines_tests.reliability.sync_process import SyncProcess, SyncProcessConfig

TENANT = "c4a5b6d7-e8f9-4a0b-9c1d-2e3f4a5b6c7d"
# Settings catalog pages by 25 (its `$top` limit here: several batches of 25), mobile apps by
# 999 (big batches whose upsert takes a while), scope tags in one small page.
SIZES = {"settings_catalog_policies": 125, "mobile_apps": 1400, "scope_tags": 4}
TYPES = list(SIZES)
SELECTION = Selection("reliability", validate_payload({"policy_types": TYPES}))
BATCH_SIZE = 25
LEASE_SECONDS = 0.75
HEARTBEAT_SECONDS = 0.15
LATENCY_MS = 60
CATALOG_MAX_TOP = 25
SEED = 20260127
# How late the recovering sync may succeed after the kill, beyond the lease: one sync, a poll
# interval and a loaded two-core machine.
RECOVERY_SLACK_SECONDS = 10.0


@dataclass
class Kill:
    # start, lock_commit, fetching, upsert_commit, anywhere, before_finish or finish_commit
    point: str
    delay: float = 0.0  # fetching/anywhere: seconds after the lock
    batch: int = 1  # upsert_commit: which upsert (1-based) to die in
    # Filled in as the kill happens:
    run_id: int | None = None
    run_status_after_kill: str | None = None
    requests_in_flight: int = 0
    batches_committed: int = 0
    killed_run_rows: dict[str, int] = field(default_factory=dict)
    killed_at: float | None = None
    skipped_before_recovery: int = 0
    recovered_after: float = 0.0


def kill_plan(seed: int) -> list[Kill]:
    """Eight kills: every point once (mid-batch twice); delays and batches from the seed."""
    rng = random.Random(seed)
    return [
        Kill("start"),
        Kill("lock_commit"),
        Kill("fetching", delay=rng.uniform(0.02, 0.3)),
        Kill("upsert_commit", batch=rng.randint(2, 4)),
        Kill("upsert_commit", batch=rng.randint(3, 6)),
        Kill("anywhere", delay=rng.uniform(0.0, 0.4)),
        Kill("before_finish"),
        Kill("finish_commit"),
    ]


@pytest.fixture
def client(sim: SimulatorServer) -> Iterator[GraphClient]:
    with graph_client(sim) as graph:
        yield graph


def page_size(policy_type: str) -> int:
    return learned_page_size(get_policy_type(policy_type), CATALOG_MAX_TOP)


def listings(sim: SimulatorServer) -> dict[str, list[dict[str, Any]]]:
    return {t: sim.control.items(TENANT, t) for t in TYPES}


def rows_of_run(engine: Engine, run_id: int) -> dict[str, set[str]]:
    by_type: dict[str, set[str]] = {t: set() for t in TYPES}
    for policy_type, external_id in stored_rows(engine, TENANT, run_id):
        by_type[policy_type].add(external_id)
    return by_type


def assert_whole_batches(
    engine: Engine, kill: Kill, listing: dict[str, list[dict[str, Any]]], events: list[Any]
) -> None:
    """The killed run's rows are whole pages of the listing (each page is one batch)."""
    assert kill.run_id is not None
    seen = rows_of_run(engine, kill.run_id)
    committed = [e for e in events if e["event"] == "batch"]
    kill.batches_committed = len(committed)
    for policy_type in TYPES:
        ids = [item["id"] for item in listing[policy_type]]
        size = page_size(policy_type)
        pages = [set(ids[i : i + size]) for i in range(0, len(ids), size)]
        stored = seen[policy_type]
        whole = [page for page in pages if page <= stored]
        assert all(page <= stored or not page & stored for page in pages), (
            f"{kill}: half a batch of {policy_type} is visible"
        )
        assert stored == set().union(*whole), f"{kill}: rows outside the listing"
        # Every batch the child reported committed is there.
        assert len(whole) >= sum(1 for e in committed if e["policy_type"] == policy_type)
        kill.killed_run_rows[policy_type] = len(stored)
    pause = next((e for e in events if e["event"] == "pause"), None)
    if pause is not None and pause["point"] == "upsert_commit":
        # The batch the process died in (merged, not committed) left nothing behind.
        assert not set(pause["ids"]) & seen[pause["policy_type"]], kill


def assert_inventory_is_truth(engine: Engine, sim: SimulatorServer, run_id: int) -> None:
    """Every row is a Graph item as it is now, last seen by the recovering run."""
    assert stored_rows(engine, TENANT) == expected_rows(sim, TENANT, TYPES)
    assert stored_rows(engine, TENANT, run_id).keys() == stored_rows(engine, TENANT).keys()
    assert duplicate_rows(engine) == 0


def recover(store: InventoryStore, client: GraphClient, kill: Kill) -> int:
    """Sync until it is not skipped; returns the successful run's id."""
    assert kill.killed_at is not None
    deadline = kill.killed_at + LEASE_SECONDS + RECOVERY_SLACK_SECONDS
    while True:
        summary = sync_partition(
            store, client, TENANT, SELECTION, options=SyncOptions(batch_size=BATCH_SIZE)
        )
        if summary.status != "skipped":
            break
        # Only a dead run whose heartbeat is still fresh may hold the lock.
        assert summary.holder_run_id == kill.run_id, (summary, kill)
        assert summary.error_codes == ["lock_held"]
        assert time.time() - kill.killed_at < LEASE_SECONDS + RECOVERY_SLACK_SECONDS, kill
        kill.skipped_before_recovery += 1
        assert time.time() < deadline, f"{kill}: lock still held {time.time() - kill.killed_at}s"
        time.sleep(0.1)
    kill.recovered_after = time.time() - kill.killed_at
    assert summary.status == "success", (summary.status, summary.error_codes)
    assert kill.recovered_after < LEASE_SECONDS + RECOVERY_SLACK_SECONDS, kill
    return summary.run_id


def test_killed_syncs_recover_with_whole_batches_and_ground_truth(
    engine: Engine, database_url: str, sim: SimulatorServer, client: GraphClient
) -> None:
    began = time.monotonic()
    add_tenant(engine, TENANT, "Crashy")
    sim.control.configure_tenant(TENANT, seed=31, sizes=SIZES)
    sim.control.set_options(settings_catalog_max_top=CATALOG_MAX_TOP)
    store = InventoryStore(engine, lease=timedelta(seconds=LEASE_SECONDS))
    plan = kill_plan(SEED)

    def spawn(kill: Kill) -> SyncProcess:
        pause_at = kill.point if kill.point not in ("fetching", "anywhere") else None
        return SyncProcess(
            SyncProcessConfig(
                database_url=database_url,
                graph_url=sim.base_url,
                tenant_id=TENANT,
                policy_types=TYPES,
                selection_name=SELECTION.name,
                batch_size=BATCH_SIZE,
                lease_seconds=LEASE_SECONDS,
                heartbeat_seconds=HEARTBEAT_SECONDS,
                pause_at=pause_at,
                pause_batch=kill.batch,
                wait_for_go=True,
            )
        )

    # The first sync is complete, so later kills hit a partition with a baseline and rows to
    # touch; the children start one ahead so their start-up overlaps the previous recovery.
    assert sync_partition(store, client, TENANT, SELECTION).status == "success"
    upcoming: SyncProcess | None = spawn(plan[0])
    process: SyncProcess | None = None
    try:
        for index, kill in enumerate(plan):
            assert upcoming is not None
            process, upcoming = upcoming, None
            process.wait_for("ready", timeout=60)
            listing = listings(sim)
            sim.control.set_faults(TENANT, [{"kind": "latency", "ms": LATENCY_MS}])
            runs_before = len(runs_of(engine, TENANT))
            process.go()
            if kill.point in ("fetching", "anywhere"):
                locked = process.wait_for("locked", timeout=30)
                kill.run_id = locked["run_id"]
                time.sleep(max(0.0, locked["t"] + kill.delay - time.time()))
                if kill.point == "fetching":  # wait until a page request is in flight
                    while not sim.control.counters()["in_flight"].get(TENANT):
                        assert process.proc.poll() is None, process.events
                        assert time.time() < locked["t"] + 20, process.events
                    kill.requests_in_flight = sim.control.counters()["in_flight"].get(TENANT, 0)
            else:
                pause = process.wait_for("pause", timeout=30)
                assert pause["point"] == kill.point
                lock_event = next((e for e in process.events if e["event"] == "locked"), None)
                kill.run_id = lock_event["run_id"] if lock_event else None
            process.kill()
            kill_events = list(process.events)
            process.close()
            kill.killed_at = process.killed_at
            if index + 1 < len(plan):
                upcoming = spawn(plan[index + 1])
            sim.control.clear_faults(TENANT)

            # Right after the kill: one running run at most, and never half a batch.
            after = runs_of(engine, TENANT)
            running = [r for r in after if r.status == "running"]
            assert len(running) <= 1, after
            if kill.point in ("start", "lock_commit"):
                assert len(after) == runs_before and not running, (kill, after)
            else:
                assert kill.run_id is not None
                kill.run_status_after_kill = next(r.status for r in after if r.id == kill.run_id)
                assert_whole_batches(engine, kill, listing, kill_events)
                if kill.point != "anywhere":  # which may come after the run finished
                    assert kill.run_status_after_kill == "running", kill
                if kill.point in ("before_finish", "finish_commit"):
                    assert kill.killed_run_rows == {t: len(listing[t]) for t in TYPES}, kill

            # Graph changes while the partition is down; the recovery must pick them up.
            sim.control.add_items(TENANT, "settings_catalog_policies", 3)
            apps = [item["id"] for item in listing["mobile_apps"]]
            sim.control.modify_items(TENANT, "mobile_apps", apps[index * 7 : index * 7 + 2])

            recovered = recover(store, client, kill)
            if kill.run_status_after_kill == "running":
                old = store.get_sync_run(TENANT, kill.run_id)  # type: ignore[arg-type]
                assert old["status"] == "failed" and old["error_codes"] == ["run_abandoned"]
                assert old["had_errors"] is True and old["finished_at"] is not None
            assert not [r for r in runs_of(engine, TENANT) if r.status == "running"]
            assert_inventory_is_truth(engine, sim, recovered)
    finally:
        for child in (process, upcoming):
            if child is not None:
                child.close()

    taken_over = [k for k in plan if k.run_status_after_kill == "running"]
    assert len(taken_over) >= 5  # every kill after the lock left a lock only the lease frees
    assert max(k.recovered_after for k in plan) < LEASE_SECONDS + RECOVERY_SLACK_SECONDS
    report = "\n".join(
        f"  {k.point:<13} delay={k.delay:.2f} batch={k.batch} run={k.run_id} "
        f"status_after_kill={k.run_status_after_kill} in_flight={k.requests_in_flight} "
        f"committed_batches={k.batches_committed} rows={k.killed_run_rows} "
        f"skipped={k.skipped_before_recovery} recovered_after={k.recovered_after:.2f}s"
        for k in plan
    )
    print(f"\n{len(plan)} kills in {time.monotonic() - began:.1f}s:\n{report}")
