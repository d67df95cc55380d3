"""The latency floor of one tenant's sync, from Graph's limits rather than any client's choices.

Any client that reads every collection of a tenant, with `latency` seconds per Graph round
trip, needs at least:

1. one token request round trip (`token_seconds`);
2. then, in parallel:
   - **the unpaced collections**: each collection is a chain of pages (a next link is only
     known once the previous page arrived) at the *largest* page size the endpoint accepts.
     With JSON batching a round trip carries up to `batch_limit` (20) requests of one API
     version, at most one page of each chain. With `batches_in_flight` batches per API version
     at a time, the fewest round trips for that version are those of the highest-level-first
     schedule (Hu's algorithm, optimal for chains of unit tasks): it is at least the longest
     chain and at least `ceil(requests / (batch_limit * batches_in_flight))`. API versions
     batch separately and concurrently.
   - **the identity-paced collections** (Entra's 1 request/s per tenant, e.g. conditional
     access policies and named locations): N paced requests, serialized, cost at least
     `(N - 1) / rate` seconds between the first and the last send, plus the last one's round
     trip; and no paced chain finishes faster than its own pages one after another.

The floor is `token + max(unpaced, paced)`. Everything here is pure: the inputs are page
counts per collection (`Chain`), which the bench reads from the simulator and
`pages_needed`/`registry_max_page` derive from item counts and the registry.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from inventory_pipelines.core.policy_types import PolicyType

BATCH_LIMIT = 20
"""Graph's JSON batching: at most 20 requests per `$batch`."""
CLAMPED_MAX_TOP = 999
"""The largest `$top` Graph's uncapped Intune lists honour (larger values are clamped)."""
PACED_REQUESTS_PER_SECOND = 1.0
"""Entra's conditional-access limit, per tenant (429 without Retry-After)."""


@dataclass(frozen=True)
class Chain:
    """One collection's page chain at the largest page size its endpoint accepts."""

    key: str
    api_version: str
    pages: int
    paced: bool = False

    def __post_init__(self) -> None:
        if self.pages < 1:
            raise ValueError(f"{self.key}: a collection costs at least one request")


@dataclass(frozen=True)
class Floor:
    """The floor and its parts (seconds; round trips of the unpaced part per API version)."""

    seconds: float
    token_seconds: float
    unpaced_seconds: float
    paced_seconds: float
    bound_by: str
    """`unpaced` or `paced`: the part that sets the floor."""
    requests: int
    paced_requests: int
    round_trips_by_version: dict[str, int] = field(default_factory=dict)
    batches_by_version: dict[str, int] = field(default_factory=dict)
    longest_chain: str = ""
    longest_chain_pages: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def pages_needed(items: int, page_size: int) -> int:
    """Requests to list `items` at `page_size` per page; an empty list still costs one."""
    if page_size < 1:
        raise ValueError("page_size must be positive")
    return max(1, math.ceil(items / page_size))


def registry_max_page(policy_type: PolicyType, overrides: Mapping[str, int] | None = None) -> int:
    """The largest page the endpoint hands out: its own page size without `$top`, or the
    largest `$top` it accepts (capped ones reject more, the others clamp at 999), whichever is
    larger. `overrides` (policy type key → accepted maximum) take precedence, for limits a
    simulator or Graph sets outside the registry."""
    if overrides and policy_type.key in overrides:
        return max(overrides[policy_type.key], 1)
    with_top = min(policy_type.max_top, CLAMPED_MAX_TOP) if policy_type.max_top else 0
    return max(policy_type.server_page_size, with_top)


def chains_from_items(
    items_by_type: Mapping[str, int],
    policy_types: Iterable[PolicyType],
    *,
    paced: Iterable[str],
    overrides: Mapping[str, int] | None = None,
) -> list[Chain]:
    """Chains for a tenant with these item counts, page sizes from the registry."""
    paced_keys = set(paced)
    return [
        Chain(
            p.key,
            p.api_version,
            pages_needed(items_by_type.get(p.key, 0), registry_max_page(p, overrides)),
            p.key in paced_keys,
        )
        for p in policy_types
    ]


def batched_round_trips(pages: Iterable[int], capacity: int | None) -> tuple[int, int]:
    """(round trips, `$batch` requests) to walk these chains when one round trip carries at
    most `capacity` requests, one per chain (None: unbounded). Highest level first: each
    round takes the chains with the most pages left."""
    remaining = sorted((p for p in pages if p > 0), reverse=True)
    if not remaining:
        return 0, 0
    if capacity is None:
        return remaining[0], 0
    rounds = 0
    batches = 0
    while remaining:
        taken = min(capacity, len(remaining))
        batches += math.ceil(taken / BATCH_LIMIT)
        remaining = sorted(
            [p - 1 for p in remaining[:taken] if p > 1] + remaining[taken:], reverse=True
        )
        rounds += 1
    return rounds, batches


def paced_seconds(pages: Iterable[int], latency: float, rate: float) -> float:
    """Lower bound for serialized paced chains: sends 1/rate apart, the last round trip
    after the last send; never less than the longest paced chain walked back to back."""
    chains = [p for p in pages if p > 0]
    if not chains:
        return 0.0
    spacing = (sum(chains) - 1) / rate if rate > 0 else 0.0
    return max(spacing + latency, max(chains) * latency)


def graph_floor(
    chains: Iterable[Chain],
    *,
    latency: float,
    token_seconds: float | None = None,
    paced_rate: float = PACED_REQUESTS_PER_SECOND,
    batch_limit: int = BATCH_LIMIT,
    batches_in_flight: int | None = 1,
) -> Floor:
    """The floor in seconds for these chains at `latency` seconds per round trip.

    `token_seconds` defaults to one round trip. `batches_in_flight` is how many `$batch`
    requests per API version may be in flight at once (None: no bound, the floor is then the
    longest chain).
    """
    if latency < 0 or batch_limit < 1:
        raise ValueError("latency must not be negative and batch_limit must be positive")
    chains = list(chains)
    token = latency if token_seconds is None else token_seconds
    capacity = None if batches_in_flight is None else batch_limit * batches_in_flight
    rounds: dict[str, int] = {}
    batches: dict[str, int] = {}
    for version in sorted({c.api_version for c in chains}):
        pages = [c.pages for c in chains if c.api_version == version and not c.paced]
        if pages:
            rounds[version], batches[version] = batched_round_trips(pages, capacity)
    unpaced = max(rounds.values(), default=0) * latency
    paced_pages = [c.pages for c in chains if c.paced]
    paced = paced_seconds(paced_pages, latency, paced_rate)
    longest = max(chains, key=lambda c: c.pages) if chains else None
    return Floor(
        seconds=token + max(unpaced, paced),
        token_seconds=token,
        unpaced_seconds=unpaced,
        paced_seconds=paced,
        bound_by="paced" if paced > unpaced else "unpaced",
        requests=sum(c.pages for c in chains),
        paced_requests=sum(paced_pages),
        round_trips_by_version=rounds,
        batches_by_version=batches,
        longest_chain=longest.key if longest else "",
        longest_chain_pages=longest.pages if longest else 0,
    )
