"""Throttling reported honestly: the wall time a sync was held up, and the sum over workers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine

from inventory_pipelines.core.selection import Selection, validate_payload
from inventory_pipelines.core.store import InventoryStore
from inventory_pipelines.core.tenants import add_tenant
from inventory_pipelines.graph.client import GraphClient
from inventory_pipelines.graph.fetch import wall_seconds
from inventory_pipelines.graph.retry import RetryPolicy
from inventory_pipelines.graph.summary import format_summary, summary_as_dict
from inventory_pipelines.graph.sync import SyncOptions, sync_partition
from inventory_pipelines.simulator import SimulatorServer
from inventory_pipelines_tests.simulator_fixtures import simulator_client

TENANT = "7a7b7c7d-0000-4000-8000-00000000aaaa"
THROTTLED = ("compliance_policies", "device_configurations", "scope_tags", "assignment_filters")
SELECTION = Selection("throttled", validate_payload({"policy_types": list(THROTTLED)}))


@pytest.mark.parametrize(
    ("intervals", "expected"),
    [
        ([], 0.0),
        ([(0.0, 1.0)], 1.0),
        ([(0.0, 1.0), (0.0, 1.0), (0.0, 1.0)], 1.0),  # three workers waiting at once
        ([(0.0, 1.0), (2.0, 3.0)], 2.0),
        ([(0.0, 2.0), (1.0, 3.0)], 3.0),
        ([(1.0, 3.0), (0.0, 10.0), (4.0, 5.0)], 10.0),
    ],
)
def test_wall_seconds_is_the_length_of_the_union(
    intervals: list[tuple[float, float]], expected: float
) -> None:
    assert wall_seconds(intervals) == pytest.approx(expected)


spans = st.lists(
    st.tuples(st.floats(0, 100), st.floats(0, 10)).map(lambda p: (p[0], p[0] + p[1])),
    max_size=20,
)


@given(spans)
def test_wall_seconds_is_between_the_longest_wait_and_the_sum(
    intervals: list[tuple[float, float]],
) -> None:
    wall = wall_seconds(intervals)
    lengths = [end - start for start, end in intervals]
    assert max(lengths, default=0.0) - 1e-9 <= wall <= sum(lengths) + 1e-9
    if intervals:
        assert wall <= max(e for _, e in intervals) - min(s for s, _ in intervals) + 1e-9


@pytest.fixture
def client(sim: SimulatorServer) -> Iterator[GraphClient]:
    with simulator_client(
        sim, RetryPolicy(max_attempts=4, base_delay=0.01, max_total_wait=5.0)
    ) as graph:
        yield graph


def test_parallel_throttled_types_report_wall_time_below_the_summed_waits(
    engine: Engine, sim: SimulatorServer, client: GraphClient
) -> None:
    add_tenant(engine, TENANT, "Throttled")
    sim.control.configure_tenant(TENANT, seed=5, default_size=3)
    # Every type's first request is answered 429 with Retry-After 1: four workers wait at once.
    sim.control.set_faults(
        TENANT,
        [{"kind": "throttle", "policy_type": t, "retry_after": 1, "count": 1} for t in THROTTLED],
    )
    summary = sync_partition(
        InventoryStore(engine), client, TENANT, SELECTION, options=SyncOptions(type_concurrency=4)
    )
    assert summary.status == "success"
    assert summary.throttle_wait_sum_seconds == pytest.approx(4.0)
    # The four 1-second waits overlapped: the sync was held up about one second, not four.
    assert 1.0 <= summary.throttle_wait_wall_seconds < 2.0
    assert summary.throttle_wait_wall_seconds <= summary.duration_seconds
    as_json = summary_as_dict(summary)
    assert as_json["throttle_wait_sum_seconds"] == pytest.approx(4.0)
    assert as_json["throttle_wait_wall_seconds"] == pytest.approx(
        summary.throttle_wait_wall_seconds, abs=1e-3
    )
    assert "held up 1." in format_summary(summary)
