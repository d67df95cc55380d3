import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select

from inventory_pipelines.core.database import create_inventory_engine
from inventory_pipelines.core.schema import sync_runs
from inventory_pipelines.core.store import (
    InventoryStore,
    RunAbandonedError,
    RunResult,
    RunSkipped,
    RunStarted,
)
from inventory_pipelines_tests.core.helpers import TENANT_A, TENANT_B, register, selection

SEL = selection("compliance", "compliance_policies")
OTHER = selection("scope", "scope_tags")


def statuses(engine: Engine, tenant_id: str) -> list[tuple[int, str, list[str]]]:
    with engine.connect() as conn:
        return [
            (r.id, r.status, r.error_codes)
            for r in conn.execute(
                select(sync_runs).where(sync_runs.c.tenant_id == tenant_id).order_by(sync_runs.c.id)
            )
        ]


def test_second_run_is_skipped_with_lock_held(engine: Engine) -> None:
    register(engine, TENANT_A)
    store = InventoryStore(engine)
    first = store.start_sync_run(TENANT_A, SEL)
    second = store.start_sync_run(TENANT_A, SEL)
    assert isinstance(first, RunStarted)
    assert isinstance(second, RunSkipped) and second.holder_run_id == first.run_id
    skipped = store.get_sync_run(TENANT_A, second.run_id)
    assert skipped["status"] == "skipped" and skipped["error_codes"] == ["lock_held"]
    assert skipped["finished_at"] is not None
    # Releasing the lock lets the next run start.
    store.finish_sync_run(TENANT_A, first.run_id, RunResult({"compliance_policies": "complete"}))
    assert isinstance(store.start_sync_run(TENANT_A, SEL), RunStarted)


def test_other_tenants_and_selections_do_not_block(engine: Engine) -> None:
    register(engine, TENANT_A, TENANT_B)
    store = InventoryStore(engine)
    assert isinstance(store.start_sync_run(TENANT_A, SEL), RunStarted)
    assert isinstance(store.start_sync_run(TENANT_A, OTHER), RunStarted)
    assert isinstance(store.start_sync_run(TENANT_B, SEL), RunStarted)


def test_concurrent_starts_from_many_connections_take_one_lock(database_url: str) -> None:
    setup = create_inventory_engine(database_url)
    register(setup, TENANT_A)
    results: list[object] = []
    barrier = threading.Barrier(8)

    def contender() -> None:
        engine = create_inventory_engine(database_url)  # own engine: own connections
        store = InventoryStore(engine)
        barrier.wait()
        results.append(store.start_sync_run(TENANT_A, SEL))
        engine.dispose()

    threads = [threading.Thread(target=contender) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    started = [r for r in results if isinstance(r, RunStarted)]
    skipped = [r for r in results if isinstance(r, RunSkipped)]
    assert len(results) == 8
    assert len(started) == 1 and len(skipped) == 7
    assert all(s.holder_run_id == started[0].run_id for s in skipped)
    running = [s for s in statuses(setup, TENANT_A) if s[1] == "running"]
    assert len(running) == 1


CHILD = """
import sys, time
from inventory_pipelines.core.database import create_inventory_engine
from inventory_pipelines.core.store import InventoryStore, RunStarted
from inventory_pipelines_tests.core.helpers import TENANT_A, selection
store = InventoryStore(create_inventory_engine(sys.argv[1]))
while time.time() < float(sys.argv[2]):
    time.sleep(0.001)
result = store.start_sync_run(TENANT_A, selection("compliance", "compliance_policies"))
print("started" if isinstance(result, RunStarted) else "skipped")
"""


def test_two_processes_at_once_take_one_lock(database_url: str) -> None:
    import time

    setup = create_inventory_engine(database_url)
    register(setup, TENANT_A)
    go = str(time.time() + 3)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, database_url, go], stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    outputs = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert all(p.returncode == 0 for p in procs)
    assert outputs == ["skipped", "skipped", "started"]


def test_stale_lock_is_taken_over_and_old_run_abandoned(engine: Engine) -> None:
    register(engine, TENANT_A)
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    store = InventoryStore(engine, lease=timedelta(minutes=5), clock=lambda: now[0])
    crashed = store.start_sync_run(TENANT_A, SEL)
    assert isinstance(crashed, RunStarted)
    now[0] += timedelta(minutes=4)
    store.heartbeat(TENANT_A, crashed.run_id)  # alive within the lease
    now[0] += timedelta(minutes=4)
    assert isinstance(store.start_sync_run(TENANT_A, SEL), RunSkipped)  # heartbeat is fresh
    now[0] += timedelta(minutes=2)  # heartbeat is now 6 minutes old
    taker = store.start_sync_run(TENANT_A, SEL)
    assert isinstance(taker, RunStarted) and taker.took_over_run_id == crashed.run_id
    old = store.get_sync_run(TENANT_A, crashed.run_id)
    assert old["status"] == "failed" and old["error_codes"] == ["run_abandoned"]
    assert old["had_errors"] is True
    # The abandoned run can no longer heartbeat or finish: it must stop writing.
    with pytest.raises(RunAbandonedError):
        store.heartbeat(TENANT_A, crashed.run_id)
    with pytest.raises(RunAbandonedError):
        store.finish_sync_run(TENANT_A, crashed.run_id, RunResult())


def test_unknown_or_inactive_tenants_cannot_start(engine: Engine) -> None:
    from inventory_pipelines.core.errors import ValidationError
    from inventory_pipelines.core.tenants import deactivate_tenant

    store = InventoryStore(engine)
    with pytest.raises(ValidationError, match="not registered"):
        store.start_sync_run(TENANT_A, SEL)
    register(engine, TENANT_A)
    deactivate_tenant(engine, TENANT_A)
    with pytest.raises(ValidationError, match="deactivated"):
        store.start_sync_run(TENANT_A, SEL)
