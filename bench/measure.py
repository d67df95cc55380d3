"""One measured run in a fresh Python process: a sync, the fetch floor, the naive baseline or
the dlt peer (`bench/dlt_peer.py`, imported only for that kind).

    python -m bench.measure '<job as JSON>'    # prints one JSON line with the result

A fresh process per run makes `ru_maxrss` that run's own peak, and keeps the measured client
alone in its process (the simulator is another process). Only the run itself is timed: the
engine, the HTTP client and the imports are set up before the clock starts.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

from inventory_pipelines.core.database import create_inventory_engine
from inventory_pipelines.core.errors import GraphError
from inventory_pipelines.core.selection import get_selection
from inventory_pipelines.core.store import InventoryStore
from inventory_pipelines.graph.client import GraphClient
from inventory_pipelines.graph.settings import GraphSettings
from inventory_pipelines.graph.sync import SyncOptions, sync_partition

# Nothing from `bench.stack` or `inventory_pipelines.simulator` is imported here: the server
# modules (uvicorn, starlette) would inflate the measured process's memory.
REPO_ROOT = Path(__file__).resolve().parents[1]
KINDS = ("sync", "fetch", "naive", "dlt")


def run_measured(job: dict[str, Any], *, timeout: float = 1800.0) -> dict[str, Any]:
    """Run `job` in a child process and return its result (raises with its stderr on failure)."""
    completed = subprocess.run(
        [sys.executable, "-m", "bench.measure", json.dumps(job)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0 or not lines:
        raise RuntimeError(
            f"measured {job['kind']} failed (exit {completed.returncode}): "
            f"{completed.stderr.strip()[-3000:]}"
        )
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def _max_rss_kb() -> int:
    """Peak resident set of this process so far (kilobytes on Linux)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _cpu_seconds() -> float:
    """This process's CPU time and that of any children it reaped (a peer's worker pool)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def _bytes_written() -> int:
    """Bytes this process passed to write(): SQLite's whole write volume (WAL and database)."""
    try:
        with open("/proc/self/io", encoding="ascii") as io:
            for line in io:
                if line.startswith("wchar:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class WalMeter:
    """WAL bytes between `start` and `stop` by `pg_current_wal_lsn()` (cluster-wide)."""

    def __init__(self, admin_url: str | None) -> None:
        self._engine: Engine | None = (
            create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
            if admin_url
            else None
        )
        self._conn: Any = self._engine.connect() if self._engine is not None else None
        self._start: str | None = None

    def start(self) -> None:
        if self._conn is not None:
            self._start = str(self._conn.execute(text("SELECT pg_current_wal_lsn()")).scalar())

    def stop(self) -> int | None:
        if self._conn is None:
            return None
        diff = self._conn.execute(
            text("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), CAST(:start AS pg_lsn))"),
            {"start": self._start},
        ).scalar()
        return int(diff)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        if self._engine is not None:
            self._engine.dispose()


@contextmanager
def graph_client(job: dict[str, Any]) -> Iterator[GraphClient]:
    """The production client against the simulator. Identity pacing is off (and the
    simulator's throttle too) unless the job sets `identity_rps` (the peer comparison)."""
    settings = GraphSettings(
        client_id=job["client_id"],
        client_secret=job["client_secret"],
        base_url=job["base_url"],
        authority_url=job["base_url"],
    )
    rate = float(job.get("identity_rps", 0))
    with GraphClient(settings, identity_requests_per_second=rate) as client:
        yield client


@contextmanager
def _window(job: dict[str, Any], result: dict[str, Any]) -> Iterator[None]:
    """Times the block and records its write volume and the RSS before and after it."""
    wal = WalMeter(job.get("admin_url"))
    try:
        result["rss_before_kb"] = _max_rss_kb()
        written = _bytes_written()
        wal.start()
        cpu = _cpu_seconds()
        started = time.perf_counter()
        yield
        result["wall_seconds"] = time.perf_counter() - started
        result["client_cpu_seconds"] = _cpu_seconds() - cpu
        result["wal_bytes"] = wal.stop()
        result["bytes_written"] = _bytes_written() - written
    finally:
        wal.close()


def _measure_sync(job: dict[str, Any], result: dict[str, Any]) -> None:
    engine = create_inventory_engine(job["database_url"])
    with engine.connect() as conn:  # open a pooled connection before the clock starts
        conn.execute(text("SELECT 1"))
    store = InventoryStore(engine)
    selection = get_selection(job["selection"])
    options = SyncOptions(type_concurrency=job["type_concurrency"])
    with graph_client(job) as client, _window(job, result):
        summary = sync_partition(store, client, job["tenant_id"], selection, options=options)
    engine.dispose()  # backends exit and publish their statistics
    result.update(
        status=summary.status,
        items=summary.items_observed,
        inserted=summary.items_inserted,
        updated=summary.items_updated,
        requests=summary.total("requests"),
        pages=summary.total("pages"),
        requests_by_type={key: t.requests for key, t in summary.types.items()},
        error_codes=summary.error_codes,
    )


def _measure_fetch(job: dict[str, Any], result: dict[str, Any]) -> None:
    """The same client, pages and concurrency as the sync, and no database work at all."""
    selection = get_selection(job["selection"])
    tenant_id = job["tenant_id"]
    with graph_client(job) as client:

        def drain(key: str) -> tuple[str, int, int, int, str | None]:
            fetch = client.fetch(tenant_id, key)
            count = 0
            error = None
            try:
                for page in fetch:
                    count += len(page.items)
            except GraphError as exc:
                error = exc.code.value
            return key, count, fetch.stats.requests, fetch.stats.pages, error

        with (
            _window(job, result),
            ThreadPoolExecutor(max_workers=job["type_concurrency"]) as pool,
        ):
            client.tokens.token(tenant_id)  # the sync authenticates up front too
            fetched = list(pool.map(drain, selection.policy_types))
    errors = sorted({e for *_, e in fetched if e})
    result.update(
        status="failed" if errors else "success",
        items=sum(f[1] for f in fetched),
        requests=sum(f[2] for f in fetched),
        pages=sum(f[3] for f in fetched),
        error_codes=errors,
    )


def _measure_naive(job: dict[str, Any], result: dict[str, Any]) -> None:
    from bench.naive import naive_sync

    engine = create_inventory_engine(job["database_url"])
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    selection = get_selection(job["selection"])
    with graph_client(job) as client, _window(job, result):
        outcome = naive_sync(engine, client, job["tenant_id"], selection)
    engine.dispose()
    result.update(outcome)


def _measure_dlt(job: dict[str, Any], result: dict[str, Any]) -> None:
    """The dlt peer (`bench/dlt_peer.py`): pipeline and source built before the clock."""
    from bench import dlt_peer

    peer_job = dlt_peer.PeerJob.from_job(job)
    pipeline, source = dlt_peer.prepare(peer_job)
    with _window(job, result):
        outcome = dlt_peer.run(pipeline, source)
    result.update(status="success", **outcome)


def main() -> None:
    job: dict[str, Any] = json.loads(sys.argv[1])
    if job.get("kind") not in KINDS:
        raise SystemExit(f"job kind must be one of {KINDS}")
    result: dict[str, Any] = {"kind": job["kind"]}
    measure = {
        "sync": _measure_sync,
        "fetch": _measure_fetch,
        "naive": _measure_naive,
        "dlt": _measure_dlt,
    }[job["kind"]]
    measure(job, result)
    result["peak_rss_kb"] = _max_rss_kb()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
