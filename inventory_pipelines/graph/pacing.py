"""Spacing requests to Graph's identity endpoints (1 request/s per tenant, 429 without
Retry-After): waiting a second up front is cheaper than a cascade of blind backoffs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

SAFETY_MARGIN = 0.1
"""Slots are this fraction wider than 1/rate. Requests sent exactly 1/rate apart can arrive
closer together (the earlier one held up on its way, e.g. opening a connection), and Graph
counts arrivals: the 429 that follows costs a backoff far longer than the margin."""


class RequestPacer:
    """Reserves send slots at most `rate` per second per key; thread-safe."""

    def __init__(
        self,
        rate_per_second: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        margin: float = SAFETY_MARGIN,
    ) -> None:
        if rate_per_second < 0:
            raise ValueError("rate_per_second must not be negative (0 disables pacing)")
        self.interval = (1.0 + margin) / rate_per_second if rate_per_second else 0.0
        self._clock = clock
        self._sleep = sleep
        self._next_free: dict[str, float] = {}
        self._lock = threading.Lock()

    def reserve(self, key: str) -> float:
        """Take this key's next slot without waiting; returns the seconds until it starts."""
        if not self.interval:
            return 0.0
        with self._lock:
            now = self._clock()
            slot = max(now, self._next_free.get(key, now))
            self._next_free[key] = slot + self.interval
        return slot - now

    def claim(self, key: str) -> float:
        """Take this key's slot if it has started (0.0), else return the seconds until it
        does and take nothing: a caller that sends only when it holds the slot keeps the
        spacing between actual sends, however late it gets round to sending."""
        if not self.interval:
            return 0.0
        with self._lock:
            now = self._clock()
            free_at = self._next_free.get(key, now)
            if free_at > now:
                return free_at - now
            self._next_free[key] = now + self.interval
        return 0.0

    def wait(self, key: str) -> float:
        """Block until this key's next slot; returns the seconds waited."""
        delay = self.reserve(key)
        if delay > 0:
            self._sleep(delay)
        return delay
