"""The inventory's PostgreSQL server restarts in the middle of a sync.

A private PostgreSQL server (own data directory, free loopback port, trust auth, fsync off) is
stopped (`immediate`: a crash with recovery on start; `fast`: backends terminated) while a
sync is writing batches, then started again. The sync must fail cleanly or carry on: never
half a batch, never a duplicate row, never a lock that stays stuck. The next sync (after the
lease at the latest) succeeds and the inventory equals the ground truth.

Needs `initdb`/`pg_ctl` (under /usr/lib/postgresql/*/bin or on PATH): a skip with the reason
when they are missing, a failure under CI=true. The shared PostgreSQL test server is never
touched.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from inventory_pipelines.core.database import create_inventory_engine
from inventory_pipelines.core.migrations import upgrade
from inventory_pipelines.core.policy_types import get_policy_type
from inventory_pipelines.core.selection import Selection, validate_payload
from inventory_pipelines.core.store import InventoryStore
from inventory_pipelines.core.tenants import add_tenant
from inventory_pipelines.graph.client import GraphClient
from inventory_pipelines.graph.sync import SyncOptions, SyncSummary, sync_partition
from inventory_pipelines.simulator import SimulatorServer
from inventory_pipelines.simulator.paging import learned_page_size
from inventory_pipelines_tests.reliability.ground_truth import (
    duplicate_rows,
    expected_rows,
    graph_client,
    running_runs,
    runs_of,
    stored_rows,
)

pytestmark = pytest.mark.postgres

TENANT = "d8b7a6c5-4e3f-4a1b-9c8d-7e6f5a4b3c2d"
SIZES = {"settings_catalog_policies": 200, "mobile_apps": 2500, "scope_tags": 3}
TYPES = list(SIZES)
SELECTION = Selection("restart", validate_payload({"policy_types": TYPES}))
LATENCY_MS = 120  # settings catalog: 8 pages in a row, about a second of batches
LEASE_SECONDS = 1.0
OPTIONS = SyncOptions(batch_size=25, heartbeat_seconds=0.2)
RECOVERY_BOUND_SECONDS = 30.0


def _postgres_bindir() -> Path | None:
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    found.sort(key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivatePostgres:
    """A throw-away PostgreSQL server on 127.0.0.1 that this test alone starts and stops."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="inventory-private-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = _free_port()
        self.as_postgres = os.geteuid() == 0  # initdb refuses to run as root
        if self.as_postgres:
            shutil.chown(self.root, "postgres", "postgres")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bindir / tool), *args]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr or done.stdout}")

    def init(self) -> None:
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# private test server\n"
                "listen_addresses = '127.0.0.1'\n"
                f"port = {self.port}\n"
                "unix_socket_directories = ''\n"
                # Fast without changing what a crash of the server keeps: a commit still
                # reaches the operating system before it returns (synchronous_commit on).
                "fsync = off\n"
                "full_page_writes = off\n"
                "max_connections = 40\n"
            )

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self, mode: str) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def destroy(self) -> None:
        """Stop (immediately) whatever we started and remove the directory."""
        pid = self.postmaster_pid()
        if pid is not None:
            try:
                self.stop("immediate")
            except Exception:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)  # the postmaster this test started
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PrivatePostgres]:
    bindir = _postgres_bindir()
    if bindir is None:
        reason = (
            "PRIVATE POSTGRESQL NOT TESTED: initdb/pg_ctl not found under "
            "/usr/lib/postgresql/*/bin or on PATH; install the PostgreSQL server package"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    server = PrivatePostgres(bindir)
    try:
        server.init()
        server.start()
        engine = create_inventory_engine(server.url)
        upgrade(engine)
        add_tenant(engine, TENANT, "Restarted")
        engine.dispose()
        yield server
    finally:
        server.destroy()


@pytest.fixture
def engine(private_postgres: PrivatePostgres) -> Iterator[Engine]:
    engine = create_inventory_engine(private_postgres.url)
    yield engine
    engine.dispose()


def _wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _items_of_run(engine: Engine, run_id: int) -> dict[str, set[str]]:
    by_type: dict[str, set[str]] = {t: set() for t in TYPES}
    for policy_type, external_id in stored_rows(engine, TENANT, run_id):
        by_type[policy_type].add(external_id)
    return by_type


def _assert_whole_pages(engine: Engine, sim: SimulatorServer, run_id: int) -> dict[str, int]:
    """Batches are pages here (each page is at least one batch): never a part of one."""
    seen = _items_of_run(engine, run_id)
    for policy_type in TYPES:
        ptype = get_policy_type(policy_type)
        size = learned_page_size(ptype)
        ids = [item["id"] for item in sim.control.items(TENANT, policy_type)]
        for start in range(0, len(ids), size):
            page = set(ids[start : start + size])
            assert page <= seen[policy_type] or not page & seen[policy_type], policy_type
    return {t: len(ids) for t, ids in seen.items()}


@pytest.mark.parametrize("mode", ["immediate", "fast"])
def test_sync_survives_a_database_restart_cleanly(
    private_postgres: PrivatePostgres, engine: Engine, sim: SimulatorServer, mode: str
) -> None:
    sim.control.configure_tenant(TENANT, seed=41, sizes=SIZES)
    store = InventoryStore(engine, lease=timedelta(seconds=LEASE_SECONDS))
    client: GraphClient
    with graph_client(sim) as client:
        # A first complete sync: the interrupted one then updates rows as well as inserting.
        first = sync_partition(store, client, TENANT, SELECTION, options=OPTIONS)
        assert first.status == "success"
        sim.control.add_items(TENANT, "settings_catalog_policies", 30)
        sim.control.set_faults(TENANT, [{"kind": "latency", "ms": LATENCY_MS}])
        runs_before = {r.id for r in runs_of(engine, TENANT)}
        outcome: dict[str, Any] = {}

        def interrupted_sync() -> None:
            try:
                outcome["summary"] = sync_partition(
                    store, client, TENANT, SELECTION, options=OPTIONS
                )
            except BaseException as exc:
                outcome["error"] = exc

        thread = threading.Thread(target=interrupted_sync, daemon=True)
        thread.start()
        # Stop the server once the sync has a running run and has committed a batch.
        _wait(
            lambda: any(r.status == "running" for r in runs_of(engine, TENANT)),
            30,
            "the sync's run",
        )
        (run,) = [r for r in runs_of(engine, TENANT) if r.id not in runs_before]
        _wait(lambda: any(_items_of_run(engine, run.id).values()), 30, "a committed batch")
        committed = stored_rows(engine, TENANT, run.id).keys()
        stopped = time.monotonic()
        private_postgres.stop(mode)
        time.sleep(0.5)  # the sync meets a dead server for a while
        private_postgres.start()
        downtime = time.monotonic() - stopped
        thread.join(60)
        assert not thread.is_alive(), "the sync hangs after the database restart"
        sim.control.clear_faults(TENANT)

        # Right after the restart: one running run at most and only whole batches.
        after = {r.id: r for r in runs_of(engine, TENANT)}
        assert len(running_runs(engine)) <= 1
        status_after_restart = after[run.id].status
        rows = _assert_whole_pages(engine, sim, run.id)
        assert committed <= stored_rows(engine, TENANT, run.id).keys(), "a committed batch lost"
        if "error" in outcome:
            # A failed sync is closed `failed` when the server came back in time to record
            # it, else its lock is left to the lease.
            assert status_after_restart in ("failed", "running"), status_after_restart
        else:
            assert outcome["summary"].status in ("success", "partial")

        # The next sync succeeds within the lease (after `skipped` while it is fresh).
        began = time.monotonic()
        skipped = 0
        while True:
            summary: SyncSummary = sync_partition(store, client, TENANT, SELECTION, options=OPTIONS)
            if summary.status != "skipped":
                break
            assert summary.holder_run_id == run.id
            skipped += 1
            assert time.monotonic() - began < RECOVERY_BOUND_SECONDS, "lock stuck"
            time.sleep(0.1)
        recovered_after = time.monotonic() - began
        assert summary.status == "success", summary.error_codes
        closed = store.get_sync_run(TENANT, run.id)
        assert closed["status"] != "running"
        if status_after_restart == "running":
            assert closed["status"] == "failed"
            assert closed["error_codes"] == ["run_abandoned"]
        elif status_after_restart == "failed":
            assert closed["error_codes"] == ["internal"]

    assert stored_rows(engine, TENANT) == expected_rows(sim, TENANT, TYPES)
    assert stored_rows(engine, TENANT, summary.run_id).keys() == stored_rows(engine, TENANT).keys()
    assert duplicate_rows(engine) == 0
    assert running_runs(engine) == []
    error = outcome.get("error")
    print(
        f"\nstop -m {mode}: down {downtime:.1f}s; interrupted run {run.id} "
        f"{'raised ' + type(error).__name__ if error else outcome['summary'].status}, "
        f"then {status_after_restart} -> {closed['status']} {closed['error_codes']}; "
        f"its rows {rows}; next sync success after {skipped} skipped in {recovered_after:.1f}s"
    )
