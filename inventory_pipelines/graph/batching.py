"""Fetching the selected policy types of one tenant through JSON batches (`$batch`).

Every open page chain has at most one request pending. Each round packs the pending
requests of all chains into envelopes of at most 20 per API version and sends them in
parallel, so a sync takes about as many round trips as its longest chain instead of one per
page. Each answer is handed on as soon as it has been read from the streamed envelope
(`batch_stream.py`), so a round's pages are never all in memory together. Every answer goes
through the same paging rules (`PolicyTypeFetch`) and retry rules (`GraphClient`) as a plain
GET; a chain that must wait is re-sent in a later round while the others go on. When the
`$batch` endpoint itself is refused, the open chains continue with plain GETs.
"""

from __future__ import annotations

import base64
import binascii
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from inventory_pipelines.core.errors import ErrorCode, GraphError
from inventory_pipelines.core.policy_types import PolicyType
from inventory_pipelines.graph.batch import MAX_BATCH_REQUESTS, relative_url
from inventory_pipelines.graph.batch_stream import (
    BrokenBatchResponse,
    NotABatchResponse,
    iter_answers,
)
from inventory_pipelines.graph.client import GraphClient
from inventory_pipelines.graph.fetch import Page, PolicyTypeFetch
from inventory_pipelines.graph.responses import (
    CollectionPage,
    collection_page_from,
    parse_collection_page,
    parse_error_body,
)
from inventory_pipelines.graph.retry import (
    RETRYABLE_STATUSES,
    Failure,
    RetryBudget,
    transport_failure,
)

PageSink = Callable[[PolicyTypeFetch, Page], None]
"""Takes one page of a type; a GraphError raised here fails that type only."""
EndSink = Callable[[PolicyTypeFetch], None]
"""Told once per type that it is done (`completed`) or failed (`error`)."""

_IDLE_POLL_SECONDS = 0.5
"""Longest sleep while every open chain waits, so an abandoned run is noticed."""


@dataclass(eq=False)
class _Chain:
    """One policy type's page chain and the retry state of its pending request."""

    fetch: PolicyTypeFetch
    budget: RetryBudget
    url: str | None = None
    not_before: float = 0.0
    refreshed: bool = False
    tried_newer: bool = False
    solo: bool = False
    """Sent alone next time: its envelope was lost, and it may be what broke it."""
    token: str = ""

    @property
    def version(self) -> str:
        return self.fetch.policy_type.api_version

    @property
    def page(self) -> int:
        return self.fetch.stats.pages + 1


@dataclass
class _Envelope:
    version: str
    chains: list[_Chain]
    unanswered: dict[str, _Chain] = field(default_factory=dict)
    """Chains by sub-request id whose answer has not been handed on yet (set when sent)."""


@dataclass
class BatchStats:
    """Round trips of one batched fetch."""

    rounds: int = 0
    envelopes: int = 0


