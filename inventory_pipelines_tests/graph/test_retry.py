"""The wait rules: Retry-After parsing, full jitter, attempt and total-wait bounds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inventory_pipelines.graph.retry import (
    RetryBudget,
    RetryPolicy,
    compute_wait,
    full_jitter_delay,
    parse_retry_after,
)

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "expected"),
    [("0", 0.0), ("1", 1.0), ("  17 ", 17.0), ("300", 300.0), ("2.5", 2.5)],
)
def test_retry_after_delta_seconds(header: str, expected: float) -> None:
    assert parse_retry_after(header) == expected


@pytest.mark.parametrize("header", [None, "", "  ", "-1", "soon", "nan", "inf", "Mon, 99 Foo"])
def test_unusable_retry_after_falls_back_to_backoff(header: str | None) -> None:
    assert parse_retry_after(header) is None


def test_retry_after_http_date_in_the_future() -> None:
    header = format_datetime(NOW + timedelta(seconds=42), usegmt=True)
    assert parse_retry_after(header, now=NOW.timestamp()) == pytest.approx(42.0)


def test_retry_after_http_date_in_the_past_means_now() -> None:
    header = format_datetime(NOW - timedelta(seconds=42), usegmt=True)
    assert parse_retry_after(header, now=NOW.timestamp()) == 0.0


def test_retry_after_rfc850_date() -> None:
    header = (NOW + timedelta(seconds=5)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert parse_retry_after(header, now=NOW.timestamp()) == pytest.approx(5.0)


@given(
    retry_number=st.integers(min_value=1, max_value=200),
    r=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
    base=st.floats(min_value=0.0, max_value=5.0),
    cap=st.floats(min_value=0.0, max_value=60.0),
)
def test_full_jitter_stays_within_the_exponential_cap(
    retry_number: int, r: float, base: float, cap: float
) -> None:
    policy = RetryPolicy(base_delay=base, max_delay=cap)
    delay = full_jitter_delay(policy, retry_number, lambda: r)
    assert 0.0 <= delay <= min(cap, base * 2 ** (retry_number - 1)) + 1e-9


def test_full_jitter_uses_the_whole_range() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=30)
    assert full_jitter_delay(policy, 3, lambda: 0.0) == 0.0
    assert full_jitter_delay(policy, 3, lambda: 0.999) == pytest.approx(0.999 * 2.0)
    assert full_jitter_delay(policy, 20, lambda: 0.999) == pytest.approx(0.999 * 30)


def test_retry_after_is_honoured_exactly_even_above_max_delay() -> None:
    policy = RetryPolicy(max_delay=1, max_total_wait=120)
    assert compute_wait(policy, attempts_made=1, waited=0, retry_after=45) == 45


def test_retry_after_beyond_remaining_budget_gives_up_now() -> None:
    policy = RetryPolicy(max_total_wait=10)
    assert compute_wait(policy, attempts_made=1, waited=0, retry_after=11) is None
    assert compute_wait(policy, attempts_made=1, waited=8, retry_after=3) is None
    assert compute_wait(policy, attempts_made=1, waited=8, retry_after=2) == 2


def test_backoff_is_clamped_to_the_remaining_budget_then_stops() -> None:
    policy = RetryPolicy(base_delay=10, max_delay=100, max_total_wait=12)
    assert compute_wait(policy, attempts_made=2, waited=10, random=lambda: 0.9) == 2
    assert compute_wait(policy, attempts_made=2, waited=12, random=lambda: 0.9) is None


def test_attempts_are_bounded() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert compute_wait(policy, attempts_made=2, waited=0, random=lambda: 0.5) is not None
    assert compute_wait(policy, attempts_made=3, waited=0, random=lambda: 0.5) is None
    assert compute_wait(policy, attempts_made=3, waited=0, retry_after=1) is None


@given(
    r=st.lists(st.floats(min_value=0, max_value=1, exclude_max=True), min_size=1, max_size=50),
    retry_after=st.one_of(st.none(), st.floats(min_value=0, max_value=500)),
)
def test_a_budget_never_exceeds_its_bounds(r: list[float], retry_after: float | None) -> None:
    policy = RetryPolicy(max_attempts=8, base_delay=1, max_delay=20, max_total_wait=60)
    values = iter(r * 10)
    budget = RetryBudget(policy, random=lambda: next(values))
    while True:
        budget.start_attempt()
        wait = budget.next_wait(retry_after)
        if wait is None:
            break
        budget.record_wait(wait)
    assert budget.attempts <= policy.max_attempts
    assert budget.waited <= policy.max_total_wait + 1e-9


def test_invalid_body_retries_are_counted_separately() -> None:
    budget = RetryBudget(RetryPolicy(max_invalid_body_retries=2))
    assert [budget.invalid_body_allowed() for _ in range(3)] == [True, True, False]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"base_delay": -1},
        {"max_total_wait": -1},
        {"max_invalid_body_retries": -1},
    ],
)
def test_policy_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
