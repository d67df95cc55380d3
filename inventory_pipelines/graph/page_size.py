"""The largest `$top` each policy type's endpoint accepts, learned from Graph's refusals.

Graph's page-size limits differ per endpoint and are not published in one place; an
oversized `$top` is answered with 400 "The limit of 'N' for Top query has been exceeded".
The client starts from what the registry believes, narrows on such a refusal (to N, else by
halving) and remembers the accepted size for the life of the process, for every tenant.
"""

from __future__ import annotations

import re
import threading

from inventory_pipelines.core.policy_types import PolicyType

MIN_PAGE_SIZE = 10
"""Below this, a refused `$top` is dropped altogether: the endpoint pages at its own size."""

NO_TOP = 0
"""Remembered size meaning "send no `$top`"."""

_LIMIT = re.compile(r"limit of '(\d+)' for Top query", re.IGNORECASE)
_NAMES_TOP = re.compile(
    r"for Top query|\$top query option|query option '?\$top|'\$top'"
    r"|\$top (?:is|value|must|exceeds|cannot|not)",
    re.IGNORECASE,
)
"""Graph's ways of blaming `$top` itself (a request URL quoted in a message does not count)."""


def top_limit_from_message(message: str | None) -> int | None:
    """N from Graph's "The limit of 'N' for Top query has been exceeded", else None."""
    if not message:
        return None
    match = _LIMIT.search(message)
    return int(match.group(1)) if match else None


def is_top_refusal(status: int | None, message: str | None) -> bool:
    """A 400 that blames the page size (names `$top` or Graph's Top query limit)."""
    return status == 400 and bool(message) and bool(_NAMES_TOP.search(message or ""))


def smaller_top(refused: int, message: str | None) -> int:
    """The next `$top` to try after `refused` was refused; NO_TOP when nothing smaller fits."""
    limit = top_limit_from_message(message)
    if limit is not None and 0 < limit < refused:
        return limit
    if refused <= MIN_PAGE_SIZE:
        return NO_TOP
    return max(MIN_PAGE_SIZE, refused // 2)


class PageSizeMemory:
    """Accepted `$top` per policy type, shared by all tenants and threads; only ever shrinks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sizes: dict[str, int] = {}

    def top_for(self, policy_type: PolicyType) -> int | None:
        """`$top` to send on a first page: learned, else the registry's belief; None: none."""
        with self._lock:
            size = self._sizes.get(policy_type.key, policy_type.max_top or NO_TOP)
        return size or None

    def narrow(self, policy_type: PolicyType, refused: int, message: str | None) -> int | None:
        """Record that `refused` was too big; returns the `$top` to retry with (None: none)."""
        proposal = smaller_top(refused, message)
        with self._lock:
            current = self._sizes.get(policy_type.key)
            size = proposal if current is None else min(current, proposal)
            self._sizes[policy_type.key] = size
        return size or None

    def learned(self) -> dict[str, int | None]:
        """What was learned so far, by policy type key (None: the type takes no `$top`)."""
        with self._lock:
            return {key: size or None for key, size in self._sizes.items()}

    def reset(self) -> None:
        with self._lock:
            self._sizes.clear()


PROCESS_PAGE_SIZES = PageSizeMemory()
"""The memory every `GraphClient` of this process shares unless given its own."""
