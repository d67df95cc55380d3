"""One sync of one (tenant, selection): lock, fetch every selected type, upsert, record.

With batching on (the default) every selected type's pending page goes into JSON batches, one
round of envelopes per page depth (`batching.py`); otherwise types are fetched concurrently by
a small pool (the per-tenant request concurrency). Either way each type's pages become
batches that writer threads upsert while fetching goes on, so memory stays flat and the
database keeps pace with Graph. One failing type never stops the
others, and the run is closed (releasing the lock) on every exit path.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from inventory_pipelines.core.changes import ADDED, CHANGED, RETURNED, event_counts
from inventory_pipelines.core.errors import ErrorCode, GraphError, InventoryError
from inventory_pipelines.core.observed import ObservedItem
from inventory_pipelines.core.policy_types import get_policy_type
from inventory_pipelines.core.redaction import project_logger
from inventory_pipelines.core.selection import Selection
from inventory_pipelines.core.store import (
    COMPLETE,
    InventoryStore,
    RunAbandonedError,
    RunResult,
    RunSkipped,
    UpsertCounts,
)
from inventory_pipelines.graph.batching import BatchFetcher, BatchStats
from inventory_pipelines.graph.client import GraphClient
from inventory_pipelines.graph.fetch import FetchStats, Page, PolicyTypeFetch, wall_seconds
from inventory_pipelines.graph.writer import BatchWriter

logger = project_logger("inventory_pipelines.sync")

SYNC_EVENTS = (ADDED, CHANGED, RETURNED)
"""The change-feed events a sync records (went_missing comes from the missing computation)."""
DEFAULT_TYPE_CONCURRENCY = 4
DEFAULT_BATCH_SIZE = 1000
DEFAULT_WRITERS = 2


@dataclass(frozen=True)
class SyncOptions:
    """`type_concurrency` bounds the requests in flight per tenant (one per worker)."""

    type_concurrency: int = DEFAULT_TYPE_CONCURRENCY
    batch_size: int = DEFAULT_BATCH_SIZE
    writers: int = DEFAULT_WRITERS
    heartbeat_seconds: float = 30.0

    def __post_init__(self) -> None:
        if not 1 <= self.type_concurrency <= 32:
            raise InventoryError("type_concurrency must be between 1 and 32")
        if self.batch_size < 1:
            raise InventoryError("batch_size must be at least 1")
        if not 1 <= self.writers <= 8:
            raise InventoryError("writers must be between 1 and 8")


@dataclass
class TypeSummary:
    """What happened to one policy type in this run."""

    policy_type: str
    outcome: str = "not_started"
    counts: UpsertCounts = field(default_factory=UpsertCounts)
    invalid_items: int = 0
    pages: int = 0
    requests: int = 0
    retries: int = 0
    throttle_wait_seconds: float = 0.0
    throttle_intervals: list[tuple[float, float]] = field(default_factory=list)
    error: dict[str, Any] | None = None


@dataclass
class SyncSummary:
    """The run as operators and the Dagster asset report it."""

    tenant_id: str
    selection_name: str
    selection_hash: str
    run_id: int
    status: str
    holder_run_id: int | None = None
    duration_seconds: float = 0.0
    types: dict[str, TypeSummary] = field(default_factory=dict)
    error_codes: list[str] = field(default_factory=list)
    batch_rounds: int = 0
    """Rounds of `$batch` envelopes (≈ the longest page chain); 0 when fetched by GET."""
    envelopes: int = 0
    """`$batch` envelopes sent (each a round trip carrying up to 20 page requests)."""
    changes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SYNC_EVENTS, 0))
    """Change-feed events this run recorded, per kind (added, changed, returned)."""

    @property
    def skipped(self) -> bool:
        return self.status == "skipped"

    def total(self, attribute: str) -> Any:
        return sum(getattr(t, attribute) for t in self.types.values())

    @property
    def items_observed(self) -> int:
        return sum(t.counts.observed for t in self.types.values())

    @property
    def items_inserted(self) -> int:
        return sum(t.counts.inserted for t in self.types.values())

    @property
    def items_updated(self) -> int:
        return sum(t.counts.updated for t in self.types.values())

    @property
    def throttle_wait_sum_seconds(self) -> float:
        """Seconds spent waiting after 429s, summed over the parallel fetch workers."""
        return float(sum(t.throttle_wait_seconds for t in self.types.values()))

    @property
    def throttle_wait_wall_seconds(self) -> float:
        """Wall-clock seconds during which at least one request waited after a 429: how long
        throttling held the sync up (never more than its duration)."""
        return wall_seconds(i for t in self.types.values() for i in t.throttle_intervals)


class _Heartbeat:
    """Keeps the run's lock fresh from a background thread; notices a takeover."""

    def __init__(self, store: InventoryStore, tenant_id: str, run_id: int, seconds: float):
        self.abandoned = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, args=(store, tenant_id, run_id, seconds), daemon=True
        )

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self, store: InventoryStore, tenant_id: str, run_id: int, seconds: float) -> None:
        while not self._stop.wait(seconds):
            try:
                store.heartbeat(tenant_id, run_id)
            except RunAbandonedError:
                logger.warning("sync run %s lost its lock; stopping", run_id)
                self.abandoned.set()
                return
            except Exception as exc:  # a missed beat is retried at the next interval
                logger.warning("heartbeat of sync run %s failed: %s", run_id, exc)


