"""Syncs through JSON batches against the real simulator: round trips, per-request faults,
fallback to GETs when `$batch` is refused, the switch, and results equal to GET syncs."""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from inventory_pipelines.core.errors import ConfigurationError
from inventory_pipelines.core.policy_types import POLICY_TYPES
from inventory_pipelines.core.schema import items as items_table
from inventory_pipelines.core.selection import Selection, validate_payload
from inventory_pipelines.core.store import InventoryStore
from inventory_pipelines.core.tenants import add_tenant
from inventory_pipelines.graph.client import GraphClient
from inventory_pipelines.graph.retry import RetryPolicy
from inventory_pipelines.graph.settings import GraphSettings
from inventory_pipelines.graph.summary import format_summary, summary_as_dict
from inventory_pipelines.graph.sync import SyncSummary, TypeSummary, sync_partition
from inventory_pipelines.simulator import SimulatorServer
from inventory_pipelines_tests.simulator_fixtures import simulator_settings

TENANT = "6c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"
CATALOG = "settings_catalog_policies"
ALL = Selection("all", validate_payload({"policy_types": [t.key for t in POLICY_TYPES]}))
FAST_RETRY = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05, max_total_wait=5.0)


def sync(
    sim: SimulatorServer,
    store: InventoryStore,
    transport: httpx.BaseTransport | None = None,
    **overrides: Any,
) -> SyncSummary:
    with GraphClient(
        simulator_settings(sim, **overrides),
        retry=FAST_RETRY,
        identity_requests_per_second=0,
        transport=transport,
    ) as client:
        return sync_partition(store, client, TENANT, ALL)


@pytest.fixture
def store(engine: Engine, sim: SimulatorServer) -> Iterator[InventoryStore]:
    add_tenant(engine, TENANT, "Batch Ltd")
    sim.control.configure_tenant(TENANT, seed=11, sizes={CATALOG: 300})
    yield InventoryStore(engine)


def stored(engine: Engine) -> dict[tuple[str, str], tuple[str | None, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                items_table.c.policy_type,
                items_table.c.external_id,
                items_table.c.display_name,
                items_table.c.meta_jsonb,
            ).where(items_table.c.tenant_id == TENANT)
        ).all()
    return {(t, i): (name, meta) for t, i, name, meta in rows}


def truth(sim: SimulatorServer) -> set[tuple[str, str]]:
    return {(t.key, item["id"]) for t in POLICY_TYPES for item in sim.control.items(TENANT, t.key)}


def test_a_batched_sync_takes_about_as_many_round_trips_as_its_longest_chain(
    store: InventoryStore, sim: SimulatorServer, engine: Engine
) -> None:
    summary = sync(sim, store)
    assert (summary.status, summary.error_codes) == ("success", [])
    counters = sim.control.counters()
    catalog = summary.types[CATALOG]
    # 300 items: $top=999 refused, then 100 learned: 3 pages, 4 requests, the longest chain.
    assert (catalog.pages, catalog.requests) == (3, 4)
    longest = max(t.requests for t in summary.types.values())
    assert summary.batch_rounds == longest == 4
    # 36 beta types in two envelopes, 5 v1.0 in one, then only the open chains.
    assert summary.envelopes == counters["batches"][TENANT] <= 3 + 2 * (longest - 1)
    assert counters["batched_requests"] == {TENANT: counters["total"]}  # no plain GET
    # 41 first pages, 2 more catalog pages and one refused `$top` each for both settings
    # catalog lists: 45 requests, the same as unbatched GETs, in 7 round trips.
    assert counters["total"] == summary.total("requests") == 45
    assert set(stored(engine)) == truth(sim)
    assert summary_as_dict(summary)["envelopes"] == summary.envelopes
    assert f"in {summary.envelopes} $batch envelopes" in format_summary(summary)


def test_batched_and_unbatched_syncs_store_the_same_inventory(
    store: InventoryStore, sim: SimulatorServer, engine: Engine
) -> None:
    unbatched = sync(sim, store, batching=False)
    assert unbatched.envelopes == 0 and sim.control.counters()["batches"] == {}
    assert unbatched.total("requests") == sim.control.counters()["total"] == 45  # GETs
    before = stored(engine)
    assert set(before) == truth(sim)
    batched = sync(sim, store)
    assert batched.status == "success" and batched.envelopes > 0
    assert (batched.items_inserted, batched.items_updated) == (0, 0)
    assert stored(engine) == before