class BatchFetcher:
    """Fetches the given policy types of one tenant by `$batch`, pushing pages to `on_page`."""

    def __init__(
        self,
        client: GraphClient,
        tenant_id: str,
        policy_types: Sequence[PolicyType | str],
        *,
        on_page: PageSink,
        on_end: EndSink,
        concurrency: int = 4,
        checkpoint: Callable[[], None] = lambda: None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.tenant_id = tenant_id
        self.fetches = [client.fetch(tenant_id, ptype) for ptype in policy_types]
        self.stats = BatchStats()
        self._on_page = on_page
        self._on_end = on_end
        self._concurrency = concurrency
        self._checkpoint = checkpoint
        self._sleep = sleep
        self._lock = threading.RLock()

    def run(self) -> None:
        """Fetch until every type is complete or failed; raises only what stops the run."""
        chains = [self._start(fetch) for fetch in self.fetches]
        with ThreadPoolExecutor(self._concurrency, thread_name_prefix="graph-batch") as pool:
            while open_chains := [c for c in chains if not c.fetch.done]:
                self._checkpoint()
                if not self.client.batching_available():
                    self._continue_by_get(open_chains, pool)
                    return
                now = time.monotonic()
                ready = [c for c in open_chains if c.not_before <= now]
                if not ready:
                    soonest = min(c.not_before for c in open_chains)
                    self._sleep(min(_IDLE_POLL_SECONDS, max(0.0, soonest - now)))
                    continue
                envelopes = self._pack(ready)
                if not envelopes:
                    continue
                self.stats.rounds += 1
                self.stats.envelopes += len(envelopes)
                futures = [pool.submit(self._exchange, envelope) for envelope in envelopes]
                for future in as_completed(futures):
                    future.result()

    # -- rounds --------------------------------------------------------------------------

    def _start(self, fetch: PolicyTypeFetch) -> _Chain:
        fetch.begin()
        chain = _Chain(fetch, self._budget())
        self._advance(chain)
        return chain

    def _budget(self) -> RetryBudget:
        return RetryBudget(self.client.retry, self.client._random)

    def _pack(self, ready: list[_Chain]) -> list[_Envelope]:
        """This round's envelopes: longest chains first, at most 20 per envelope, a chain
        whose envelope was lost alone. An identity-paced request goes only when it can claim
        the tenant's slot, else waits for it in `not_before`: pacing never holds up the other
        chains' rounds, and a round that starts late never sends two paced requests close."""
        envelopes: list[_Envelope] = []
        open_by_version: dict[str, _Envelope] = {}
        for chain in sorted(ready, key=_longest_first):
            delay = self.client.claim_pacing_slot(chain.fetch)
            if delay > 0:
                chain.not_before = time.monotonic() + delay
                continue
            if (
                chain.url is None
                or relative_url(chain.url, self.client.settings.base_url, chain.version) is None
            ):
                self._fail(chain, self._outside_link(chain))
                continue
            chain.budget.start_attempt()
            chain.fetch.stats.requests += 1
            if chain.solo:
                envelopes.append(_Envelope(chain.version, [chain]))
                continue
            envelope = open_by_version.get(chain.version)
            if envelope is None or len(envelope.chains) >= MAX_BATCH_REQUESTS:
                envelope = _Envelope(chain.version, [])
                open_by_version[chain.version] = envelope
                envelopes.append(envelope)
            envelope.chains.append(chain)
        return envelopes

    def _outside_link(self, chain: _Chain) -> GraphError:
        target = httpx.URL(chain.url or "")
        return GraphError(
            self.client._redact(
                f"refusing to follow a link to {target.scheme}://{target.host}{target.path}: it "
                f"is not under {self.client.settings.base_url}/{chain.version} "
                f"(policy type {chain.fetch.policy_type.key}, tenant {self.tenant_id})"
            ),
            code=ErrorCode.INVALID_RESPONSE,
        )

    # -- one envelope (worker thread) ------------------------------------------------------

    def _exchange(self, envelope: _Envelope) -> None:
        """Send one envelope and hand on each answer as soon as it has been read."""
        envelope.unanswered = {str(n): chain for n, chain in enumerate(envelope.chains)}
        try:
            token = self.client.tokens.token(self.tenant_id)
        except GraphError as exc:
            self._deliver_rest(envelope, exc)  # the types fail as their GETs would
            return
        requests = []
        for number, chain in enumerate(envelope.chains):
            chain.token = token
            url = relative_url(chain.url or "", self.client.settings.base_url, envelope.version)
            requests.append({"id": str(number), "method": "GET", "url": url or ""})
        try:
            with self.client.post_batch(envelope.version, requests, token) as response:
                self._read(envelope, response)
        except httpx.TransportError as exc:
            self._deliver_rest(envelope, transport_failure(exc))

    def _read(self, envelope: _Envelope, response: httpx.Response) -> None:
        status = response.status_code
        if status == 401 or status in RETRYABLE_STATUSES:
            # The envelope as a whole was throttled or its token refused: every chain in it
            # retries on its own budget, as if its GET had been answered so.
            response.read()
            for key, chain in list(envelope.unanswered.items()):
                self._deliver(
                    envelope,
                    key,
                    self.client.classify(
                        status, response.headers, chain.budget, _no_page, response.content
                    ),
                )
            return
        if status != 200:
            response.read()
            detail = parse_error_body(response.content, response.headers)
            self._refuse(f"HTTP {status}" + (f" {detail.graph_code}" if detail.graph_code else ""))
            return
        try:
            # One envelope's body is read at a time: the answers of the others wait on the
            # wire, not parsed in memory, while the database takes this one's pages.
            with self._lock:
                for answer in iter_answers(response.iter_bytes()):
                    key = str(answer.get("id"))
                    pending = envelope.unanswered.get(key)
                    if pending is not None:  # an unknown or repeated id is ignored
                        self._deliver(envelope, key, self._sub_outcome(pending, answer))
        except NotABatchResponse:
            self._refuse("the answer is not a batch response")
            return
        except BrokenBatchResponse as exc:
            self._deliver_rest(envelope, None, f"invalid body: {exc}")
            return
        self._deliver_rest(
            envelope, None, "invalid body: no answer for this request in the $batch response"
        )

    def _sub_outcome(self, chain: _Chain, answer: dict[str, Any]) -> CollectionPage | Failure:
        """One answer inside the envelope, classified exactly like a GET's response."""
        status = answer.get("status")
        if not isinstance(status, int):
            return _invalid(chain, "invalid body: an answer in the $batch response has no status")
        raw_headers = answer.get("headers")
        headers = httpx.Headers(
            {str(k): str(v) for k, v in raw_headers.items()}
            if isinstance(raw_headers, dict)
            else {}
        )
        body = answer.get("body")

        def page() -> CollectionPage:
            if isinstance(body, str):  # Graph base64-encodes bodies that are not JSON
                return parse_collection_page(_decoded(body))
            return collection_page_from(body)

        error_body = b"" if 200 <= status < 300 else _raw(body)
        return self.client.classify(status, headers, chain.budget, page, error_body)

    # -- outcomes (one at a time, under the lock) ------------------------------------------

    def _deliver(
        self, envelope: _Envelope, key: str, outcome: CollectionPage | Failure | GraphError
    ) -> None:
        """Hand one chain's outcome on; the sinks and the chains' state see one at a time."""
        chain = envelope.unanswered.pop(key)
        with self._lock:
            if isinstance(outcome, CollectionPage):
                self._take_page(chain, outcome)
            elif isinstance(outcome, GraphError):
                self._fail(chain, outcome)
            else:
                self._retry_or_fail(chain, outcome)

    def _deliver_rest(
        self,
        envelope: _Envelope,
        outcome: Failure | GraphError | None,
        invalid_reason: str = "",
    ) -> None:
        """Every chain not answered yet gets `outcome`, or an invalid-body failure."""
        for key, chain in list(envelope.unanswered.items()):
            self._deliver(envelope, key, outcome or _invalid(chain, invalid_reason))

    def _refuse(self, reason: str) -> None:
        """`$batch` is not usable here: the chains keep their pending request, which the next
        round sends by GET."""
        with self._lock:
            self.client.refuse_batching(reason)

    def _take_page(self, chain: _Chain, body: CollectionPage) -> None:
        chain.budget = self._budget()
        chain.refreshed = chain.tried_newer = chain.solo = False
        fetch = chain.fetch
        try:
            self._on_page(fetch, fetch.accept(body))
            fetch.check_pending_error()
        except GraphError as exc:
            self._fail(chain, exc)
            return
        self._advance(chain)

    def _advance(self, chain: _Chain) -> None:
        try:
            chain.url = chain.fetch.next_url()
        except GraphError as exc:
            self._fail(chain, exc)
            return
        if chain.url is None:
            self._on_end(chain.fetch)

    def _retry_or_fail(self, chain: _Chain, failure: Failure) -> None:
        """The GET path's rules: one token refresh on 401, a smaller `$top` when refused,
        else wait (Retry-After or backoff) on the chain's own budget and re-send later."""
        client, fetch = self.client, chain.fetch
        attempt = chain.budget.attempts
        if failure.status == 401 and not chain.refreshed:
            dropped = client.refresh_token(fetch, chain.token, page=chain.page, attempt=attempt)
            chain.refreshed = dropped or chain.tried_newer
            chain.tried_newer = chain.tried_newer or not dropped
            return
        if failure.final and client.narrow_page_size(fetch, chain.url or "", failure):
            chain.url = fetch.first_url
            chain.budget.restart()
            return
        try:
            wait = client.plan_wait(fetch, chain.budget, failure, page=chain.page)
        except GraphError as exc:
            self._fail(chain, exc)
            return
        chain.not_before = time.monotonic() + wait
        chain.solo = failure.code in (ErrorCode.TIMEOUT, ErrorCode.NETWORK_ERROR)

    def _fail(self, chain: _Chain, error: GraphError) -> None:
        chain.fetch.record_error(error)
        chain.url = None
        self._on_end(chain.fetch)

    # -- fallback --------------------------------------------------------------------------

    def _continue_by_get(self, chains: Iterable[_Chain], pool: ThreadPoolExecutor) -> None:
        """`$batch` refused: every open chain goes on with plain GETs, one worker each."""
        futures: list[Future[_Chain]] = [pool.submit(self._pull, c) for c in chains]
        for future in as_completed(futures):
            self._on_end(future.result().fetch)

    def _pull(self, chain: _Chain) -> _Chain:
        fetch = chain.fetch
        delay = chain.not_before - time.monotonic()
        if delay > 0:
            self._sleep(delay)
        try:
            while chain.url is not None:
                body = self.client.get_page(chain.url, fetch, chain.page)
                self._on_page(fetch, fetch.accept(body))
                fetch.check_pending_error()
                chain.url = fetch.next_url()
        except GraphError as exc:
            fetch.record_error(exc)
            chain.url = None
        return chain


def _longest_first(chain: _Chain) -> tuple[int, str]:
    ptype = chain.fetch.policy_type
    return ptype.server_page_size, ptype.key


def _no_page() -> CollectionPage:
    raise AssertionError("only called for a 2xx status")


def _invalid(chain: _Chain, reason: str) -> Failure:
    return Failure(
        ErrorCode.INVALID_RESPONSE, reason, final=not chain.budget.invalid_body_allowed()
    )


def _decoded(body: str) -> bytes:
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        return body.encode()


def _raw(body: Any) -> bytes:
    if isinstance(body, str):
        return _decoded(body)
    if body is None:
        return b""
    try:
        return orjson.dumps(body)
    except TypeError:
        return b""