def sync_partition(
    store: InventoryStore,
    client: GraphClient,
    tenant_id: str,
    selection: Selection,
    *,
    correlation_id: str | None = None,
    options: SyncOptions | None = None,
    on_type_done: Callable[[TypeSummary], None] | None = None,
) -> SyncSummary:
    """Run one sync and return its summary; a held lock gives a `skipped` summary."""
    options = options or SyncOptions()
    began = time.monotonic()
    started = store.start_sync_run(tenant_id, selection, correlation_id=correlation_id)
    if isinstance(started, RunSkipped):
        logger.info(
            "sync of %s/%s skipped: lock held by run %s",
            tenant_id,
            selection.name,
            started.holder_run_id,
        )
        return SyncSummary(
            tenant_id,
            selection.name,
            selection.hash,
            started.run_id,
            "skipped",
            holder_run_id=started.holder_run_id,
            error_codes=[ErrorCode.LOCK_HELD.value],
        )
    run_id = started.run_id
    summaries = {key: TypeSummary(key) for key in selection.policy_types}
    batch_stats: BatchStats | None = None
    try:
        with _Heartbeat(store, tenant_id, run_id, options.heartbeat_seconds) as heartbeat:
            auth_error = _authenticate(client, tenant_id)
            if auth_error is not None:
                for type_summary in summaries.values():
                    _record_failure(type_summary, auth_error)
            else:
                writer = BatchWriter(
                    store, tenant_id, run_id, started.started_at, writers=options.writers
                )
                with writer:
                    batch_stats = _fetch_all(
                        client, tenant_id, summaries, writer, options, heartbeat, on_type_done
                    )
            if heartbeat.abandoned.is_set():
                raise RunAbandonedError(f"sync run {run_id} lost its lock while fetching")
        result = _run_result(summaries)
        status = store.finish_sync_run(tenant_id, run_id, result)
    except RunAbandonedError:
        raise
    except BaseException as exc:
        store.fail_sync_run(tenant_id, run_id, ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}")
        raise
    recorded = event_counts(store.engine, tenant_id, run_id)
    summary = SyncSummary(
        tenant_id,
        selection.name,
        selection.hash,
        run_id,
        status,
        duration_seconds=time.monotonic() - began,
        types=summaries,
        error_codes=result.error_codes,
        batch_rounds=batch_stats.rounds if batch_stats else 0,
        envelopes=batch_stats.envelopes if batch_stats else 0,
        changes={kind: recorded[kind] for kind in SYNC_EVENTS},
    )
    logger.info(
        "sync run %s of %s/%s: %s, %s observed (%s new, %s changed, %s returned) in %.1fs",
        run_id,
        tenant_id,
        selection.name,
        status,
        summary.items_observed,
        summary.items_inserted,
        summary.items_updated,
        summary.changes[RETURNED],
        summary.duration_seconds,
    )
    return summary


def fetch_order(policy_types: Iterable[str]) -> list[str]:
    """Longest page chains first: a type that pages by 25 started last would set the run's
    critical path, so the small-page types go first (longest-processing-time scheduling)."""
    return sorted(policy_types, key=lambda key: (get_policy_type(key).server_page_size, key))


def _authenticate(client: GraphClient, tenant_id: str) -> GraphError | None:
    """Get the tenant's token once up front: a bad secret fails every type without fetching."""
    try:
        client.tokens.token(tenant_id)
    except GraphError as exc:
        logger.warning("authentication for tenant %s failed: %s", tenant_id, exc)
        return exc
    return None


def _record_failure(summary: TypeSummary, error: GraphError) -> None:
    summary.outcome = error.code.value
    summary.error = {"policy_type": summary.policy_type, **error.context()}


def _fetch_all(
    client: GraphClient,
    tenant_id: str,
    summaries: dict[str, TypeSummary],
    writer: BatchWriter,
    options: SyncOptions,
    heartbeat: _Heartbeat,
    on_type_done: Callable[[TypeSummary], None] | None,
) -> BatchStats | None:
    """Every selected type, by `$batch` when the client may batch, else one worker per type."""
    buffered = _BufferedItems()
    sinks = {
        key: _TypeSink(
            summary, tenant_id, writer, options.batch_size, heartbeat.abandoned, buffered
        )
        for key, summary in summaries.items()
    }
    order = fetch_order(summaries)
    if client.batching_available():

        def on_end(fetch: PolicyTypeFetch) -> None:
            done = sinks[fetch.policy_type.key].end(fetch)
            if on_type_done is not None:
                on_type_done(done)

        def checkpoint() -> None:
            if heartbeat.abandoned.is_set():
                raise RunAbandonedError(f"sync run {writer.run_id} lost its lock")

        fetcher = BatchFetcher(
            client,
            tenant_id,
            order,
            on_page=lambda fetch, page: sinks[fetch.policy_type.key].take(page),
            on_end=on_end,
            concurrency=options.type_concurrency,
            checkpoint=checkpoint,
        )
        fetcher.run()
        return fetcher.stats
    with ThreadPoolExecutor(
        max_workers=options.type_concurrency, thread_name_prefix="inventory-sync"
    ) as pool:
        futures = [pool.submit(_fetch_by_get, client, tenant_id, sinks[key]) for key in order]
        for future in futures:
            done = future.result()
            if on_type_done is not None:
                on_type_done(done)
    return None


