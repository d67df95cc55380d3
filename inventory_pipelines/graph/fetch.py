"""Paging through one policy type: pages, per-fetch statistics and the paging guards.

Separated from the HTTP loop in `client.py` so the paging rules (loop guard, page cap,
de-duplication, items without id) read on their own, and so the same rules apply whether
pages are pulled one GET at a time or pushed in from JSON batches.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from inventory_pipelines.core.errors import ErrorCode, GraphError
from inventory_pipelines.core.policy_types import PolicyType
from inventory_pipelines.graph.responses import CollectionPage


@dataclass(frozen=True)
class RetryWait:
    """One wait before a retry, kept so callers and tests can see what was honoured."""

    page: int
    attempt: int
    seconds: float
    reason: str
    status: int | None = None
    retry_after: float | None = None
    began: float = 0.0
    """`time.monotonic()` when the wait began, so waits of parallel fetches can be merged."""

    @property
    def throttled(self) -> bool:
        return self.status == 429

    @property
    def interval(self) -> tuple[float, float]:
        return self.began, self.began + self.seconds


def wall_seconds(intervals: Iterable[tuple[float, float]]) -> float:
    """Length of the union of `(start, end)` intervals: the wall time during which at least
    one of several parallel waits was going on (their plain sum counts overlaps twice)."""
    total = 0.0
    covered_until = float("-inf")
    for start, end in sorted(intervals):
        if end <= covered_until:
            continue
        total += end - max(start, covered_until)
        covered_until = end
    return total


@dataclass
class FetchStats:
    """Counters of one fetch, updated while it streams (valid after an error too)."""

    pages: int = 0
    requests: int = 0
    retries: int = 0
    items: int = 0
    duplicates_dropped: int = 0
    invalid_items: int = 0
    token_refreshes: int = 0
    throttle_wait_seconds: float = 0.0
    total_wait_seconds: float = 0.0
    waits: list[RetryWait] = field(default_factory=list)

    def record_wait(self, wait: RetryWait) -> None:
        self.retries += 1
        self.total_wait_seconds += wait.seconds
        if wait.throttled:
            self.throttle_wait_seconds += wait.seconds
        self.waits.append(wait)


@dataclass(frozen=True)
class Page:
    """One page of a collection: valid, first-seen items plus what was dropped from it."""

    number: int
    items: list[dict[str, Any]]
    invalid_items: int = 0
    duplicates_dropped: int = 0


GetPage = Callable[[str, "PolicyTypeFetch", int], CollectionPage]
"""`(url, fetch, page_number) -> page`; retries and errors are the callee's business."""


MAX_ID_LENGTH = 512
"""Graph ids are GUIDs or short keys; a longer one is garbage and would not fit an index."""


def _item_id(item: object) -> str | None:
    """The item's id, or None when it cannot identify a row (missing, empty, absurd)."""
    if isinstance(item, dict):
        item_id = item.get("id")
        if (
            isinstance(item_id, str)
            and item_id.strip()
            and len(item_id) <= MAX_ID_LENGTH
            and "\x00" not in item_id
        ):
            return item_id
    return None


_CANONICAL_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _seen_key(item_id: str) -> int | str:
    """The id as kept for de-duplication: a canonical GUID (most Graph ids) as its 128-bit
    number, half the memory of the string and still exact (an int never equals a str, and
    only the canonical spelling is converted), anything else as it is. A 100,000-item fetch
    keeps 100,000 of these."""
    if _CANONICAL_GUID.fullmatch(item_id):
        return int(item_id.replace("-", ""), 16)
    return item_id


