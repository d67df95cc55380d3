"""A sync process frozen (SIGSTOP) past its lease, taken over, then resumed (SIGCONT).

A run whose lock was taken over must never write again: had the resumed run upserted the
pages it still held, the items would carry its older `last_seen_at` and the newer, complete
run would report them missing (`not_observed`, high confidence) although Graph has them.
Freezes land after the first committed batch, at a seeded random delay, on both dialects.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from inventory_pipelines.core.missing import compute_missing
from inventory_pipelines.core.selection import Selection, validate_payload
from inventory_pipelines.core.store import InventoryStore
from inventory_pipelines.core.tenants import add_tenant
from inventory_pipelines.graph.client import GraphClient
from inventory_pipelines.graph.sync import sync_partition
from inventory_pipelines.simulator import SimulatorServer
from inventory_pipelines_tests.reliability.ground_truth import (
    expected_rows,
    graph_client,
    running_runs,
    stored_rows,
)
from inventory_pipelines_tests.reliability.sync_process import SyncProcess, SyncProcessConfig

TENANT = "f0f0f0f0-1234-4abc-8def-0123456789ab"
# Slow pages and small batches: the process spends most of its time waiting for Graph, so a
# freeze usually lands outside a database transaction.
SIZES = {"settings_catalog_policies": 300, "mobile_apps": 200, "scope_tags": 3}
TYPES = list(SIZES)
SELECTION = Selection("frozen", validate_payload({"policy_types": TYPES}))
LATENCY_MS = 150
LEASE_SECONDS = 0.5
FREEZES = 2  # freezes whose takeover happened while the process was frozen
MAX_ATTEMPTS = 8
SEED = 7
# A process frozen inside a transaction makes the takeover wait (FOR SHARE on PostgreSQL, the
# write lock on SQLite): it is resumed after this long and the attempt does not count.
TAKEOVER_WAIT_SECONDS = 3.0


class WatchedStore(InventoryStore):
    """Tells when the recovering sync got past the lock (i.e. took over)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.started = threading.Event()

    def start_sync_run(self, *args: Any, **kwargs: Any) -> Any:
        started = super().start_sync_run(*args, **kwargs)
        self.started.set()
        return started


@pytest.fixture
def client(sim: SimulatorServer) -> Iterator[GraphClient]:
    with graph_client(sim) as graph:
        yield graph


def test_a_resumed_abandoned_run_never_overwrites_the_new_run(
    engine: Engine, database_url: str, sim: SimulatorServer, client: GraphClient
) -> None:
    add_tenant(engine, TENANT, "Frozen")
    sim.control.configure_tenant(TENANT, seed=5, sizes=SIZES)
    rng = random.Random(SEED)
    report: list[str] = []
    attempts = 0
    while len(report) < FREEZES:
        attempts += 1
        assert attempts <= MAX_ATTEMPTS, f"only {len(report)} freezes outside a transaction"
        store = WatchedStore(engine, lease=timedelta(seconds=LEASE_SECONDS))
        sim.control.set_faults(TENANT, [{"kind": "latency", "ms": LATENCY_MS}])
        process = SyncProcess(
            SyncProcessConfig(
                database_url=database_url,
                graph_url=sim.base_url,
                tenant_id=TENANT,
                policy_types=TYPES,
                selection_name=SELECTION.name,
                lease_seconds=LEASE_SECONDS,
                heartbeat_seconds=0.1,
            )
        )
        outcome: dict[str, Any] = {}

        def recover(into: dict[str, Any] = outcome, store: InventoryStore = store) -> None:
            into["summary"] = sync_partition(store, client, TENANT, SELECTION)

        recovery = threading.Thread(target=recover, daemon=True)
        try:
            process.wait_for("batch", timeout=90)
            time.sleep(rng.uniform(0.0, 0.5))
            os.kill(process.proc.pid, signal.SIGSTOP)
            frozen_at = time.monotonic()
            old_run = next(e for e in process.events if e["event"] == "locked")["run_id"]
            sim.control.clear_faults(TENANT)
            time.sleep(LEASE_SECONDS + 0.3)
            recovery.start()
            took_over = store.started.wait(TAKEOVER_WAIT_SECONDS)
            if took_over:
                recovery.join(60)  # the new run completes while the old one is frozen
            frozen_for = time.monotonic() - frozen_at
            os.kill(process.proc.pid, signal.SIGCONT)
            recovery.join(60)
            assert not recovery.is_alive(), "recovery hangs"
            process.proc.wait(60)
        finally:
            if process.proc.poll() is None:
                os.kill(process.proc.pid, signal.SIGCONT)
            process.close()
        if not took_over:
            # Frozen inside a transaction: the takeover rightly waited for it. Heal and retry.
            healed_by = time.monotonic() + 30
            while sync_partition(store, client, TENANT, SELECTION).status == "skipped":
                assert time.monotonic() < healed_by, "lock stuck after a frozen transaction"
                time.sleep(0.1)
            continue

        new = outcome["summary"]
        assert new.status == "success", new.error_codes
        # The resumed run learns at its next write (or heartbeat) that it was taken over.
        assert process.proc.returncode != 0
        assert "RunAbandonedError" in process.stderr, process.stderr[-2000:]
        old = store.get_sync_run(TENANT, old_run)
        assert (old["status"], old["error_codes"]) == ("failed", ["run_abandoned"])
        stale = stored_rows(engine, TENANT, old_run)
        assert not stale, f"{len(stale)} rows rewritten by the abandoned run after the takeover"
        assert stored_rows(engine, TENANT, new.run_id) == expected_rows(sim, TENANT, TYPES)
        missing = compute_missing(engine, TENANT, SELECTION)
        assert (missing.baseline_run_id, missing.missing_count, missing.confidence) == (
            new.run_id,
            0,
            "high",
        )
        assert running_runs(engine) == []
        report.append(
            f"  run {old_run} frozen {frozen_for:.1f}s, taken over and superseded by run "
            f"{new.run_id}, resumed: stopped with RunAbandonedError, wrote nothing"
        )
    print(
        f"\n{attempts} freezes, {attempts - len(report)} inside a transaction:\n"
        + "\n".join(report)
    )
