"""Conditional access endpoints are paced per tenant, so Graph's 1 request/s rule causes no
429s; Entra ID collections outside that documented limit are not slowed down."""

from __future__ import annotations

import threading

import pytest

from inventory_pipelines.core.policy_types import POLICY_TYPES, get_policy_type
from inventory_pipelines.graph.client import GraphClient
from inventory_pipelines.graph.pacing import RequestPacer
from inventory_pipelines.graph.retry import RetryPolicy
from inventory_pipelines.graph.settings import GraphSettings
from inventory_pipelines.simulator import (
    SIMULATOR_CLIENT_ID,
    SIMULATOR_CLIENT_SECRET,
    SimulatorServer,
)

TENANT = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
IDENTITY_TYPES = ["conditional_access_policies", "named_locations"]
UNPACED_ENTRA_TYPES = ["authentication_strengths", "authentication_contexts", "terms_of_use"]


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


def test_pacer_spaces_slots_per_key() -> None:
    fake = FakeTime()
    pacer = RequestPacer(2.0, clock=fake.clock, sleep=fake.sleep, margin=0.0)
    waits = [pacer.wait("a") for _ in range(3)]
    assert waits == [0.0, 0.5, 1.0]
    assert pacer.wait("b") == 0.0  # another tenant has its own budget
    fake.now += 10
    assert pacer.wait("a") == 0.0  # idle time is not banked beyond one slot


def test_pacer_zero_disables() -> None:
    pacer = RequestPacer(0)
    assert [pacer.wait("a") for _ in range(5)] == [0.0] * 5
    with pytest.raises(ValueError):
        RequestPacer(-1)


def test_only_the_documented_conditional_access_types_are_paced() -> None:
    paced = sorted(t.key for t in POLICY_TYPES if t.throttle_class == "identity")
    assert paced == sorted(IDENTITY_TYPES)
    for key in UNPACED_ENTRA_TYPES:
        assert get_policy_type(key).throttle_class == "directory"
        assert get_policy_type(key).entra


def test_unpaced_entra_types_fetch_without_waiting(sim: SimulatorServer) -> None:
    sim.control.set_options(identity_requests_per_second=1)
    sim.control.configure_tenant(TENANT, seed=1, default_size=150)
    settings = GraphSettings(
        client_id=SIMULATOR_CLIENT_ID,
        client_secret=SIMULATOR_CLIENT_SECRET,
        base_url=sim.base_url,
        authority_url=sim.base_url,
    )
    slept: list[float] = []
    with GraphClient(settings, retry=RetryPolicy(max_attempts=1), sleep=slept.append) as client:
        for key in UNPACED_ENTRA_TYPES:
            fetch = client.fetch(TENANT, key)
            assert sum(len(page.items) for page in fetch) == 150
            assert fetch.stats.pages == 2  # 100 per page: two requests within one second
    assert slept == []  # the pacer never held a request back
    assert "429" not in sim.control.counters()["by_status"]


def test_paced_identity_fetches_are_never_throttled(sim: SimulatorServer) -> None:
    sim.control.set_options(identity_requests_per_second=5)
    sim.control.configure_tenant(TENANT, seed=1, default_size=3)
    settings = GraphSettings(
        client_id=SIMULATOR_CLIENT_ID,
        client_secret=SIMULATOR_CLIENT_SECRET,
        base_url=sim.base_url,
        authority_url=sim.base_url,
    )
    retry = RetryPolicy(max_attempts=1)  # any 429 would fail the type outright
    results: dict[str, int] = {}
    with GraphClient(settings, retry=retry, identity_requests_per_second=4.5) as client:

        def fetch(key: str) -> None:
            results[key] = sum(len(page.items) for page in client.fetch(TENANT, key))

        threads = [threading.Thread(target=fetch, args=(k,)) for k in IDENTITY_TYPES]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert results == {k: len(sim.control.items(TENANT, k)) for k in IDENTITY_TYPES}
    assert "429" not in sim.control.counters()["by_status"]


def test_pacer_keeps_a_safety_margin_by_default() -> None:
    """Slots a little wider than 1/rate, so jitter on the way never lands two in one second."""
    fake = FakeTime()
    pacer = RequestPacer(1.0, clock=fake.clock, sleep=fake.sleep)
    assert [pacer.wait("a") for _ in range(3)] == pytest.approx([0.0, 1.1, 2.2])


def test_reserve_takes_the_slot_without_waiting() -> None:
    fake = FakeTime()
    pacer = RequestPacer(1.0, clock=fake.clock, sleep=fake.sleep, margin=0.0)
    assert [pacer.reserve("a") for _ in range(3)] == [0.0, 1.0, 2.0]
    assert fake.slept == []  # the caller decides when to send
    assert pacer.wait("a") == 3.0 and fake.slept == [3.0]


def test_claim_takes_a_slot_only_when_it_has_started() -> None:
    """Spacing between actual sends: a sender that comes round late does not bring the
    next one closer."""
    fake = FakeTime()
    pacer = RequestPacer(1.0, clock=fake.clock, sleep=fake.sleep, margin=0.0)
    assert pacer.claim("a") == 0.0
    assert pacer.claim("a") == 1.0  # nothing taken: asking again gives the same answer
    fake.now += 0.4
    assert pacer.claim("a") == pytest.approx(0.6)
    assert pacer.claim("b") == 0.0  # per key
    fake.now += 1.5  # the first sender after the slot freed comes round late…
    assert pacer.claim("a") == 0.0
    assert pacer.claim("a") == 1.0  # …and the next slot is a full interval after it
    assert fake.slept == []
