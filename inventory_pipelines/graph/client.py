"""The read-only Microsoft Graph client: one HTTP connection pool, GET only, retries inside.

Read-only by construction: `_request` refuses every method but GET and every host but the
configured Graph base URL, and an httpx request hook refuses anything else except the token
POST to the authority (msal's, sent through `token_http.py`). Safe to share between threads
fetching different policy types of one tenant.
"""

from __future__ import annotations

import logging
import random as _random
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from importlib import metadata
from types import TracebackType
from typing import Any

import httpx
import orjson

from inventory_pipelines.core.errors import (
    ErrorCode,
    GraphError,
    InventoryError,
)
from inventory_pipelines.core.policy_types import PolicyType, get_policy_type
from inventory_pipelines.core.redaction import project_logger
from inventory_pipelines.core.tenant_ids import normalize_tenant_id
from inventory_pipelines.graph.auth import LOGGER_NAME, TokenProvider, is_token_url
from inventory_pipelines.graph.batch import (
    PROCESS_BATCH_REFUSALS,
    BatchRefusals,
    batch_body_problem,
    batch_version,
)
from inventory_pipelines.graph.fetch import PolicyTypeFetch, RetryWait
from inventory_pipelines.graph.pacing import RequestPacer
from inventory_pipelines.graph.page_size import PROCESS_PAGE_SIZES, PageSizeMemory, is_top_refusal
from inventory_pipelines.graph.responses import (
    CollectionPage,
    InvalidBodyError,
    parse_collection_page,
    parse_error_body,
)
from inventory_pipelines.graph.retry import (
    Failure,
    RetryBudget,
    RetryPolicy,
    call_with_retries,
    status_failure,
    transport_failure,
)
from inventory_pipelines.graph.settings import GraphSettings

DEFAULT_MAX_PAGES = 10_000
DEFAULT_MAX_CONNECTIONS = 8
DEFAULT_IDENTITY_REQUESTS_PER_SECOND = 1.0
"""Graph's documented limit for conditional access and identity protection, per tenant."""


def _user_agent() -> str:
    try:
        version = metadata.version("inventory_pipelines")
    except metadata.PackageNotFoundError:
        version = "0"
    return f"inventory-pipelines/{version}"


USER_AGENT = _user_agent()


class ReadOnlyViolationError(InventoryError):
    """Code tried to send something other than GET to Graph; a bug, never retried."""

    code = ErrorCode.INTERNAL


