"""Sections 1–5: initial sync, fetch floor, naive baseline, unchanged re-sync and memory.

For every size one simulator tenant holds exactly that many items spread evenly over all 41
registry types (the `all` selection); the simulator generates them, and serves them once
untimed so its JSON cache is warm, before any timing. Each repetition then measures, every
run in a fresh process: the fetch floor; and per dialect, into a fresh database, the initial
sync, an unchanged re-sync after a CHECKPOINT, and an unchanged re-sync without one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.measure import run_measured
from bench.stack import (
    BenchDatabase,
    CpuMeter,
    DatabaseFactory,
    SimulatorProcess,
    checkpoint,
    stats_delta,
    vacuum_analyze,
    write_stats,
)
from inventory_pipelines.core.policy_types import POLICY_TYPES
from inventory_pipelines.simulator import SIMULATOR_CLIENT_ID, SIMULATOR_CLIENT_SECRET

SELECTION = "all"
TYPE_CONCURRENCY = 4
"""The sync's default: requests in flight per tenant."""

Log = Callable[[str], None]


def tenant_for(size: int) -> str:
    """A stable tenant GUID per size, so every size is its own simulator tenant."""
    return f"b0b0b0b0-0000-4000-8000-{size:012d}"


def spread(total: int, keys: list[str] | None = None) -> dict[str, int]:
    """`total` items spread as evenly as possible over the registry; the sum is exact."""
    keys = keys or [p.key for p in POLICY_TYPES]
    base, extra = divmod(total, len(keys))
    return {key: base + (1 if index < extra else 0) for index, key in enumerate(keys)}


def base_job(sim: SimulatorProcess, tenant_id: str) -> dict[str, Any]:
    return {
        "base_url": sim.base_url,
        "client_id": SIMULATOR_CLIENT_ID,
        "client_secret": SIMULATOR_CLIENT_SECRET,
        "tenant_id": tenant_id,
        "selection": SELECTION,
        "type_concurrency": TYPE_CONCURRENCY,
    }


def prepare_tenant(sim: SimulatorProcess, tenant_id: str, sizes: dict[str, int]) -> int:
    """Configure the tenant and make the simulator generate its data now (untimed)."""
    sim.control.configure_tenant(tenant_id, seed=20_240_601, sizes=sizes)
    count = sim.control.item_count(tenant_id)
    if count != sum(sizes.values()):
        raise RuntimeError(f"simulator holds {count} items, expected {sum(sizes.values())}")
    return count


def measured_fetch(job: dict[str, Any], cpu: CpuMeter) -> dict[str, Any]:
    """The fetch floor in a fresh process, with the simulator's CPU time."""
    before = cpu.snapshot()
    result = run_measured({**job, "kind": "fetch"})
    simulator = cpu.delta(before, cpu.snapshot())["simulator"]
    result["cpu_seconds"] = {"client": result["client_cpu_seconds"], "simulator": simulator}
    _check(result)
    return result


def measured_sync(job: dict[str, Any], database: BenchDatabase, cpu: CpuMeter) -> dict[str, Any]:
    """One sync in a fresh process, with the rows and WAL it wrote on PostgreSQL and the CPU
    time of client, simulator and database."""
    before = write_stats(database)
    cpu_before = cpu.snapshot()
    result = run_measured(
        {
            **job,
            "kind": job.get("kind", "sync"),
            "database_url": database.url,
            "admin_url": database.admin_url if database.is_postgresql else None,
        }
    )
    after = write_stats(database)  # waits until the run's backends have exited
    cpu_after = cpu.snapshot()
    if not database.is_postgresql:
        cpu_after.pop("postgres_backends", None)
    result["cpu_seconds"] = {
        "client": result["client_cpu_seconds"],
        **cpu.delta(cpu_before, cpu_after),
    }
    if before:
        result["table_writes"] = stats_delta(before, after)
    _check(result)
    return result


def _check(result: dict[str, Any]) -> None:
    if result.get("status") != "success":
        raise RuntimeError(f"a measured {result['kind']} did not succeed: {result}")


def run_sync_section(
    sim: SimulatorProcess,
    factory: DatabaseFactory,
    cpu: CpuMeter,
    sizes: list[int],
    dialects: list[str],
    repeat: int,
    log: Log,
) -> dict[str, Any]:
    """Fetch floor, initial sync and both unchanged re-syncs for every size."""
    section: dict[str, Any] = {"selection": SELECTION, "type_concurrency": TYPE_CONCURRENCY}
    by_size: dict[str, Any] = {}
    for size in sizes:
        tenant_id = tenant_for(size)
        prepare_tenant(sim, tenant_id, spread(size))
        job = base_job(sim, tenant_id)
        _check(run_measured({**job, "kind": "fetch"}))  # warm the simulator's page cache
        entry: dict[str, Any] = {"items": size, "fetch": []}
        entry.update(
            {d: {"initial": [], "resync_after_checkpoint": [], "resync": []} for d in dialects}
        )
        for rep in range(repeat):
            fetch = measured_fetch(job, cpu)
            entry["fetch"].append(fetch)
            log(f"size {size} rep {rep + 1}: fetch floor {fetch['wall_seconds']:.2f}s")
            for dialect in dialects:
                runs = entry[dialect]
                database = factory.create(dialect, [tenant_id], label=f"sync{size}")
                try:
                    checkpoint(database)
                    runs["initial"].append(measured_sync(job, database, cpu))
                    vacuum_analyze(database)
                    checkpoint(database)
                    runs["resync_after_checkpoint"].append(measured_sync(job, database, cpu))
                    vacuum_analyze(database)
                    runs["resync"].append(measured_sync(job, database, cpu))
                finally:
                    factory.drop(database)
                log(
                    f"size {size} rep {rep + 1} {dialect}: initial "
                    f"{runs['initial'][-1]['wall_seconds']:.2f}s, re-sync "
                    f"{runs['resync_after_checkpoint'][-1]['wall_seconds']:.2f}s / "
                    f"{runs['resync'][-1]['wall_seconds']:.2f}s"
                )
        by_size[str(size)] = entry
    section["sizes"] = by_size
    return section


def run_naive_section(
    sim: SimulatorProcess,
    factory: DatabaseFactory,
    cpu: CpuMeter,
    size: int,
    dialects: list[str],
    repeat: int,
    log: Log,
) -> dict[str, Any]:
    """The per-item baseline at `size` items, into a fresh database each time."""
    tenant_id = tenant_for(size)
    prepare_tenant(sim, tenant_id, spread(size))
    job = base_job(sim, tenant_id)
    section: dict[str, Any] = {"items": size, "extrapolated": False}
    for dialect in dialects:
        runs = []
        for rep in range(repeat):
            database = factory.create(dialect, [tenant_id], label=f"naive{size}")
            try:
                runs.append(measured_sync({**job, "kind": "naive"}, database, cpu))
            finally:
                factory.drop(database)
            log(f"naive {size} rep {rep + 1} {dialect}: {runs[-1]['wall_seconds']:.1f}s")
        section[dialect] = runs
    return section
