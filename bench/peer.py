"""Section 8: our sync against a peer (a plain dlt `rest_api` pipeline) and Graph's floor.

Both sync the same simulator tenant into the same PostgreSQL server, with Entra's identity
throttle on in the simulator (`identity_rps`, 1 request/s per tenant) and the project's
pacing at the same rate, every run in a fresh process (`bench/measure.py`):

- a large tenant (`size` items): initial sync into a fresh database, then `VACUUM (ANALYZE)`,
  `CHECKPOINT` and an unchanged re-sync (our inventory database, or the peer's own
  `inventory_bench_dlt_*` database, both created and dropped here);
- a typical tenant (`latency_size` items) with a `latency` fault on every Graph request:
  initial syncs of both, against the floor of `bench/graph_floor.py` computed from the page
  chains the simulator serves at the largest page size each endpoint accepts.

Tenants hold a realistic identity share (`ca_policies` conditional access policies and
`named_locations`, below Entra's cap of 195 policies, and a few authentication strengths,
contexts and terms of use); the Intune types follow the weights of a typical tenant.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import uuid
from collections.abc import Callable, Mapping
from importlib import metadata
from typing import Any

import httpx

from bench.graph_floor import Chain, chains_from_items, graph_floor
from bench.measure import run_measured
from bench.stack import BenchDatabase, CpuMeter, DatabaseFactory, SimulatorProcess, vacuum_analyze
from bench.stack import checkpoint as checkpoint_database
from bench.throughput import TYPE_CONCURRENCY, base_job, prepare_tenant, spread
from inventory_pipelines.core.policy_types import POLICY_TYPES, PolicyType

Log = Callable[[str], None]
PEERS = ("dlt",)
MAX_CA_POLICIES = 195
"""Entra's cap on conditional access policies per tenant."""
PROBE_TOP = 999
_TOP_LIMIT = re.compile(r"limit of '(\d+)' for Top query")
GRAPH_SCOPE = "https://graph.microsoft.com/.default"

IDENTITY_FEW = {"authentication_strengths": 8, "authentication_contexts": 5, "terms_of_use": 3}
"""Identity collections besides conditional access and named locations: a handful each."""
TYPICAL_WEIGHTS = {
    "mobile_apps": 1500,
    "device_configurations": 800,
    "settings_catalog_policies": 600,
    "compliance_policies": 300,
    "administrative_templates": 250,
    "app_protection_policies": 200,
    "endpoint_security_intents": 150,
    "settings_catalog_compliance": 100,
    "feature_update_profiles": 40,
}
"""Large Intune types of a typical 5,000-item tenant; the other Intune types share the rest."""
TYPICAL_TOTAL = 5000


def peer_tenant(size: int) -> str:
    return f"c0c0c0c0-0000-4000-8000-{size:012d}"


LATENCY_PEER_TENANT = "c0c0c0c0-0000-4000-8000-1a7e0c000150"


def peer_sizes(total: int, *, ca_policies: int = 150, named_locations: int = 40) -> dict[str, int]:
    """Items per registry type summing to exactly `total`: the identity types fixed, the large
    Intune types scaled from a typical 5,000-item tenant, the others evenly."""
    if not 0 <= ca_policies <= MAX_CA_POLICIES:
        raise ValueError(f"Entra allows at most {MAX_CA_POLICIES} conditional access policies")
    fixed = {
        "conditional_access_policies": ca_policies,
        "named_locations": named_locations,
        **IDENTITY_FEW,
    }
    rest = total - sum(fixed.values())
    if rest < 0:
        raise ValueError(f"{total} items cannot hold {sum(fixed.values())} identity items")
    scale = rest / (TYPICAL_TOTAL - sum(fixed.values()) or 1)
    large = {key: int(weight * scale) for key, weight in TYPICAL_WEIGHTS.items()}
    if sum(large.values()) > rest:
        large = dict.fromkeys(large, 0)
    others = [p.key for p in POLICY_TYPES if p.key not in fixed and p.key not in large]
    return {**fixed, **large, **spread(rest - sum(large.values()), others)}


