"""A sync of one partition in a child process that the reliability tests can kill on cue.

`python -m inventory_pipelines_tests.reliability.sync_process '<json config>'` builds the
store (short lease) and the Graph client, runs `sync_partition` and reports what it does as
JSON lines on stdout: `ready`, `locked`, one `batch` per committed upsert, `pause` when it
reached the configured pause point (where it then sleeps, so the parent kills it there) and
`done` with the summary. Pause points:

- `start`: before the lock is taken;
- `lock_commit`: inside the lock's transaction, the `running` row inserted but not committed;
- `upsert_commit`: inside the transaction of the `pause_batch`-th upsert (1-based), the merge
  executed but not committed;
- `before_finish`: every batch committed, the run not yet closed;
- `finish_commit`: inside the transaction that closes the run, not committed.

With `rounds` > 1 the child syncs that many times (after a `go` line each with
`wait_for_go`), reporting one `done` per round; with `tenant_ids` it syncs those tenants at
once, one thread each, and reports one `done` per tenant and round.

`SyncProcess` is the parent's handle: start, wait for an event, kill, collect the result.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


@dataclass
class SyncProcessConfig:
    database_url: str
    graph_url: str
    tenant_id: str
    policy_types: list[str]
    selection_name: str = "reliability"
    batch_size: int = 25
    writers: int = 2
    type_concurrency: int = 3
    lease_seconds: float = 1.0
    heartbeat_seconds: float = 0.2
    pause_at: str | None = None
    pause_batch: int = 1
    pause_seconds: float = 60.0
    wait_for_go: bool = False  # wait for a line on stdin before each round
    rounds: int = 1
    tenant_ids: list[str] = field(default_factory=list)  # several tenants at once, one thread each


# -- child ---------------------------------------------------------------------------------


def _emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, "t": time.time(), **fields}) + "\n")
    sys.stdout.flush()


def _child(config: SyncProcessConfig) -> int:
    from sqlalchemy import event

    from inventory_pipelines.core.database import create_inventory_engine
    from inventory_pipelines.core.selection import Selection, validate_payload
    from inventory_pipelines.core.store import InventoryStore
    from inventory_pipelines.graph.client import GraphClient
    from inventory_pipelines.graph.retry import RetryPolicy
    from inventory_pipelines.graph.settings import GraphSettings
    from inventory_pipelines.graph.sync import SyncOptions, sync_partition
    from inventory_pipelines.simulator import SIMULATOR_CLIENT_ID, SIMULATOR_CLIENT_SECRET

    local = threading.local()
    upserts_begun = [0]
    counter_lock = threading.Lock()

    def pause(point: str, **fields: Any) -> None:
        _emit("pause", point=point, **fields)
        time.sleep(config.pause_seconds)

    engine = create_inventory_engine(config.database_url)

    @event.listens_for(engine, "begin")
    def _begun(conn: Any) -> None:
        conn.info["wrote"] = False

    @event.listens_for(engine, "after_cursor_execute")
    def _executed(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith(("INSERT", "UPDATE")):
            conn.info["wrote"] = True

    @event.listens_for(engine, "commit")
    def _before_commit(conn: Any) -> None:
        # Fires before the DBAPI commit: the transaction's statements ran, nothing is durable.
        # (The upsert writes through the driver's cursor, which SQLAlchemy does not see, but it
        # is the only transaction of `upsert_items`.)
        point = getattr(local, "point", None)
        if point is None or point != config.pause_at:
            return
        if point == "upsert_commit":
            if local.batch_number == config.pause_batch:
                pause(point, **local.fields)
        elif conn.info.get("wrote"):
            pause(point)

    class ObservedStore(InventoryStore):
        def start_sync_run(self, *args: Any, **kwargs: Any) -> Any:
            if config.pause_at == "start":
                pause("start")
            local.point = "lock_commit"
            try:
                started = super().start_sync_run(*args, **kwargs)
            finally:
                local.point = None
            _emit("locked", run_id=started.run_id, kind=type(started).__name__)
            return started

        def upsert_items(
            self, tenant_id: str, run_id: int, policy_type: str, batch: Any, **kwargs: Any
        ) -> Any:
            batch = list(batch)
            with counter_lock:
                upserts_begun[0] += 1
                local.batch_number = upserts_begun[0]
            local.point = "upsert_commit"
            local.fields = {
                "policy_type": policy_type,
                "ids": [item.external_id for item in batch],
                "batch_number": local.batch_number,
            }
            try:
                counts = super().upsert_items(tenant_id, run_id, policy_type, batch, **kwargs)
            finally:
                local.point = None
            _emit("batch", policy_type=policy_type, size=len(batch), number=local.batch_number)
            return counts

        def finish_sync_run(self, *args: Any, **kwargs: Any) -> str:
            if config.pause_at == "before_finish":
                pause("before_finish")
            local.point = "finish_commit"
            try:
                return super().finish_sync_run(*args, **kwargs)
            finally:
                local.point = None

    store = ObservedStore(engine, lease=timedelta(seconds=config.lease_seconds))
    settings = GraphSettings(
        client_id=SIMULATOR_CLIENT_ID,
        client_secret=SIMULATOR_CLIENT_SECRET,
        base_url=config.graph_url,
        authority_url=config.graph_url,
    )
    selection = Selection(
        config.selection_name, validate_payload({"policy_types": config.policy_types})
    )
    options = SyncOptions(
        type_concurrency=config.type_concurrency,
        batch_size=config.batch_size,
        writers=config.writers,
        heartbeat_seconds=config.heartbeat_seconds,
    )
    retry = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05, max_total_wait=2.0)
    tenants = config.tenant_ids or [config.tenant_id]
    with GraphClient(settings, retry=retry, identity_requests_per_second=0) as client:

        def sync_one(tenant_id: str, round_number: int) -> None:
            began = time.time()
            summary = sync_partition(store, client, tenant_id, selection, options=options)
            _emit(
                "done",
                round=round_number,
                tenant_id=tenant_id,
                status=summary.status,
                run_id=summary.run_id,
                holder_run_id=summary.holder_run_id,
                error_codes=summary.error_codes,
                items_observed=summary.items_observed,
                items_inserted=summary.items_inserted,
                items_updated=summary.items_updated,
                began=began,
                seconds=time.time() - began,
            )

        _emit("ready", pid=os.getpid())
        for round_number in range(1, config.rounds + 1):
            if config.wait_for_go:
                sys.stdin.readline()
            if len(tenants) == 1:
                sync_one(tenants[0], round_number)
                continue
            with ThreadPoolExecutor(len(tenants)) as pool:  # one sync per tenant at once
                for future in [pool.submit(sync_one, t, round_number) for t in tenants]:
                    future.result()
    engine.dispose()
    return 0


# -- parent --------------------------------------------------------------------------------


class SyncProcess:
    """A running child sync; events arrive on a queue read by a background thread."""

    def __init__(self, config: SyncProcessConfig) -> None:
        self.config = config
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", __name__, json.dumps(asdict(config))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO,
        )
        self.events: list[dict[str, Any]] = []
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._stderr: list[str] = []
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()
        self._err_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._err_reader.start()
        self.killed_at: float | None = None

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.strip()
            if line.startswith("{"):
                record = json.loads(line)
                self.events.append(record)
                self._queue.put(record)
        self._queue.put(None)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def wait_for(self, names: str | Iterable[str], timeout: float) -> dict[str, Any]:
        """The next event with one of these names; fails on exit or timeout."""
        wanted = {names} if isinstance(names, str) else set(names)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {sorted(wanted)} event within {timeout}s: {self.events}")
            try:
                record = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if record is None:
                self.proc.wait(10)
                raise AssertionError(
                    f"sync process exited ({self.proc.returncode}) before {sorted(wanted)}: "
                    f"{self.events}\n{self.stderr[-3000:]}"
                )
            if record["event"] in wanted:
                return record

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        """SIGKILL: no finally block, no atexit, no rollback from the client side."""
        self.proc.send_signal(signal.SIGKILL)
        self.killed_at = time.time()
        self.proc.wait(10)
        self._reader.join(10)

    def result(self, timeout: float) -> dict[str, Any]:
        """Wait for a clean exit and return the `done` event."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"sync process still running after {timeout}s") from None
        self._reader.join(10)
        self._err_reader.join(10)
        assert self.proc.returncode == 0, f"exit {self.proc.returncode}: {self.stderr[-3000:]}"
        done = [e for e in self.events if e["event"] == "done"]
        assert done, self.events
        return done[-1]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill()
        self._reader.join(10)  # the pipes reach EOF once the process is gone
        self._err_reader.join(10)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


if __name__ == "__main__":
    sys.exit(_child(SyncProcessConfig(**json.loads(sys.argv[1]))))
