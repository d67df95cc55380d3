"""Graph's latency floor (`bench/graph_floor.py`): page chains at the largest page size,
JSON batches of 20 per API version, identity requests paced at 1 per second per tenant."""

from __future__ import annotations

import pytest

from bench.graph_floor import (
    Chain,
    batched_round_trips,
    chains_from_items,
    graph_floor,
    paced_seconds,
    pages_needed,
    registry_max_page,
)
from bench.peer import MAX_CA_POLICIES, paced_keys, peer_sizes
from inventory_pipelines.core.policy_types import POLICY_TYPES, get_policy_type


def test_pages_needed_counts_an_empty_collection_as_one_request() -> None:
    assert pages_needed(0, 999) == 1
    assert pages_needed(999, 999) == 1
    assert pages_needed(1000, 999) == 2
    assert pages_needed(250, 100) == 3
    with pytest.raises(ValueError):
        pages_needed(10, 0)


def test_registry_max_page_is_the_largest_page_the_endpoint_hands_out() -> None:
    # Uncapped Intune lists: 1,000 without $top beats the 999 a $top is clamped to.
    assert registry_max_page(get_policy_type("device_configurations")) == 1000
    # Capped at $top=200, but the endpoint's own page (no $top) is larger.
    feature = get_policy_type("feature_update_profiles")
    assert feature.max_top == 200
    assert registry_max_page(feature) == max(200, feature.server_page_size)
    # No $top at all: the endpoint's page size, unless a limit is given from outside.
    catalog = get_policy_type("settings_catalog_policies")
    expected = max(catalog.server_page_size, min(catalog.max_top or 0, 999))
    assert registry_max_page(catalog) == expected
    assert registry_max_page(catalog, {"settings_catalog_policies": 100}) == 100


def test_batched_round_trips_follow_the_longest_chain_and_the_batch_capacity() -> None:
    assert batched_round_trips([], 20) == (0, 0)
    # 36 one-page chains need two batches of at most 20: two round trips.
    assert batched_round_trips([1] * 36, 20) == (2, 2)
    # One long chain dominates whatever the capacity.
    assert batched_round_trips([8, 1, 1], 20) == (8, 8)
    # Highest level first: 3 chains of 3 pages through 2 slots need ceil(9 / 2) = 5 rounds.
    assert batched_round_trips([3, 3, 3], 2)[0] == 5
    # Unbounded: the longest chain.
    assert batched_round_trips([5, 1] * 30, None) == (5, 0)


def test_paced_requests_are_one_interval_apart_plus_the_last_round_trip() -> None:
    assert paced_seconds([], 0.15, 1.0) == 0.0
    assert paced_seconds([2, 1], 0.15, 1.0) == pytest.approx(2.15)
    assert paced_seconds([1], 0.15, 1.0) == pytest.approx(0.15)
    # When the round trip is longer than the interval the chain itself is the bound.
    assert paced_seconds([4], 2.0, 1.0) == pytest.approx(8.0)


def test_graph_floor_adds_the_token_round_trip_to_the_slower_part() -> None:
    chains = [
        Chain("settings", "beta", 8),
        *(Chain(f"beta{i}", "beta", 1) for i in range(35)),
        Chain("ca", "v1.0", 2, paced=True),
        Chain("nl", "v1.0", 1, paced=True),
        Chain("strengths", "v1.0", 1),
    ]
    floor = graph_floor(chains, latency=0.15)
    assert floor.token_seconds == pytest.approx(0.15)
    assert floor.round_trips_by_version == {"beta": 8, "v1.0": 1}
    assert floor.unpaced_seconds == pytest.approx(8 * 0.15)
    assert floor.paced_requests == 3
    assert floor.paced_seconds == pytest.approx(2.15)
    assert floor.bound_by == "paced"
    assert floor.seconds == pytest.approx(0.15 + 2.15)
    assert floor.requests == 8 + 35 + 2 + 1 + 1
    assert (floor.longest_chain, floor.longest_chain_pages) == ("settings", 8)
    # Without identity pacing the page chains set the floor; the token may cost nothing.
    unpaced = graph_floor(
        [Chain(c.key, c.api_version, c.pages) for c in chains], latency=0.15, token_seconds=0
    )
    assert unpaced.bound_by == "unpaced"
    assert unpaced.seconds == pytest.approx(8 * 0.15)


def test_one_batch_per_version_in_flight_can_cost_more_than_the_longest_chain() -> None:
    chains = [Chain(f"t{i}", "beta", 2) for i in range(30)]
    assert graph_floor(chains, latency=0.1, token_seconds=0).round_trips_by_version == {"beta": 3}
    unbounded = graph_floor(chains, latency=0.1, token_seconds=0, batches_in_flight=None)
    assert unbounded.seconds == pytest.approx(0.2)
    with pytest.raises(ValueError):
        Chain("empty", "beta", 0)


def test_chains_from_items_use_the_registry_and_the_paced_types() -> None:
    sizes = peer_sizes(5000)
    chains = {c.key: c for c in chains_from_items(sizes, POLICY_TYPES, paced=paced_keys())}
    assert len(chains) == len(POLICY_TYPES)
    ca = chains["conditional_access_policies"]
    assert ca.paced and ca.api_version == "v1.0"
    # The largest page the endpoint takes ($top), not the page Graph sends without it.
    assert ca.pages == pages_needed(150, registry_max_page(get_policy_type(ca.key)))
    assert not chains["mobile_apps"].paced


def test_peer_tenants_hold_exactly_their_size_and_a_realistic_identity_share() -> None:
    for total in (400, 5000, 100_000):
        sizes = peer_sizes(total, ca_policies=150 if total > 400 else 3, named_locations=40)
        assert sum(sizes.values()) == total
        assert set(sizes) == {p.key for p in POLICY_TYPES}
        assert all(count >= 0 for count in sizes.values())
    assert peer_sizes(5000)["conditional_access_policies"] == 150
    with pytest.raises(ValueError):
        peer_sizes(5000, ca_policies=MAX_CA_POLICIES + 1)
    with pytest.raises(ValueError):
        peer_sizes(100)