def test_throttled_requests_in_a_batch_wait_on_their_own_and_recover(
    store: InventoryStore, sim: SimulatorServer
) -> None:
    sim.control.set_faults(
        TENANT,
        [
            {"kind": "throttle", "policy_type": CATALOG, "retry_after": 1, "skip": 1, "count": 1},
            {"kind": "throttle", "policy_type": "mobile_apps", "retry_after": None, "count": 2},
            {"kind": "status", "status": 503, "policy_type": "scope_tags", "count": 1},
        ],
    )
    summary = sync(sim, store)
    assert (summary.status, summary.error_codes) == ("success", [])
    catalog, apps = summary.types[CATALOG], summary.types["mobile_apps"]
    assert catalog.retries == 1 and catalog.throttle_wait_seconds == pytest.approx(1.0)
    assert apps.retries == 2 and apps.throttle_wait_seconds < 1.0  # backoff, no Retry-After
    assert summary.types["scope_tags"].retries == 1
    assert summary.throttle_wait_wall_seconds >= 1.0
    counters = sim.control.counters()
    assert counters["batched_requests"] == {TENANT: counters["total"]}
    assert counters["by_status"]["429"] == 3


def test_a_forbidden_type_fails_alone_and_a_revoked_token_is_refreshed(
    store: InventoryStore, sim: SimulatorServer
) -> None:
    sim.control.set_faults(
        TENANT,
        [
            {"kind": "status", "status": 403, "policy_type": "compliance_policies"},
            {"kind": "revoke_tokens", "policy_type": CATALOG, "skip": 1, "count": 1},
        ],
    )
    summary = sync(sim, store)
    assert (summary.status, summary.error_codes) == ("partial", ["forbidden"])
    failed = {k for k, t in summary.types.items() if t.outcome != "complete"}
    assert failed == {"compliance_policies"}
    assert summary.types["compliance_policies"].retries == 0
    assert summary.types[CATALOG].retries == 1
    counters = sim.control.counters()
    assert counters["token_requests"] == {TENANT: 2}
    assert counters["batched_requests"] == {TENANT: counters["total"]}