def paced_keys(policy_types: tuple[PolicyType, ...] = POLICY_TYPES) -> list[str]:
    """The types the simulator's identity throttle applies to (its own rule: the registry's
    `identity` throttle class)."""
    return [p.key for p in policy_types if p.throttle_class == "identity"]


# -- probing the simulator like a data engineer would (untimed) ------------------------------


def _token(http: httpx.Client, base_url: str, tenant_id: str, job: Mapping[str, Any]) -> str:
    response = http.post(
        f"{base_url}/{tenant_id}/oauth2/v2.0/token",
        data={
            "client_id": job["client_id"],
            "client_secret": job["client_secret"],
            "scope": GRAPH_SCOPE,
            "grant_type": "client_credentials",
        },
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def _walk(http: httpx.Client, url: str) -> tuple[int, int, int]:
    """(pages, items, largest page) of one complete listing."""
    pages = items = largest = 0
    next_url: str | None = url
    while next_url:
        response = http.get(next_url)
        response.raise_for_status()
        body = response.json()
        pages += 1
        items += len(body["value"])
        largest = max(largest, len(body["value"]))
        next_url = body.get("@odata.nextLink")
    return pages, items, largest


def probe_collections(
    sim: SimulatorProcess, tenant_id: str, *, walk: bool
) -> dict[str, dict[str, Any]]:
    """Per registry type: the `$top` the peer sends (999, or the cap a 400 names) and, with
    `walk`, the page chain served with that `$top` and without any `$top`. Run with the
    identity throttle and faults off."""
    job = base_job(sim, tenant_id)
    found: dict[str, dict[str, Any]] = {}
    with httpx.Client(timeout=120.0) as http:
        http.headers["Authorization"] = f"Bearer {_token(http, sim.base_url, tenant_id, job)}"
        for policy_type in POLICY_TYPES:
            url = f"{sim.base_url}{policy_type.url_path()}"
            top = PROBE_TOP
            first = http.get(url, params={"$top": str(top)})
            entry: dict[str, Any] = {"top": top, "rejected": None}
            if first.status_code == 400:
                match = _TOP_LIMIT.search(first.text)
                if match is None:
                    raise RuntimeError(f"{policy_type.key}: $top={top} refused: {first.text}")
                entry.update(top=int(match.group(1)), rejected=top)
            else:
                first.raise_for_status()
            if walk:
                with_top = _walk(http, f"{url}?$top={entry['top']}")
                without_top = _walk(http, url)
                entry.update(
                    items=with_top[1],
                    pages_with_top=with_top[0],
                    largest_page_with_top=with_top[2],
                    pages_without_top=without_top[0],
                    largest_page_without_top=without_top[2],
                    pages=min(with_top[0], without_top[0]),
                )
            found[policy_type.key] = entry
    return found


def served_chains(probed: Mapping[str, Mapping[str, Any]], paced: list[str]) -> list[Chain]:
    """Chains at the largest page size the simulator served (with or without `$top`)."""
    return [
        Chain(p.key, p.api_version, int(probed[p.key]["pages"]), p.key in paced)
        for p in POLICY_TYPES
    ]


# -- measured runs ---------------------------------------------------------------------------


def _measured(
    sim: SimulatorProcess, cpu: CpuMeter, job: dict[str, Any], rate: float
) -> dict[str, Any]:
    """One run in a fresh process, with the simulator's request tallies and CPU time."""
    tenant_id = job["tenant_id"]
    sim.control.set_options(identity_requests_per_second=rate)  # also refills the buckets
    sim.control.reset_counters()
    before = cpu.snapshot()
    result = run_measured(job)
    after = cpu.snapshot()
    counters = sim.control.counters()
    result["cpu_seconds"] = {"client": result["client_cpu_seconds"], **cpu.delta(before, after)}
    result["graph_requests"] = counters["by_tenant"].get(tenant_id, 0)
    result["graph_by_status"] = counters["by_status"]
    result["throttled"] = int(counters["by_status"].get("429", 0))
    result["token_requests"] = counters["token_requests"].get(tenant_id, 0)
    result["requests_by_type"] = counters["by_tenant_policy_type"].get(tenant_id, {})
    result["max_in_flight"] = counters["max_in_flight"].get(tenant_id, 0)
    if result.get("status") != "success":
        raise RuntimeError(f"a measured {job['kind']} run did not succeed: {result}")
    return result


def _project_job(
    sim: SimulatorProcess, tenant_id: str, database: BenchDatabase, rate: float
) -> dict[str, Any]:
    return {
        **base_job(sim, tenant_id),
        "kind": "sync",
        "identity_rps": rate,
        "database_url": database.url,
        "admin_url": database.admin_url,
    }


def _dlt_job(
    sim: SimulatorProcess,
    tenant_id: str,
    database: BenchDatabase,
    pipelines_dir: str,
    tops: Mapping[str, int],
) -> dict[str, Any]:
    return {
        **base_job(sim, tenant_id),
        "kind": "dlt",
        "database_url": database.admin_url,
        "admin_url": database.admin_url,
        "pipelines_dir": pipelines_dir,
        "tops": dict(tops),
    }


def _check_items(result: dict[str, Any], expected: int, who: str) -> None:
    if result.get("items") != expected:
        raise RuntimeError(f"{who} saw {result.get('items')} items, expected {expected}")


def _project_pair(
    sim: SimulatorProcess,
    factory: DatabaseFactory,
    cpu: CpuMeter,
    tenant_id: str,
    rate: float,
    *,
    resync: bool,
) -> dict[str, dict[str, Any]]:
    database = factory.create("postgresql", [tenant_id], label="peer")
    try:
        job = _project_job(sim, tenant_id, database, rate)
        checkpoint_database(database)
        runs = {"initial": _measured(sim, cpu, job, rate)}
        if resync:
            vacuum_analyze(database)
            checkpoint_database(database)
            runs["resync"] = _measured(sim, cpu, job, rate)
    finally:
        factory.drop(database)
    return runs


def _dlt_pair(
    sim: SimulatorProcess,
    factory: DatabaseFactory,
    cpu: CpuMeter,
    tenant_id: str,
    rate: float,
    tops: Mapping[str, int],
    *,
    resync: bool,
) -> dict[str, dict[str, Any]]:
    database = factory.create_empty("dlt")
    pipelines_dir = factory.workdir / f"dlt_pipelines_{uuid.uuid4().hex[:8]}"
    try:
        job = _dlt_job(sim, tenant_id, database, str(pipelines_dir), tops)
        checkpoint_database(database)
        runs = {"initial": _measured(sim, cpu, job, rate)}
        if resync:
            vacuum_analyze(database, all_tables=True)
            checkpoint_database(database)
            runs["resync"] = _measured(sim, cpu, job, rate)
    finally:
        factory.drop(database)
        shutil.rmtree(pipelines_dir, ignore_errors=True)
    return runs


def require_peer(peer: str) -> str:
    """The peer's version; stops with the install command when it is missing."""
    if peer not in PEERS:
        raise SystemExit(f"unknown peer {peer!r}; choose from {', '.join(PEERS)}")
    if importlib.util.find_spec(peer) is None:
        raise SystemExit(f"the {peer} peer needs the bench extra: pip install -e '.[bench]'")
    return metadata.version(peer)


def run_peer_section(
    sim: SimulatorProcess,
    factory: DatabaseFactory,
    cpu: CpuMeter,
    *,
    peer: str,
    size: int,
    latency_size: int,
    latency_ms: float,
    repeat: int,
    identity_rps: float,
    ca_policies: int,
    named_locations: int,
    log: Log,
) -> dict[str, Any]:
    """Project and peer on the same tenants, alternating within each repetition."""
    version = require_peer(peer)
    paced = paced_keys() if identity_rps > 0 else []
    section: dict[str, Any] = {
        "peer": peer,
        "peer_version": version,
        "identity_rps": identity_rps,
        "paced_types": paced,
        "type_concurrency": TYPE_CONCURRENCY,
        "ca_policies": ca_policies,
        "named_locations": named_locations,
    }
    try:
        sim.control.set_options(identity_requests_per_second=0)
        distribution = peer_sizes(size, ca_policies=ca_policies, named_locations=named_locations)
        tenant_id = peer_tenant(size)
        prepare_tenant(sim, tenant_id, distribution)
        tops = {k: v["top"] for k, v in probe_collections(sim, tenant_id, walk=True).items()}
        section["tops"] = tops
        entry: dict[str, Any] = {
            "items": size,
            "distribution": distribution,
            "project": {"initial": [], "resync": []},
            peer: {"initial": [], "resync": []},
        }
        for rep in range(repeat):
            both = {
                "project": _project_pair(sim, factory, cpu, tenant_id, identity_rps, resync=True),
                peer: _dlt_pair(sim, factory, cpu, tenant_id, identity_rps, tops, resync=True),
            }
            for who, runs in both.items():
                for variant, result in runs.items():
                    _check_items(result, size, who)
                    entry[who][variant].append(result)
                log(
                    f"peer {size} rep {rep + 1} {who}: initial "
                    f"{runs['initial']['wall_seconds']:.2f}s, re-sync "
                    f"{runs['resync']['wall_seconds']:.2f}s"
                )
        section["size"] = entry
        section["latency"] = _latency_case(
            sim,
            factory,
            cpu,
            peer=peer,
            size=latency_size,
            latency_ms=latency_ms,
            repeat=repeat,
            identity_rps=identity_rps,
            paced=paced,
            tops=tops,
            ca_policies=ca_policies,
            named_locations=named_locations,
            log=log,
        )
    finally:
        sim.control.set_options(identity_requests_per_second=0)
    return section


def _latency_case(
    sim: SimulatorProcess,
    factory: DatabaseFactory,
    cpu: CpuMeter,
    *,
    peer: str,
    size: int,
    latency_ms: float,
    repeat: int,
    identity_rps: float,
    paced: list[str],
    tops: Mapping[str, int],
    ca_policies: int,
    named_locations: int,
    log: Log,
) -> dict[str, Any]:
    distribution = peer_sizes(size, ca_policies=ca_policies, named_locations=named_locations)
    tenant_id = LATENCY_PEER_TENANT
    sim.control.set_options(identity_requests_per_second=0)  # probing is not measured
    prepare_tenant(sim, tenant_id, distribution)
    probed = probe_collections(sim, tenant_id, walk=True)
    latency = latency_ms / 1000
    # The simulator adds no latency to its token endpoint: the token round trip counts 0 s.
    chains = served_chains(probed, paced)
    floor = graph_floor(chains, latency=latency, token_seconds=0.0, paced_rate=identity_rps)
    unbounded = graph_floor(
        chains,
        latency=latency,
        token_seconds=0.0,
        paced_rate=identity_rps,
        batches_in_flight=None,
    )
    registry = graph_floor(
        chains_from_items(distribution, POLICY_TYPES, paced=paced),
        latency=latency,
        token_seconds=0.0,
        paced_rate=identity_rps,
    )
    case: dict[str, Any] = {
        "items": size,
        "latency_ms": latency_ms,
        "distribution": distribution,
        "chains": {
            key: {k: v for k, v in entry.items() if k != "top"} for key, entry in probed.items()
        },
        "floor": floor.as_dict(),
        "floor_unbounded_batches": unbounded.as_dict(),
        "floor_from_registry": registry.as_dict(),
        "project": [],
        peer: [],
    }
    sim.control.set_faults(tenant_id, [{"kind": "latency", "ms": latency_ms}])
    try:
        for rep in range(repeat):
            project = _project_pair(sim, factory, cpu, tenant_id, identity_rps, resync=False)
            other = _dlt_pair(sim, factory, cpu, tenant_id, identity_rps, tops, resync=False)
            for who, runs in (("project", project), (peer, other)):
                _check_items(runs["initial"], size, who)
                case[who].append(runs["initial"])
            log(
                f"peer latency {size} rep {rep + 1}: project "
                f"{project['initial']['wall_seconds']:.2f}s, {peer} "
                f"{other['initial']['wall_seconds']:.2f}s, floor {floor.seconds:.2f}s"
            )
    finally:
        sim.control.clear_faults(tenant_id)
    return case
