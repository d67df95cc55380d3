"""The wait rules: Retry-After parsing, full jitter, attempt and total-wait bounds."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from inventory_pipelines.core.errors import ErrorCode
from inventory_pipelines.graph.responses import GraphErrorDetail
from inventory_pipelines.graph.retry import (
    Failure,
    RetryBudget,
    RetryPolicy,
    call_with_retries,
    compute_wait,
    full_jitter_delay,
    parse_retry_after,
    status_failure,
    transport_failure,
)

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


class GaveUp(Exception):
    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.reason)
        self.failure = failure


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
    slept: list[float] = []
    with pytest.raises(GaveUp):
        call_with_retries(
            budget,
            lambda _: Failure(ErrorCode.THROTTLED, "HTTP 429", 429, retry_after),
            give_up=GaveUp,
            on_wait=lambda *_: None,
            sleep=slept.append,
        )
    assert budget.attempts <= policy.max_attempts
    assert budget.waited == pytest.approx(sum(slept))
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


# -- classification: one set of rules for Graph and the token endpoint ----------------------


def test_a_throttled_answer_waits_what_retry_after_says_else_what_the_body_says() -> None:
    headers = httpx.Headers({"retry-after": "7"})
    assert status_failure(429, headers).retry_after == 7
    hint = GraphErrorDetail(retry_after=3)
    assert status_failure(429, httpx.Headers(), hint).retry_after == 3
    assert status_failure(503, headers, hint).retry_after == 7
    assert status_failure(500, headers).retry_after is None  # 500 does not honour it


@pytest.mark.parametrize(
    ("status", "code", "final"),
    [
        (429, ErrorCode.THROTTLED, False),
        (500, ErrorCode.SERVER_ERROR, False),
        (503, ErrorCode.UNAVAILABLE, False),
        (504, ErrorCode.UNAVAILABLE, False),
        (400, ErrorCode.BAD_REQUEST, True),
        (401, ErrorCode.UNAUTHORIZED, True),
        (403, ErrorCode.FORBIDDEN, True),
        (404, ErrorCode.NOT_FOUND, True),
    ],
)
def test_status_classification(status: int, code: ErrorCode, final: bool) -> None:
    failure = status_failure(status, httpx.Headers({"Retry-After": "1"}))
    assert (failure.code, failure.final, failure.reason) == (code, final, f"HTTP {status}")
    if final:
        assert failure.retry_after is None


def test_transport_failures_are_retried_and_told_apart() -> None:
    assert transport_failure(httpx.ReadTimeout("slow")).code is ErrorCode.TIMEOUT
    failure = transport_failure(httpx.ConnectError("refused"))
    assert (failure.code, failure.final) == (ErrorCode.NETWORK_ERROR, False)
    assert failure.reason == "ConnectError: refused"


# -- the loop -------------------------------------------------------------------------------


def scripted(*outcomes: str | Failure) -> Callable[[int], str | Failure]:
    remaining = list(outcomes)
    return lambda _: remaining.pop(0)


THROTTLED = Failure(ErrorCode.THROTTLED, "HTTP 429", 429, retry_after=2.0)
BUSY = Failure(ErrorCode.UNAVAILABLE, "HTTP 503", 503)
FORBIDDEN = Failure(ErrorCode.FORBIDDEN, "HTTP 403", 403, final=True)


def test_the_loop_waits_as_the_budget_decides_then_returns_the_result() -> None:
    budget = RetryBudget(RetryPolicy(base_delay=1, max_delay=8), random=lambda: 0.5)
    slept: list[float] = []
    waits: list[tuple[str, float, int]] = []
    result = call_with_retries(
        budget,
        scripted(THROTTLED, BUSY, "page"),
        give_up=GaveUp,
        on_wait=lambda failure, seconds, attempt: waits.append((failure.reason, seconds, attempt)),
        sleep=slept.append,
    )
    assert result == "page"
    assert waits == [("HTTP 429", 2.0, 1), ("HTTP 503", 1.0, 2)]  # Retry-After, then backoff
    assert slept == [2.0, 1.0] and budget.waited == 3.0 and budget.attempts == 3
    assert budget.history() == "attempt 3, after 2 retried (HTTP 429 ×1, HTTP 503 ×1), waited 3.00s"


def test_a_final_failure_gives_up_at_once() -> None:
    slept: list[float] = []
    with pytest.raises(GaveUp) as info:
        call_with_retries(
            RetryBudget(RetryPolicy()),
            scripted(FORBIDDEN, "never"),
            give_up=GaveUp,
            on_wait=lambda *_: None,
            sleep=slept.append,
        )
    assert info.value.failure is FORBIDDEN and slept == []


def test_a_retry_after_beyond_the_budget_gives_up_and_says_so() -> None:
    budget = RetryBudget(RetryPolicy(max_total_wait=10))
    long_wait = Failure(ErrorCode.THROTTLED, "HTTP 429", 429, retry_after=30.0)
    with pytest.raises(GaveUp) as info:
        call_with_retries(
            budget,
            scripted(long_wait),
            give_up=GaveUp,
            on_wait=lambda *_: None,
            sleep=lambda _: None,
        )
    assert info.value.failure.reason == (
        "HTTP 429; Retry-After 30s exceeds the remaining wait budget of 10.0s"
    )
    assert budget.waited == 0


def test_attempts_are_bounded_by_the_loop() -> None:
    budget = RetryBudget(RetryPolicy(max_attempts=3), random=lambda: 0.0)
    with pytest.raises(GaveUp) as info:
        call_with_retries(
            budget, lambda _: BUSY, give_up=GaveUp, on_wait=lambda *_: None, sleep=lambda _: None
        )
    assert budget.attempts == 3 and info.value.failure is BUSY


def test_a_recovered_failure_is_retried_at_once_on_the_same_budget() -> None:
    unauthorized = Failure(ErrorCode.UNAUTHORIZED, "HTTP 401", 401, final=True)
    recovered: list[int] = []

    def recover(failure: Failure, attempt: int) -> bool:
        recovered.append(attempt)
        return failure.status == 401 and len(recovered) == 1

    slept: list[float] = []
    budget = RetryBudget(RetryPolicy())
    result = call_with_retries(
        budget,
        scripted(unauthorized, "page"),
        recover=recover,
        give_up=GaveUp,
        on_wait=lambda *_: None,
        sleep=slept.append,
    )
    assert (result, recovered, slept, budget.attempts) == ("page", [1], [], 2)


def test_restart_gives_a_fresh_budget() -> None:
    budget = RetryBudget(RetryPolicy(max_invalid_body_retries=1))
    budget.start_attempt()
    budget.wait_for(BUSY, give_up=GaveUp, on_wait=lambda *_: None)
    budget.invalid_body_allowed()
    budget.restart()
    assert (budget.attempts, budget.waited, budget.retried_failures) == (0, 0.0, [])
    assert budget.invalid_body_allowed()