class GraphClient:
    """Fetches Intune collections from Graph for many tenants over one `httpx.Client`."""

    def __init__(
        self,
        settings: GraphSettings,
        *,
        retry: RetryPolicy | None = None,
        logger: logging.Logger | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        random: Callable[[], float] = _random.random,
        max_pages: int = DEFAULT_MAX_PAGES,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        identity_requests_per_second: float = DEFAULT_IDENTITY_REQUESTS_PER_SECOND,
        page_sizes: PageSizeMemory | None = None,
        batch_refusals: BatchRefusals | None = None,
    ) -> None:
        self.settings = settings
        self.retry = retry or RetryPolicy()
        self.max_pages = max_pages
        self.page_sizes = PROCESS_PAGE_SIZES if page_sizes is None else page_sizes
        """Accepted `$top` per policy type; by default shared by every client of the process."""
        self.batch_refusals = PROCESS_BATCH_REFUSALS if batch_refusals is None else batch_refusals
        """Base URLs that refused `$batch`; by default shared by every client of the process."""
        self._identity_pacer = RequestPacer(identity_requests_per_second, sleep=sleep)
        self._logger = logger or project_logger(LOGGER_NAME)
        self._sleep = sleep
        self._random = random
        self._graph_origin = httpx.URL(settings.base_url)
        self._http = httpx.Client(
            transport=transport,
            timeout=httpx.Timeout(
                connect=settings.connect_timeout,
                read=settings.read_timeout,
                write=settings.write_timeout,
                pool=settings.pool_timeout,
            ),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            follow_redirects=False,
            event_hooks={"request": [self._guard_request]},
        )
        self.tokens = TokenProvider(
            settings, self._http, retry=self.retry, logger=self._logger, sleep=sleep, random=random
        )

    def __repr__(self) -> str:
        return (
            f"GraphClient(base_url={self.settings.base_url!r}, "
            f"authority_url={self.settings.authority_url!r})"
        )

    def __enter__(self) -> GraphClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def fetch(self, tenant_id: str, policy_type: PolicyType | str) -> PolicyTypeFetch:
        """Pages of one policy type; nothing is requested until the result is iterated."""
        tenant_id = normalize_tenant_id(tenant_id)
        ptype = get_policy_type(policy_type) if isinstance(policy_type, str) else policy_type
        top = self.page_sizes.top_for(ptype)
        return PolicyTypeFetch(
            tenant_id,
            ptype,
            self._first_page_url(ptype, top),
            self._get_page,
            max_pages=self.max_pages,
            top=top,
        )

    def _first_page_url(self, ptype: PolicyType, top: int | None) -> str:
        """The largest page the endpoint takes: each page is parsed and handed on, never kept,
        so a bigger page costs no memory across the fetch and saves round trips."""
        url = f"{self.settings.base_url}{ptype.url_path()}"
        return url if top is None else f"{url}?$top={top}"

    # -- JSON batching ---------------------------------------------------------------------

    def batching_available(self) -> bool:
        """Batch unless switched off or refused earlier in this process; never when Graph sits
        under a path prefix (the read-only guard lets only `/{version}/$batch` out)."""
        return (
            self.settings.batching
            and not self._graph_origin.path.strip("/")
            and not self.batch_refusals.refused(self.settings.base_url)
        )

    def refuse_batching(self, reason: str) -> None:
        """The `$batch` endpoint is not usable here: plain GETs from now on, logged once."""
        if self.batch_refusals.refuse(self.settings.base_url):
            self._logger.warning(
                self._redact(
                    f"Graph at {self.settings.base_url} refused $batch ({reason}); fetching with "
                    f"one GET per page for the rest of this process"
                ),
                extra={"graph_reason": self._redact(reason)},
            )

    @contextmanager
    def post_batch(
        self, version: str, requests: list[dict[str, str]], token: str
    ) -> Iterator[httpx.Response]:
        """POST one envelope of GETs (the request hook checks it before it leaves); the
        answer is streamed, so its body is read as it arrives and never held whole."""
        request = self._http.build_request(
            "POST",
            f"{self.settings.base_url}/{version}/$batch",
            content=orjson.dumps({"requests": requests}),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        response = self._http.send(request, stream=True)
        try:
            yield response
        finally:
            response.close()

    def pace(self, fetch: PolicyTypeFetch) -> None:
        """Wait for the tenant's identity slot when the type is identity-paced."""
        if fetch.policy_type.throttle_class == "identity":
            self._identity_pacer.wait(fetch.tenant_id)

    def claim_pacing_slot(self, fetch: PolicyTypeFetch) -> float:
        """0 when the request may go now (the tenant's identity slot is taken for it, or the
        type is not paced), else the seconds until the slot frees; nothing is taken then."""
        if fetch.policy_type.throttle_class != "identity":
            return 0.0
        return self._identity_pacer.claim(fetch.tenant_id)

    def get_page(self, url: str, fetch: PolicyTypeFetch, page: int) -> CollectionPage:
        """One page by plain GET, every retry rule applied (the unbatched path)."""
        return self._get_page(url, fetch, page)

    # -- HTTP ---------------------------------------------------------------------------

    def _guard_request(self, request: httpx.Request) -> None:
        """Last line of defence: only GETs, plus the token POST to the authority, leave."""
        if request.method == "GET":
            return
        if request.method == "POST" and is_token_url(self.settings, request.url):
            return
        if request.method == "POST" and self._is_graph_origin(request.url):
            version = batch_version(request.url.path)
            if version is not None and request.url.query == b"":
                problem = batch_body_problem(request.content, version)
                if problem is None:
                    return
                raise ReadOnlyViolationError(
                    f"refusing to send a $batch to {request.url.copy_with(query=None)}: "
                    f"{problem}; inventory is read-only"
                )
        raise ReadOnlyViolationError(
            f"refusing to send {request.method} to {request.url.copy_with(query=None)}: "
            f"inventory is read-only"
        )

    def _is_graph_origin(self, url: httpx.URL) -> bool:
        origin = self._graph_origin
        same = (url.scheme, url.host, url.port) == (origin.scheme, origin.host, origin.port)
        return same and not origin.path.strip("/")

    def _request(self, method: str, url: str, *, headers: Mapping[str, str]) -> httpx.Response:
        """Send one GET to Graph and read its body; anything but GET is refused.

        The host check keeps a bearer token from ever following a next link elsewhere.
        """
        if method != "GET":
            raise ReadOnlyViolationError(
                f"refusing to send {method!r} to Graph: the client is read-only (GET only)"
            )
        target = httpx.URL(url)
        origin = self._graph_origin
        if (target.scheme, target.host, target.port) != (origin.scheme, origin.host, origin.port):
            raise GraphError(
                f"refusing to follow a link to {target.scheme}://{target.host}: it is not the "
                f"configured Graph base URL {self.settings.base_url}",
                code=ErrorCode.INVALID_RESPONSE,
            )
        # A connection lost mid-body surfaces here as a TransportError: a network error, retried.
        return self._http.send(self._http.build_request("GET", target, headers=headers))

    def _get_page(self, url: str, fetch: PolicyTypeFetch, page: int) -> CollectionPage:
        """GET one page with every retry rule applied; raise GraphError when it is hopeless."""
        budget = RetryBudget(self.retry, self._random)
        token = ""
        refreshed = tried_newer = False

        def attempt(_: int) -> CollectionPage | Failure:
            nonlocal token
            token = self.tokens.token(fetch.tenant_id)
            self.pace(fetch)
            fetch.stats.requests += 1
            return self._attempt(url, token, budget)

        def recover(failure: Failure, number: int) -> bool:
            nonlocal url, refreshed, tried_newer
            if failure.status == 401 and not refreshed:
                # A token another thread fetched meanwhile is tried once without spending the
                # refresh: the revocation behind this 401 may have invalidated it as well.
                dropped = self.refresh_token(fetch, token, page=page, attempt=number)
                refreshed = dropped or tried_newer
                tried_newer = tried_newer or not dropped
                return True
            if failure.final and self.narrow_page_size(fetch, url, failure):
                url = fetch.first_url
                budget.restart()
                return True
            return False

        return call_with_retries(
            budget,
            attempt,
            recover=recover,
            give_up=lambda failure: self.error_for(fetch, failure, budget),
            on_wait=lambda failure, seconds, number: self.report_wait(
                fetch, failure, seconds, page=page, attempt=number
            ),
            sleep=self._sleep,
        )

    def narrow_page_size(self, fetch: PolicyTypeFetch, url: str, failure: Failure) -> bool:
        """A first page refused for its `$top`: learn a smaller size and ask again (True).

        Only the first page carries our `$top`; later pages follow Graph's own next links.
        """
        if fetch.top is None or url != fetch.first_url:
            return False
        if not is_top_refusal(failure.status, failure.detail.message):
            return False
        refused = fetch.top
        top = self.page_sizes.narrow(fetch.policy_type, refused, failure.detail.message)
        fetch.narrow_first_page(top, self._first_page_url(fetch.policy_type, top))
        self._log(
            f"Graph refused $top={refused} for {fetch.policy_type.key} of tenant "
            f"{fetch.tenant_id}; asking again with "
            + (f"$top={top}" if top is not None else "no $top")
            + " (remembered for this process)",
            tenant=fetch.tenant_id,
            policy_type=fetch.policy_type.key,
            refused_top=refused,
            top=top,
        )
        return True

    def _attempt(self, url: str, token: str, budget: RetryBudget) -> CollectionPage | Failure:
        """One GET, classified: a page, or a failure saying whether it may be retried."""
        try:
            response = self._request("GET", url, headers={"Authorization": f"Bearer {token}"})
        except httpx.TransportError as exc:
            return transport_failure(exc)
        return self.classify(
            response.status_code,
            response.headers,
            budget,
            lambda: parse_collection_page(response.content),
            response.content,
        )

    def classify(
        self,
        status: int,
        headers: Mapping[str, str],
        budget: RetryBudget,
        page: Callable[[], CollectionPage],
        error_body: bytes,
    ) -> CollectionPage | Failure:
        """A page, or a failure saying whether it may be retried; for a GET's response and
        for one answer inside a `$batch` alike (`headers` must be case-insensitive)."""
        if 200 <= status < 300:
            try:
                return page()
            except InvalidBodyError as exc:
                # Malformed or cut-short JSON: retried a few times, it rarely heals by itself.
                return Failure(
                    ErrorCode.INVALID_RESPONSE,
                    f"invalid body: {exc}",
                    status=status,
                    detail=parse_error_body(b"", headers),
                    final=not budget.invalid_body_allowed(),
                )
        return status_failure(status, headers, parse_error_body(error_body, headers))

    def refresh_token(
        self, fetch: PolicyTypeFetch, rejected: str, *, page: int, attempt: int
    ) -> bool:
        """401: the token was revoked or expired early; drop it so the retry fetches a new one.

        False when another thread had already replaced it: the retry uses that newer token.
        """
        dropped = self.tokens.invalidate(fetch.tenant_id, rejected)
        if dropped:
            fetch.stats.token_refreshes += 1
        fetch.stats.retries += 1
        action = "fetching a fresh token" if dropped else "using the newer token already cached"
        self._log(
            f"Graph answered 401 for {fetch.policy_type.key} of tenant {fetch.tenant_id} "
            f"(page {page}, attempt {attempt}); {action} and retrying",
            tenant=fetch.tenant_id,
            policy_type=fetch.policy_type.key,
            attempt=attempt,
            seconds=0.0,
            reason="HTTP 401",
            status=401,
        )
        return dropped

    def plan_wait(
        self, fetch: PolicyTypeFetch, budget: RetryBudget, failure: Failure, *, page: int
    ) -> float:
        """For a batched request: the budget's decision (`RetryBudget.wait_for`), logged and
        recorded as starting now; raises the GraphError when it gives up. The request waits by
        being re-sent in a later round."""
        return budget.wait_for(
            failure,
            give_up=lambda given_up: self.error_for(fetch, given_up, budget),
            on_wait=lambda failed, seconds, attempt: self.report_wait(
                fetch, failed, seconds, page=page, attempt=attempt
            ),
        )

    def report_wait(
        self, fetch: PolicyTypeFetch, failure: Failure, wait: float, *, page: int, attempt: int
    ) -> None:
        """Log a wait before a retry and keep it in the fetch's statistics."""
        reason = failure.reason
        if failure.detail.graph_code:
            reason += f" {failure.detail.graph_code}"
        if failure.retry_after is not None:
            reason += f" (Retry-After {failure.retry_after:g}s)"
        self._log(
            f"waiting {wait:.3f}s before retrying {fetch.policy_type.key} of tenant "
            f"{fetch.tenant_id} (page {page}, attempt {attempt} failed: {reason})",
            tenant=fetch.tenant_id,
            policy_type=fetch.policy_type.key,
            attempt=attempt,
            seconds=wait,
            reason=reason,
            status=failure.status,
        )
        fetch.stats.record_wait(
            RetryWait(
                page,
                attempt,
                wait,
                self._redact(reason),
                failure.status,
                failure.retry_after,
                began=time.monotonic(),
            )
        )

    def _redact(self, text: str) -> str:
        return self.tokens.redact(text)

    def _log(self, message: str, **fields: Any) -> None:
        extra = {
            f"graph_{name}": self._redact(value) if isinstance(value, str) else value
            for name, value in fields.items()
        }
        self._logger.info(self._redact(message), extra=extra)

    def error_for(
        self, fetch: PolicyTypeFetch, failure: Failure, budget: RetryBudget
    ) -> GraphError:
        """A GraphError naming what failed, with Graph's code and request id, redacted."""
        detail = failure.detail
        message = (
            f"GET {fetch.policy_type.key} for tenant {fetch.tenant_id} failed: {failure.reason}"
        )
        if detail.graph_code:
            message += f" {detail.graph_code}"
        if detail.message:
            message += f": {detail.message}"
        if failure.final and budget.retried_failures:
            message += f" ({budget.history()})"
        elif budget.attempts > 1:
            message += f" (gave up after {budget.attempts} attempts, waited {budget.waited:.2f}s)"
        return GraphError(
            self._redact(message),
            code=failure.code,
            status=failure.status,
            graph_code=self._redact(detail.graph_code) if detail.graph_code else None,
            request_id=self._redact(detail.request_id) if detail.request_id else None,
        )
