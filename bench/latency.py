"""Section 7: a latency-bound sync of a typical tenant against its two floors.

Every Graph request of the tenant gets 150 ms of simulator latency. A typical tenant holds
about 2,000 items over every registry type, sized so some types need several pages
(settings catalog pages by 25). The wall time is compared with the sum of all request
latencies (a strictly sequential client), the critical path (the longest single type's page
chain) and `max(critical path, sum / type_concurrency)`, the best any client with that
per-tenant concurrency can do. The simulator's counters give the requests per type and the
requests in flight per tenant.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from bench.measure import run_measured
from bench.stack import DatabaseFactory, SimulatorProcess
from bench.throughput import SELECTION, TYPE_CONCURRENCY, base_job, prepare_tenant, spread
from inventory_pipelines.core.policy_types import POLICY_TYPES
from inventory_pipelines.core.selection import get_selection

Log = Callable[[str], None]
LATENCY_TENANT = "d0d0d0d0-0000-4000-8000-000000000150"
LATENCY_MS = 150.0
TYPICAL_TOTAL = 2000

# Larger types of a typical tenant; every other registry type shares what is left.
_TYPICAL_LARGE = {
    "settings_catalog_policies": 300,  # 12 pages of 25: the longest page chain
    "device_configurations": 400,
    "mobile_apps": 350,
    "conditional_access_policies": 180,  # identity types page by 100
    "compliance_policies": 150,
    "named_locations": 120,
    "administrative_templates": 100,
    "app_protection_policies": 80,
    "settings_catalog_compliance": 60,  # 3 pages of 25
    "endpoint_security_intents": 60,
    "feature_update_profiles": 20,
}


def typical_sizes(total: int = TYPICAL_TOTAL) -> dict[str, int]:
    """Item counts per type for a typical tenant; they sum to exactly `total`."""
    large = dict(_TYPICAL_LARGE)
    rest = [p.key for p in POLICY_TYPES if p.key not in large]
    remaining = total - sum(large.values())
    if remaining < 0:
        raise ValueError(f"a typical tenant needs at least {sum(large.values())} items")
    return {**large, **spread(remaining, rest)}


def floors(requests_by_type: dict[str, int], latency_ms: float, concurrency: int) -> dict[str, Any]:
    """The sequential sum, the critical path and the best a `concurrency`-wide client can do."""
    latency = latency_ms / 1000
    total = sum(requests_by_type.values())
    longest_type = max(requests_by_type, key=lambda key: requests_by_type[key])
    sum_seconds = total * latency
    critical_seconds = requests_by_type[longest_type] * latency
    return {
        "requests": total,
        "longest_type": longest_type,
        "longest_chain": requests_by_type[longest_type],
        "sum_seconds": sum_seconds,
        "critical_path_seconds": critical_seconds,
        "floor_seconds": max(critical_seconds, sum_seconds / concurrency),
    }


def schedule_seconds(chains: list[int], workers: int, latency_ms: float) -> float:
    """Makespan when `workers` take the types in this order, each type's pages in sequence
    (what a pool that pages one type per worker does); local work is taken as free."""
    free = [0.0] * workers
    for pages in chains:
        slot = free.index(min(free))
        free[slot] += pages * latency_ms / 1000
    return max(free)


def submission_order(policy_types: list[str]) -> list[str]:
    """The order in which the sync hands types to its workers: the product's `fetch_order`
    when it has one, else the selection's order."""
    fetch_order = getattr(
        importlib.import_module("inventory_pipelines.graph.sync"), "fetch_order", None
    )
    if fetch_order is None:
        return list(policy_types)
    return list(fetch_order(policy_types))


def schedule_models(
    requests_by_type: dict[str, int], latency_ms: float, concurrency: int
) -> dict[str, float]:
    """The same requests scheduled in the sync's submission order and longest-first."""
    selected = [key for key in get_selection(SELECTION).policy_types if key in requests_by_type]
    chains = [requests_by_type[key] for key in submission_order(selected)]
    return {
        "model_submission_order_seconds": schedule_seconds(chains, concurrency, latency_ms),
        "model_longest_first_seconds": schedule_seconds(
            sorted(chains, reverse=True), concurrency, latency_ms
        ),
    }


def run_latency_section(
    sim: SimulatorProcess,
    factory: DatabaseFactory,
    dialects: list[str],
    repeat: int,
    log: Log,
    *,
    latency_ms: float = LATENCY_MS,
) -> dict[str, Any]:
    sizes = typical_sizes()
    prepare_tenant(sim, LATENCY_TENANT, sizes)
    sim.control.set_faults(LATENCY_TENANT, [{"kind": "latency", "ms": latency_ms}])
    job = base_job(sim, LATENCY_TENANT)
    section: dict[str, Any] = {
        "latency_ms": latency_ms,
        "items": sum(sizes.values()),
        "sizes": sizes,
        "type_concurrency": TYPE_CONCURRENCY,
        "identity_throttling": "off (simulator --identity-rps 0, client pacing 0)",
    }
    try:
        for dialect in dialects:
            runs = []
            for rep in range(repeat):
                database = factory.create(dialect, [LATENCY_TENANT], label="latency")
                try:
                    sim.control.reset_counters()
                    result = run_measured(
                        {**job, "kind": "sync", "database_url": database.url, "admin_url": None}
                    )
                    counters = sim.control.counters()
                finally:
                    factory.drop(database)
                if result["status"] != "success":
                    raise RuntimeError(f"the latency-bound sync did not succeed: {result}")
                by_type = counters["by_tenant_policy_type"].get(LATENCY_TENANT, {})
                bounds = floors(by_type, latency_ms, TYPE_CONCURRENCY)
                run = {
                    "wall_seconds": result["wall_seconds"],
                    "items": result["items"],
                    "client_requests": result["requests"],
                    "max_in_flight": counters["max_in_flight"].get(LATENCY_TENANT, 0),
                    "requests_by_type": by_type,
                    **bounds,
                    **schedule_models(by_type, latency_ms, TYPE_CONCURRENCY),
                    "wall_over_floor": result["wall_seconds"] / bounds["floor_seconds"],
                }
                runs.append(run)
                log(
                    f"latency {dialect} rep {rep + 1}: {run['wall_seconds']:.2f}s, floor "
                    f"{bounds['floor_seconds']:.2f}s, {run['max_in_flight']} in flight"
                )
            section[dialect] = runs
    finally:
        sim.control.clear_faults(LATENCY_TENANT)
    return section
