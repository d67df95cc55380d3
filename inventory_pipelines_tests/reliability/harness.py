"""Shared pieces of the reliability tests: one tenant, one multi-type selection, fast retries,
a Graph client per sync run (as the Dagster resource builds it), and the ground-truth checks."""

from __future__ import annotations

import contextlib
import functools
import json
import ssl
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import Engine, func, select

from inventory_pipelines.core.metadata import display_name_of, whitelist_metadata
from inventory_pipelines.core.policy_types import get_policy_type
from inventory_pipelines.core.schema import items as items_table
from inventory_pipelines.core.selection import Selection, validate_payload
from inventory_pipelines.core.store import COMPLETE, InventoryStore
from inventory_pipelines.graph.client import GraphClient
from inventory_pipelines.graph.retry import RetryPolicy
from inventory_pipelines.graph.sync import SyncOptions, SyncSummary, sync_partition
from inventory_pipelines.simulator import SimulatorServer
from inventory_pipelines_tests.simulator_fixtures import simulator_settings

TENANT = "5b7e0c2d-3f4a-4b8c-9d1e-2f3a4b5c6d7e"
CATALOG = "settings_catalog_policies"
SIZES = {
    CATALOG: 60,  # limit 25 (below), so 3 pages: faults can strike mid-listing
    "feature_update_profiles": 30,  # update profiles: $top capped at 200
    "compliance_policies": 30,
    "device_configurations": 30,
    "mobile_apps": 40,
    "scope_tags": 20,
}
SELECTION = Selection("reliability", validate_payload({"policy_types": sorted(SIZES)}))
FAST_RETRY = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05, max_total_wait=2.0)

Truth = dict[str, dict[str, dict[str, Any]]]
"""policy type -> external id -> the item as a complete, fault-free listing returns it."""


CATALOG_MAX_TOP = 25
"""The settings catalog's `$top` limit here: the client learns it on the first page."""


def configure_tenant(sim: SimulatorServer, tenant_id: str = TENANT) -> None:
    sim.control.configure_tenant(tenant_id, seed=23, sizes=SIZES)
    sim.control.set_options(settings_catalog_max_top=CATALOG_MAX_TOP)


def ground_truth(sim: SimulatorServer, tenant_id: str = TENANT) -> Truth:
    return {
        key: {item["id"]: item for item in sim.control.items(tenant_id, key)}
        for key in SELECTION.policy_types
    }


@functools.cache
def _shared_ssl_context() -> ssl.SSLContext:
    """Built once: a default httpx transport loads the CA bundle anew (~0.1 s) per client."""
    return ssl.create_default_context()


def loopback_transport() -> httpx.HTTPTransport:
    """The real HTTP transport, minus the per-client cost of building an SSL context."""
    return httpx.HTTPTransport(verify=_shared_ssl_context())


class RecordingTransport(httpx.BaseTransport):
    """The real HTTP transport, noting every bearer token sent and every access token issued."""

    def __init__(self) -> None:
        self._inner = loopback_transport()
        self._lock = threading.Lock()
        self.tokens: set[str] = set()
        self.token_responses = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        authorization = request.headers.get("authorization", "")
        if authorization:
            self._note(authorization.removeprefix("Bearer ").strip())
        response = self._inner.handle_request(request)
        if request.url.path.endswith("/oauth2/v2.0/token"):
            response.read()
            with self._lock:
                self.token_responses += 1
            with contextlib.suppress(ValueError, AttributeError):
                self._note(json.loads(response.content).get("access_token") or "")
        return response

    def _note(self, token: str) -> None:
        if token:
            with self._lock:
                self.tokens.add(token)

    def close(self) -> None:
        self._inner.close()


def run_sync(
    sim: SimulatorServer,
    store: InventoryStore,
    *,
    transport: httpx.BaseTransport | None = None,
    options: SyncOptions | None = None,
    **settings: Any,
) -> SyncSummary:
    """One sync run with its own client (its own token cache), like one Dagster run."""
    with GraphClient(
        simulator_settings(sim, **settings),
        retry=FAST_RETRY,
        identity_requests_per_second=0,
        transport=transport or loopback_transport(),
    ) as client:
        return sync_partition(store, client, TENANT, SELECTION, options=options)


@dataclass(frozen=True)
class StoredItem:
    display_name: str | None
    meta: dict[str, Any]
    last_seen_run_id: int


def stored_items(engine: Engine, tenant_id: str = TENANT) -> dict[str, dict[str, StoredItem]]:
    """policy type -> external id -> the stored row (superuser/owner connection: no RLS)."""
    stored: dict[str, dict[str, StoredItem]] = {}
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                items_table.c.policy_type,
                items_table.c.external_id,
                items_table.c.display_name,
                items_table.c.meta_jsonb,
                items_table.c.last_seen_run_id,
            ).where(items_table.c.tenant_id == tenant_id)
        ).all()
    for policy_type, external_id, name, meta, run_id in rows:
        stored.setdefault(policy_type, {})[external_id] = StoredItem(name, meta, int(run_id))
    return stored


def duplicate_rows(engine: Engine) -> list[tuple[Any, ...]]:
    """(tenant, type, external id) keys stored more than once; must always be empty."""
    key = (items_table.c.tenant_id, items_table.c.policy_type, items_table.c.external_id)
    with engine.connect() as conn:
        return [
            tuple(row)
            for row in conn.execute(
                select(*key, func.count()).group_by(*key).having(func.count() > 1)
            )
        ]


def check_against_truth(
    engine: Engine,
    summary: SyncSummary,
    truth: Truth,
    outcomes: Mapping[str, str],
    stored: Mapping[str, Mapping[str, StoredItem]] | None = None,
) -> int:
    """Compare the database with ground truth after `summary`'s run; returns items checked.

    Every ground-truth item is stored exactly once with its whitelisted content; every item
    of a completely fetched type carries this run's id; for a type that failed, exactly the
    items it observed before failing carry it.
    """
    assert duplicate_rows(engine) == []
    stored = stored if stored is not None else stored_items(engine)
    checked = 0
    for key, expected in truth.items():
        rows: Mapping[str, StoredItem] = stored.get(key, {})
        assert set(rows) == set(expected), f"{key}: stored ids differ from ground truth"
        name_field = get_policy_type(key).name_field
        for external_id, item in expected.items():
            row = rows[external_id]
            assert row.display_name == display_name_of(item, name_field), (key, external_id)
            assert row.meta == whitelist_metadata(item), (key, external_id)
        this_run = {i for i, row in rows.items() if row.last_seen_run_id == summary.run_id}
        if outcomes[key] == COMPLETE:
            assert this_run == set(expected), f"{key}: complete but items not seen in this run"
        else:
            assert len(this_run) == summary.types[key].counts.observed, key
        checked += len(expected)
    return checked


@contextlib.contextmanager
def faults(sim: SimulatorServer, rules: list[dict[str, Any]]) -> Iterator[None]:
    """Faults active for the block only, with counters zeroed so what fired can be read."""
    sim.control.reset_counters()
    sim.control.set_faults(TENANT, rules)
    try:
        yield
    finally:
        sim.control.clear_faults()


def fault_fired(sim: SimulatorServer, kind: str, *, within: float = 3.0) -> bool:
    """Whether the simulator applied a fault of `kind` since the counters were reset.

    A delayed response is counted when the simulator finally sends it, after the client has
    given up on it, hence the short wait.
    """
    deadline = time.monotonic() + within
    while True:
        if sim.control.counters()["faults_applied"].get(kind, 0) >= 1:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
