"""One sync of one (tenant, selection): lock, fetch every selected type, upsert, record.

Policy types are fetched concurrently by a small pool (the per-tenant request concurrency);
each worker turns its pages into batches that writer threads upsert while fetching goes on,
so memory stays flat and the database keeps pace with Graph. One failing type never stops the
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

from inventory_pipelines.core.errors import ErrorCode, GraphError, InventoryError
from inventory_pipelines.core.redaction import project_logger
from inventory_pipelines.core.selection import Selection
from inventory_pipelines.core.store import (
    COMPLETE,
    InventoryStore,
    ObservedItem,
    RunAbandonedError,
    RunResult,
    RunSkipped,
    UpsertCounts,
)
from inventory_pipelines.graph.client import GraphClient
from inventory_pipelines.graph.fetch import wall_seconds
from inventory_pipelines.graph.policy_types import get_policy_type
from inventory_pipelines.graph.writer import BatchWriter

logger = project_logger("inventory_pipelines.sync")

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
    wait_seconds: float = 0.0
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
                with (
                    writer,
                    ThreadPoolExecutor(
                        max_workers=options.type_concurrency, thread_name_prefix="inventory-sync"
                    ) as pool,
                ):
                    worker = _TypeWorker(
                        client, tenant_id, writer, options.batch_size, heartbeat.abandoned
                    )
                    futures = [
                        pool.submit(worker.run, summaries[key]) for key in fetch_order(summaries)
                    ]
                    for future in futures:
                        done = future.result()
                        if on_type_done is not None:
                            on_type_done(done)
            if heartbeat.abandoned.is_set():
                raise RunAbandonedError(f"sync run {run_id} lost its lock while fetching")
        result = _run_result(summaries)
        status = store.finish_sync_run(tenant_id, run_id, result)
    except RunAbandonedError:
        raise
    except BaseException as exc:
        store.fail_sync_run(tenant_id, run_id, ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}")
        raise
    summary = SyncSummary(
        tenant_id,
        selection.name,
        selection.hash,
        run_id,
        status,
        duration_seconds=time.monotonic() - began,
        types=summaries,
        error_codes=result.error_codes,
    )
    logger.info(
        "sync run %s of %s/%s: %s, %s observed (%s new, %s changed) in %.1fs",
        run_id,
        tenant_id,
        selection.name,
        status,
        summary.items_observed,
        summary.items_inserted,
        summary.items_updated,
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


class _TypeWorker:
    """Fetches one policy type and hands its items to the writer in batches."""

    def __init__(
        self,
        client: GraphClient,
        tenant_id: str,
        writer: BatchWriter,
        batch_size: int,
        abandoned: threading.Event,
    ) -> None:
        self.client = client
        self.tenant_id = tenant_id
        self.writer = writer
        self.batch_size = batch_size
        self.abandoned = abandoned

    def run(self, summary: TypeSummary) -> TypeSummary:
        policy_type = get_policy_type(summary.policy_type)
        fetch = self.client.fetch(self.tenant_id, policy_type)
        batch: list[ObservedItem] = []
        try:
            for page in fetch:
                if self.abandoned.is_set():
                    raise RunAbandonedError(f"sync run {self.writer.run_id} lost its lock")
                summary.invalid_items += page.invalid_items
                batch.extend(
                    ObservedItem.from_graph(item, policy_type.name_field) for item in page.items
                )
                if len(batch) >= self.batch_size:
                    self._flush(summary, batch)
                    batch = []
            self._flush(summary, batch)
            summary.outcome = COMPLETE
        except GraphError as exc:
            self._flush(summary, batch)  # what was observed before the failure is still true
            _record_failure(summary, exc)
            logger.warning(
                "policy type %s of tenant %s failed: %s", summary.policy_type, self.tenant_id, exc
            )
        except (RunAbandonedError, SQLAlchemyError):
            raise  # the run itself cannot go on
        except Exception as exc:  # a defect in one type must not stop the others
            self._flush(summary, batch)
            internal = GraphError(f"{type(exc).__name__}: {exc}", code=ErrorCode.INTERNAL)
            _record_failure(summary, internal)
            logger.exception(
                "policy type %s of tenant %s crashed", summary.policy_type, self.tenant_id
            )
        finally:
            stats = fetch.stats
            summary.pages = stats.pages
            summary.requests = stats.requests
            summary.retries = stats.retries
            summary.throttle_wait_seconds = stats.throttle_wait_seconds
            summary.throttle_intervals = [w.interval for w in stats.waits if w.throttled]
            summary.wait_seconds = stats.total_wait_seconds
        return summary

    def _flush(self, summary: TypeSummary, batch: list[ObservedItem]) -> None:
        self.writer.submit(summary, batch)


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