class PolicyTypeFetch:
    """An iterable of the pages of one policy type for one tenant; iterate it once.

    Pages are requested lazily, so a huge collection is never held in memory; only the ids
    seen so far are, to count every item once per fetch even when Graph repeats it.
    """

    def __init__(
        self,
        tenant_id: str,
        policy_type: PolicyType,
        first_url: str,
        get_page: GetPage,
        *,
        max_pages: int,
        top: int | None = None,
    ) -> None:
        self.tenant_id = tenant_id
        self.policy_type = policy_type
        self.first_url = first_url
        self.top = top
        """`$top` on the first page (None: none); the next links carry it on."""
        self.max_pages = max_pages
        self.stats = FetchStats()
        self.completed = False
        self.error: GraphError | None = None
        self._get_page = get_page
        self._started = False
        self._next_url = first_url
        self._seen_links: set[str] = set()
        self._seen_ids: dict[int | str, None] = {}
        """Only ids are kept (`_seen_key`), to count every item once per fetch even when
        Graph repeats it. A dict, not a set: CPython's dict is the denser table (about 30
        bytes per id against 53 for a set of a few thousand)."""
        self._pending_error: GraphError | None = None

    def __repr__(self) -> str:
        return (
            f"PolicyTypeFetch(tenant_id={self.tenant_id!r}, policy_type={self.policy_type.key!r}, "
            f"completed={self.completed!r}, pages={self.stats.pages!r}, items={self.stats.items!r})"
        )

    def __iter__(self) -> Iterator[Page]:
        if self._started:
            raise RuntimeError("a PolicyTypeFetch can be iterated only once; call fetch() again")
        self.begin()
        return self._pages()

    def iter_items(self) -> Iterator[dict[str, Any]]:
        """The items of every page, for callers that do not care about page boundaries."""
        for page in self:
            yield from page.items

    def narrow_first_page(self, top: int | None, url: str) -> None:
        """Graph refused the page size: the first page is asked again, smaller."""
        self.top = top
        self.first_url = url

    def _fail(self, message: str) -> GraphError:
        return GraphError(
            f"{message} (policy type {self.policy_type.key}, tenant {self.tenant_id})",
            code=ErrorCode.INVALID_RESPONSE,
        )

    # -- the paging state machine, driven by `_pages` (pull) or a batch fetcher (push) --

    def begin(self) -> None:
        """Start the fetch once; pages are then pulled by iteration or pushed by `accept`."""
        if self._started:
            raise RuntimeError("a PolicyTypeFetch can be started only once; call fetch() again")
        self._started = True
        self._next_url = self.first_url

    @property
    def done(self) -> bool:
        return self.completed or self.error is not None

    def next_url(self) -> str | None:
        """The page to request next (None: complete); raises at the page cap."""
        if self.done:
            return None
        if self.stats.pages >= self.max_pages:
            raise self.record_error(self._fail(f"gave up after {self.max_pages} pages (page cap)"))
        return self._next_url

    def accept(self, body: CollectionPage) -> Page:
        """Apply the paging rules to the page just received for `next_url()`."""
        url = self.first_url if self.stats.pages == 0 else self._next_url  # after any narrowing
        self._seen_links.add(url)
        page = self._page_from(body.value, self._seen_ids)
        if body.next_link is None:
            self.completed = True
            self._forget_seen()
        elif body.next_link in self._seen_links:
            self._pending_error = self._fail(
                f"next link repeats after page {page.number} (loop guard)"
            )
        else:
            self._seen_links.add(body.next_link)
            self._next_url = body.next_link
        return page

    def check_pending_error(self) -> None:
        """Raise what `accept` found wrong after handing its page on (the page is still true)."""
        if self._pending_error is not None:
            error, self._pending_error = self._pending_error, None
            raise self.record_error(error)

    def record_error(self, error: GraphError) -> GraphError:
        self.error = error
        self._forget_seen()
        return error

    def _forget_seen(self) -> None:
        """A finished fetch takes no more pages: its ids go now, not when the sync ends (a
        batched sync keeps every type's fetch until its longest chain is done)."""
        self._seen_ids = {}
        self._seen_links = set()

    def _pages(self) -> Iterator[Page]:
        try:
            while (url := self.next_url()) is not None:
                body = self._get_page(url, self, self.stats.pages + 1)
                yield self.accept(body)
                self.check_pending_error()
        except GraphError as exc:
            self.record_error(exc)
            raise

    def _page_from(self, value: list[Any], seen_ids: dict[int | str, None]) -> Page:
        items: list[dict[str, Any]] = []
        invalid = duplicates = 0
        for item in value:
            item_id = _item_id(item)
            if item_id is None:
                invalid += 1
            elif (key := _seen_key(item_id)) in seen_ids:
                duplicates += 1
            else:
                seen_ids[key] = None
                items.append(item)
        self.stats.pages += 1
        self.stats.items += len(items)
        self.stats.invalid_items += invalid
        self.stats.duplicates_dropped += duplicates
        return Page(self.stats.pages, items, invalid, duplicates)