def test_a_refused_batch_endpoint_falls_back_to_gets_logged_once(
    store: InventoryStore,
    sim: SimulatorServer,
    engine: Engine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sim.control.set_options(batch_enabled=False)
    with caplog.at_level(logging.WARNING):
        first = sync(sim, store)
        second = sync(sim, store)
    assert first.status == second.status == "success"
    assert set(stored(engine)) == truth(sim)
    counters = sim.control.counters()
    refused = counters["batch_by_status"]
    assert set(refused) == {"404"} and refused["404"] == first.envelopes <= 3
    assert second.envelopes == 0  # remembered for the process
    warnings = [r for r in caplog.records if "refused $batch" in r.getMessage()]
    assert len(warnings) == 1
    assert "HTTP 404" in warnings[0].getMessage()
    assert sim.client_secret not in caplog.text


class _FlakyBatches(httpx.BaseTransport):
    """Answers the first `$batch` POSTs itself (a throttled envelope, a lost connection)."""

    def __init__(self, failures: list[httpx.Response | Exception]) -> None:
        self._inner = httpx.HTTPTransport()
        self._failures = failures
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path.endswith("/$batch"):
            with self._lock:
                failure = self._failures.pop(0) if self._failures else None
            if isinstance(failure, Exception):
                raise failure
            if failure is not None:
                return failure
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


def test_transient_envelope_failures_are_retried_not_a_fallback(
    store: InventoryStore, sim: SimulatorServer, engine: Engine
) -> None:
    flaky = _FlakyBatches(
        [
            httpx.Response(429, headers={"Retry-After": "0"}),
            httpx.ConnectError("connection refused"),
        ]
    )
    summary = sync(sim, store, transport=flaky)
    assert (summary.status, summary.error_codes) == ("success", [])
    assert summary.envelopes > 3 and sim.control.counters()["batch_by_status"].keys() == {"200"}
    assert set(stored(engine)) == truth(sim)


def test_batching_can_be_switched_off_by_environment() -> None:
    env = {"GRAPH_CLIENT_ID": "app", "GRAPH_CLIENT_SECRET": "s3cret-value"}
    assert GraphSettings.from_env(env).batching is True
    assert GraphSettings.from_env({**env, "GRAPH_BATCHING": "off"}).batching is False
    assert GraphSettings.from_env({**env, "GRAPH_BATCHING": " ON "}).batching is True
    with pytest.raises(ConfigurationError, match="GRAPH_BATCHING must be 'on' or 'off'"):
        GraphSettings.from_env({**env, "GRAPH_BATCHING": "sometimes"})


def test_switched_off_the_sync_sends_only_gets(store: InventoryStore, sim: SimulatorServer) -> None:
    summary = sync(sim, store, batching=False)
    assert summary.status == "success"
    counters = sim.control.counters()
    assert counters["batches"] == {} and counters["by_method"] == {"GET": counters["total"]}


def test_an_answer_that_is_not_a_batch_response_falls_back_to_gets(
    store: InventoryStore, sim: SimulatorServer, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    proxy_page = httpx.Response(200, content=b"<html>Batching is not supported</html>")
    with caplog.at_level(logging.WARNING):
        summary = sync(sim, store, transport=_FlakyBatches([proxy_page]))
    assert (summary.status, summary.error_codes) == ("success", [])
    assert set(stored(engine)) == truth(sim)
    assert "not a batch response" in caplog.text


def test_answers_missing_from_an_envelope_are_asked_again(
    store: InventoryStore, sim: SimulatorServer, engine: Engine
) -> None:
    summary = sync(
        sim, store, transport=_FlakyBatches([httpx.Response(200, json={"responses": []})])
    )
    assert (summary.status, summary.error_codes) == ("success", [])
    assert summary.total("retries") >= 1
    assert set(stored(engine)) == truth(sim)


class _PacedSendTimes(httpx.BaseTransport):
    """Records when each request carrying an identity-paced sub-request leaves the client."""

    def __init__(self) -> None:
        self._inner = httpx.HTTPTransport()
        self.sent: list[float] = []
        self._paced_paths = tuple(
            t.graph_path for t in POLICY_TYPES if t.throttle_class == "identity"
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/$batch"):
            urls = [sub["url"] for sub in json.loads(request.content)["requests"]]
        else:
            urls = [request.url.path]
        if any(path in url for url in urls for path in self._paced_paths):
            self.sent.append(time.monotonic())
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


def test_paced_requests_wait_for_their_slot_without_holding_up_other_chains(
    store: InventoryStore, sim: SimulatorServer
) -> None:
    """Identity pacing on both sides: the paced chains take their slots 1.1 s apart while
    every other chain's rounds go on, so the sync lasts about as long as the paced chain."""
    sim.control.set_options(identity_requests_per_second=1)
    sim.control.configure_tenant(
        TENANT,
        seed=11,
        sizes={CATALOG: 300, "conditional_access_policies": 150, "named_locations": 40},
    )
    began = time.monotonic()
    done_after: dict[str, float] = {}

    def record(type_summary: TypeSummary) -> None:
        done_after[type_summary.policy_type] = time.monotonic() - began

    transport = _PacedSendTimes()
    with GraphClient(
        simulator_settings(sim),
        retry=FAST_RETRY,
        identity_requests_per_second=1,
        transport=transport,
    ) as client:
        summary = sync_partition(store, client, TENANT, ALL, on_type_done=record)
    assert summary.status == "success"
    paced = [summary.types[k].requests for k in ("conditional_access_policies", "named_locations")]
    # The slots were kept where the client decides: no two paced requests left less than
    # Graph's second apart, one per envelope. (Whether the simulator, sharing this process
    # and its GIL, saw them arrive that far apart depends on the machine's load.)
    gaps = [b - a for a, b in itertools.pairwise(transport.sent)]
    assert len(transport.sent) == sum(paced)
    assert min(gaps) >= 1.0, gaps
    # The paced requests set the wall time; the unpaced rounds ran meanwhile.
    slots = (sum(paced) - 1) * 1.1
    # Pacing held: the paced requests cannot finish before their last slot (a lower bound,
    # never a timing that load could break).
    assert summary.duration_seconds >= slots, (paced, summary.duration_seconds)
    catalog = summary.types[CATALOG]
    assert catalog.pages == 3 and catalog.outcome == "complete"
    # The catalog's three rounds never waited for an identity slot: it was done before the
    # paced chain's last slot (holding its rounds for the slots made it finish after it).
    assert done_after[CATALOG] < slots, done_after