def _fetch_by_get(client: GraphClient, tenant_id: str, sink: _TypeSink) -> TypeSummary:
    """One type page by page with plain GETs (batching off or refused)."""
    fetch = client.fetch(tenant_id, sink.policy_type)
    try:
        for page in fetch:
            sink.take(page)
    except GraphError:
        pass  # recorded on the fetch (or the sink); `end` reports it
    except (RunAbandonedError, SQLAlchemyError):
        raise  # the run itself cannot go on
    except Exception as exc:  # a defect in one type must not stop the others
        logger.exception("policy type %s of tenant %s crashed", sink.policy_type.key, tenant_id)
        sink.crash = GraphError(f"{type(exc).__name__}: {exc}", code=ErrorCode.INTERNAL)
    return sink.end(fetch)


class _BufferedItems:
    """Items all types of a sync hold back until their next upsert. Batched, every type is
    open at once: a per-type bound alone would let 41 types hold a batch each, so memory
    would grow with the tenant."""

    def __init__(self) -> None:
        self._count = 0
        self._lock = threading.Lock()

    def change(self, delta: int) -> int:
        with self._lock:
            self._count += delta
            return self._count


class _TypeSink:
    """One type's pages into the writer in batches, and its outcome onto its summary."""

    def __init__(
        self,
        summary: TypeSummary,
        tenant_id: str,
        writer: BatchWriter,
        batch_size: int,
        abandoned: threading.Event,
        buffered: _BufferedItems,
    ) -> None:
        self.summary = summary
        self.policy_type = get_policy_type(summary.policy_type)
        self.tenant_id = tenant_id
        self.writer = writer
        self.batch_size = batch_size
        self.abandoned = abandoned
        self.crash: GraphError | None = None
        self._batch: list[ObservedItem] = []
        self._buffered = buffered

    def take(self, page: Page) -> None:
        """Raises RunAbandonedError/SQLAlchemyError (the run cannot go on) or a GraphError
        (INTERNAL) for a defect in this type only."""
        if self.abandoned.is_set():
            raise RunAbandonedError(f"sync run {self.writer.run_id} lost its lock")
        try:
            self.summary.invalid_items += page.invalid_items
            name_field = self.policy_type.name_field
            self._batch.extend(ObservedItem.from_graph(item, name_field) for item in page.items)
            held_by_all = self._buffered.change(len(page.items))
            if len(self._batch) >= self.batch_size or held_by_all >= self.batch_size:
                self._flush()
        except (RunAbandonedError, SQLAlchemyError, GraphError):
            raise
        except Exception as exc:  # a defect in one type must not stop the others
            logger.exception(
                "policy type %s of tenant %s crashed", self.summary.policy_type, self.tenant_id
            )
            self.crash = GraphError(f"{type(exc).__name__}: {exc}", code=ErrorCode.INTERNAL)
            raise self.crash from exc

    def end(self, fetch: PolicyTypeFetch) -> TypeSummary:
        """What was observed before a failure is still true: flushed either way."""
        summary = self.summary
        self._flush()
        error = self.crash or fetch.error
        if error is None and fetch.completed:
            summary.outcome = COMPLETE
        elif error is not None:
            _record_failure(summary, error)
            if error is not self.crash:
                logger.warning(
                    "policy type %s of tenant %s failed: %s",
                    summary.policy_type,
                    self.tenant_id,
                    error,
                )
        _copy_stats(summary, fetch.stats)
        return summary

    def _flush(self) -> None:
        batch, self._batch = self._batch, []
        self._buffered.change(-len(batch))
        self.writer.submit(self.summary.policy_type, self.summary.counts, batch)


def _copy_stats(summary: TypeSummary, stats: FetchStats) -> None:
    summary.pages = stats.pages
    summary.requests = stats.requests
    summary.retries = stats.retries
    summary.throttle_wait_seconds = stats.throttle_wait_seconds
    summary.throttle_intervals = [w.interval for w in stats.waits if w.throttled]


def _run_result(summaries: dict[str, TypeSummary]) -> RunResult:
    result = RunResult()
    for key, summary in summaries.items():
        result.policy_type_outcomes[key] = summary.outcome
        result.policy_type_counts[key] = summary.counts.observed
        result.counts.add(summary.counts)
        result.item_errors += summary.invalid_items
        if summary.error is not None:
            result.error_context.append(summary.error)
        if summary.invalid_items:
            result.error_context.append(
                {
                    "policy_type": key,
                    "code": ErrorCode.INVALID_ITEM.value,
                    "message": f"{summary.invalid_items} item(s) without an id were skipped",
                }
            )
    return result
