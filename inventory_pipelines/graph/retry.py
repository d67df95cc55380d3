"""Retrying a request to Graph or to the token authority: one classification, one decision,
one loop.

An attempt that fails becomes a `Failure` (`status_failure`, `transport_failure`); the
request's `RetryBudget` alone decides whether to wait and how long (`wait_for`): `Retry-After`
wins when the server sends it, otherwise exponential backoff with full jitter; attempts and
total waiting are both bounded. `call_with_retries` is the loop around it that the Graph
client's GETs and the token client's requests both run; batched requests, which wait by being
re-sent in a later round instead of sleeping, take the same decision from `wait_for`. The
rules are pure functions, unit-testable without HTTP.
"""

from __future__ import annotations

import math
import random as _random
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from email.utils import parsedate_to_datetime
from typing import TypeVar

import httpx

from inventory_pipelines.core.errors import ErrorCode, error_code_for_status
from inventory_pipelines.graph.responses import GraphErrorDetail

T = TypeVar("T")

RETRY_AFTER_STATUSES = frozenset({429, 503, 504})
"""Statuses whose `Retry-After` header is honoured."""

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
"""Statuses retried inside the client (transient by Graph's own guidance)."""

_MAX_EXPONENT = 62  # 2**62 * any sane base delay is far beyond max_delay; avoids overflow


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds for retrying one request: attempts, backoff shape and total time spent waiting."""

    max_attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_total_wait: float = 120.0
    max_invalid_body_retries: int = 2

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < 0 or self.max_total_wait < 0:
            raise ValueError("RetryPolicy delays must not be negative")
        if self.max_invalid_body_retries < 0:
            raise ValueError("RetryPolicy.max_invalid_body_retries must not be negative")


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` value (delta seconds or HTTP date).

    Returns None when the header is absent or unusable, so the caller falls back to backoff.
    A date in the past means "retry now" (0).
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
        return None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None or when.tzinfo is None:  # RFC 9110 dates are always GMT
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


@dataclass(frozen=True)
class Failure:
    """Why one attempt failed: enough to wait and retry, or to give up (`final`)."""

    code: ErrorCode
    reason: str
    status: int | None = None
    retry_after: float | None = None
    detail: GraphErrorDetail = field(default_factory=GraphErrorDetail)
    final: bool = False


def status_failure(
    status: int, headers: Mapping[str, str], detail: GraphErrorDetail | None = None
) -> Failure:
    """An answer that is not a success, by the same rules for Graph and the token endpoint:
    its error code, whether it is transient, and the wait the server asked for (`Retry-After`,
    else the hint in Graph's error body). `headers` must be case-insensitive."""
    detail = detail or GraphErrorDetail()
    retry_after = None
    if status in RETRY_AFTER_STATUSES:
        retry_after = parse_retry_after(headers.get("Retry-After"))
        if retry_after is None:
            retry_after = detail.retry_after
    code = error_code_for_status(status)
    if status not in RETRYABLE_STATUSES:
        return Failure(code, f"HTTP {status}", status=status, detail=detail, final=True)
    return Failure(code, f"HTTP {status}", status=status, retry_after=retry_after, detail=detail)


def transport_failure(exc: httpx.TransportError) -> Failure:
    """A request that got no answer: always retried; timeouts and other failures told apart."""
    if isinstance(exc, httpx.TimeoutException):
        return Failure(ErrorCode.TIMEOUT, type(exc).__name__)
    return Failure(ErrorCode.NETWORK_ERROR, f"{type(exc).__name__}: {exc}")


def full_jitter_delay(
    policy: RetryPolicy, retry_number: int, random: Callable[[], float] = _random.random
) -> float:
    """Uniform in [0, min(max_delay, base_delay * 2**(retry_number-1))] ("full jitter").

    Full jitter spreads concurrent clients apart instead of retrying in lockstep.
    """
    exponent = min(max(retry_number - 1, 0), _MAX_EXPONENT)
    cap = min(policy.max_delay, policy.base_delay * float(2**exponent))
    return random() * cap


def compute_wait(
    policy: RetryPolicy,
    *,
    attempts_made: int,
    waited: float,
    retry_after: float | None = None,
    random: Callable[[], float] = _random.random,
) -> float | None:
    """Seconds to wait before the next attempt, or None to give up now.

    `Retry-After` is honoured exactly; one that does not fit the remaining total-wait budget
    means give up now rather than waiting part of it and retrying too early.
    """
    if attempts_made >= policy.max_attempts:
        return None
    remaining = policy.max_total_wait - waited
    if retry_after is not None:
        return retry_after if retry_after <= remaining else None
    if remaining <= 0:
        return None
    return min(full_jitter_delay(policy, attempts_made, random), remaining)


class RetryBudget:
    """Attempts and waiting of one logical request, shared by every retry path of it."""

    def __init__(self, policy: RetryPolicy, random: Callable[[], float] = _random.random) -> None:
        self.policy = policy
        self._random = random
        self.attempts = 0
        self.waited = 0.0
        self.invalid_bodies = 0
        self.retried_failures: list[str] = []
        """Why each retried attempt failed (e.g. "HTTP 429"), to say what really happened."""

    def start_attempt(self) -> int:
        self.attempts += 1
        return self.attempts

    def restart(self) -> None:
        """A new request in place of this one (e.g. a smaller page): a fresh budget."""
        self.attempts = 0
        self.waited = 0.0
        self.invalid_bodies = 0
        self.retried_failures = []

    def next_wait(self, retry_after: float | None = None) -> float | None:
        return compute_wait(
            self.policy,
            attempts_made=self.attempts,
            waited=self.waited,
            retry_after=retry_after,
            random=self._random,
        )

    def wait_for(
        self,
        failure: Failure,
        *,
        give_up: Callable[[Failure], Exception],
        on_wait: Callable[[Failure, float, int], None],
    ) -> float:
        """The retry decision: seconds to wait before the next attempt, reported to
        `on_wait(failure, seconds, attempt)` and counted as waited from now; or
        `give_up(failure)` is raised, for a final failure or a spent budget (the failure then
        says when a `Retry-After` did not fit)."""
        seconds = None if failure.final else self.next_wait(failure.retry_after)
        if seconds is None:
            raise give_up(self._gave_up(failure))
        on_wait(failure, seconds, self.attempts)
        self.retried_failures.append(failure.reason)
        self.waited += seconds
        return seconds

    def _gave_up(self, failure: Failure) -> Failure:
        if failure.final or failure.retry_after is None:
            return failure
        if self.attempts >= self.policy.max_attempts:
            return failure
        remaining = self.policy.max_total_wait - self.waited
        return replace(
            failure,
            reason=f"{failure.reason}; Retry-After {failure.retry_after:g}s exceeds the "
            f"remaining wait budget of {remaining:.1f}s",
        )

    def history(self) -> str:
        """How the attempts went, for an error message: a final 403 after two 429s must not
        read as if the 403 itself had been retried."""
        if not self.retried_failures:
            return ""
        counts = Counter(self.retried_failures)
        causes = ", ".join(f"{reason} ×{n}" for reason, n in counts.items())
        return (
            f"attempt {self.attempts}, after {len(self.retried_failures)} retried "
            f"({causes}), waited {self.waited:.2f}s"
        )

    def invalid_body_allowed(self) -> bool:
        """Count one invalid body; True while another retry for it is allowed."""
        self.invalid_bodies += 1
        return self.invalid_bodies <= self.policy.max_invalid_body_retries


def _no_recovery(failure: Failure, attempt: int) -> bool:
    return False


def call_with_retries(
    budget: RetryBudget,
    attempt: Callable[[int], T | Failure],
    *,
    give_up: Callable[[Failure], Exception],
    on_wait: Callable[[Failure, float, int], None],
    sleep: Callable[[float], None],
    recover: Callable[[Failure, int], bool] = _no_recovery,
) -> T:
    """Send one request until it succeeds or the budget says stop: the retry loop of every
    request to Graph and to the token authority.

    `attempt(n)` sends once and returns its result or the classified `Failure`. `recover` may
    deal with a failure on the spot (a refreshed token, a smaller page) and ask for the next
    attempt at once; otherwise `RetryBudget.wait_for` decides: sleep and try again (each wait
    reported to `on_wait` first), or raise `give_up(failure)`.
    """
    while True:
        number = budget.start_attempt()
        outcome = attempt(number)
        if not isinstance(outcome, Failure):
            return outcome
        if recover(outcome, number):
            continue
        sleep(budget.wait_for(outcome, give_up=give_up, on_wait=on_wait))
