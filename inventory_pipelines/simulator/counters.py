"""Request counters: what the client really sent, and how concurrent it was per tenant.

Tests and benchmarks use them to prove the client's behaviour from the server side: no
writes, retries honoured, concurrency limits respected (max in-flight per tenant).
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any


class RequestCounters:
    """Thread-safe tallies of Graph and token requests (control API calls are not counted)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight: Counter[str] = Counter()
        self._in_flight_total = 0
        self._clear()

    def _clear(self) -> None:
        self._total = 0
        self._by_tenant: Counter[str] = Counter()
        self._by_method: Counter[str] = Counter()
        self._by_status: Counter[str] = Counter()
        self._by_policy_type: Counter[str] = Counter()
        self._by_tenant_policy_type: dict[str, Counter[str]] = {}
        self._token_requests: Counter[str] = Counter()
        self._token_by_status: Counter[str] = Counter()
        self._faults_applied: Counter[str] = Counter()
        self._batches: Counter[str] = Counter()
        self._batch_by_status: Counter[str] = Counter()
        self._batched_requests: Counter[str] = Counter()
        # Maxima restart from what is in flight right now.
        self._max_in_flight: Counter[str] = Counter(
            {tenant: n for tenant, n in self._in_flight.items() if n}
        )
        self._max_in_flight_total = self._in_flight_total

    def begin(self, tenant_id: str) -> None:
        """A Graph request for `tenant_id` started being handled."""
        with self._lock:
            current = self._in_flight[tenant_id] + 1
            self._in_flight[tenant_id] = current
            if current > self._max_in_flight[tenant_id]:
                self._max_in_flight[tenant_id] = current
            self._in_flight_total += 1
            self._max_in_flight_total = max(self._max_in_flight_total, self._in_flight_total)

    def end(self, tenant_id: str) -> None:
        """The request's response was fully sent (or the connection dropped)."""
        with self._lock:
            self._in_flight[tenant_id] -= 1
            self._in_flight_total -= 1

    def record(
        self,
        tenant_id: str,
        method: str,
        status: int,
        policy_type: str | None,
        faults: list[str],
    ) -> None:
        with self._lock:
            self._total += 1
            self._by_tenant[tenant_id] += 1
            self._by_method[method] += 1
            self._by_status[str(status)] += 1
            if policy_type is not None:
                self._by_policy_type[policy_type] += 1
                self._by_tenant_policy_type.setdefault(tenant_id, Counter())[policy_type] += 1
            self._faults_applied.update(faults)

    def record_batch(self, tenant_id: str, status: int, size: int) -> None:
        """One `$batch` envelope (its sub-requests are recorded one by one like GETs)."""
        with self._lock:
            self._batches[tenant_id] += 1
            self._batch_by_status[str(status)] += 1
            self._batched_requests[tenant_id] += size

    def record_token(self, tenant_id: str, status: int, faults: list[str]) -> None:
        with self._lock:
            self._token_requests[tenant_id] += 1
            self._token_by_status[str(status)] += 1
            self._faults_applied.update(faults)

    def snapshot(self) -> dict[str, Any]:
        """Plain JSON-ready dict; see `SimulatorControl.counters` for the keys."""
        with self._lock:
            return {
                "total": self._total,
                "by_tenant": dict(self._by_tenant),
                "by_method": dict(self._by_method),
                "by_status": dict(self._by_status),
                "by_policy_type": dict(self._by_policy_type),
                "by_tenant_policy_type": {
                    tenant: dict(counts) for tenant, counts in self._by_tenant_policy_type.items()
                },
                "token_requests": dict(self._token_requests),
                "token_by_status": dict(self._token_by_status),
                "faults_applied": dict(self._faults_applied),
                "batches": dict(self._batches),
                "batch_by_status": dict(self._batch_by_status),
                "batched_requests": dict(self._batched_requests),
                "in_flight": {t: n for t, n in self._in_flight.items() if n},
                "max_in_flight": dict(self._max_in_flight),
                "in_flight_total": self._in_flight_total,
                "max_in_flight_total": self._max_in_flight_total,
            }

    def reset(self) -> None:
        with self._lock:
            self._clear()
