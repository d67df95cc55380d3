"""`GET /{version}/{graph_path}`: Graph's paged collections, read-only, with faults applied.

Written as a plain ASGI callable (not a Starlette function endpoint) so the request stays
"in flight" until its body has been sent, and so a fault can drop the connection mid-body.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from inventory_pipelines.core.policy_types import POLICY_TYPES, PolicyType
from inventory_pipelines.simulator.batch import BatchEndpoint
from inventory_pipelines.simulator.faults import GraphFaults, ResponseFault
from inventory_pipelines.simulator.graph_errors import (
    GRAPH_CONTENT_TYPE,
    default_error,
    forbidden_message,
    graph_error_body,
    intune_backend_url,
    intune_json_message,
    retry_after_header,
)
from inventory_pipelines.simulator.identifiers import UNKNOWN_TENANT, new_request_id
from inventory_pipelines.simulator.paging import (
    Cursor,
    PageStyle,
    PagingError,
    decode_skiptoken,
    encode_skiptoken,
    next_link,
    page_size_for,
    page_style,
    render_page,
    scope_of,
)
from inventory_pipelines.simulator.resets import HalfBodyThenReset
from inventory_pipelines.simulator.state import SimulatorState
from inventory_pipelines.simulator.store import Collection
from inventory_pipelines.simulator.tokens import TokenCheck

_WWW_AUTHENTICATE = (
    'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/'
    'authorize", client_id="00000003-0000-0000-c000-000000000000"'
)


@dataclass
class _Exchange:
    """Per-request facts shared by the helpers that build the response."""

    request: Request
    request_id: str
    client_request_id: str
    policy_type: PolicyType | None
    applied: list[str] = field(default_factory=list)

    # Built from the ASGI scope directly: Starlette's URL objects cost more than the page.
    @property
    def path(self) -> str:
        path: str = self.request.scope["path"]
        return path

    @property
    def query_string(self) -> str:
        raw: bytes = self.request.scope["query_string"]
        return raw.decode("latin-1")

    @property
    def base_url(self) -> str:
        """`http://host:port` as the client addressed us (next links must be absolute)."""
        scope = self.request.scope
        host = self.request.headers.get("host")
        if not host:
            server_host, server_port = scope.get("server") or ("127.0.0.1", 80)
            host = f"{server_host}:{server_port}"
        return f"{scope.get('scheme', 'http')}://{host}"

    @property
    def url(self) -> str:
        query = self.query_string
        return f"{self.base_url}{self.path}" + (f"?{query}" if query else "")

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {
            "request-id": self.request_id,
            "client-request-id": self.client_request_id,
            "x-ms-ags-diagnostic": '{"ServerInfo":{"DataCenter":"Simulator","Slice":"E",'
            '"Ring":"1","ScaleUnit":"000","RoleInstance":"SIM"}}',
            "OData-Version": "4.0",
        }
        if extra:
            headers.update(extra)
        return headers

    def error(
        self,
        status: int,
        code: str,
        message: str,
        extra_headers: dict[str, str] | None = None,
    ) -> Response:
        body = graph_error_body(code, message, self.request_id, self.client_request_id)
        return Response(
            body,
            status_code=status,
            media_type=GRAPH_CONTENT_TYPE,
            headers=self.headers(extra_headers),
        )


class GraphEndpoint:
    """ASGI app for every registry collection at its pinned API version."""

    def __init__(self, state: SimulatorState) -> None:
        self.state = state
        self._types: dict[str, PolicyType] = {t.url_path(): t for t in POLICY_TYPES}
        self._styles: dict[str, PageStyle] = {t.key: page_style(t) for t in POLICY_TYPES}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] == "POST" and scope["path"] in _BATCH_PATHS:
            await self.batch(scope, receive, send)
            return
        request = Request(scope, receive)
        request_id = new_request_id()
        exchange = _Exchange(
            request,
            request_id,
            request.headers.get("client-request-id") or request_id,
            self._types.get(scope["path"].rstrip("/")),
        )
        check = self.state.tokens.check(request.headers.get("authorization"))
        tenant_id = check.tenant_id or UNKNOWN_TENANT
        counters = self.state.counters
        counters.begin(tenant_id)
        status = 500
        try:
            response = await self._respond(exchange, check)
            status = response.status_code
            await response(scope, receive, send)
        finally:
            counters.end(tenant_id)
            key = exchange.policy_type.key if exchange.policy_type is not None else None
            counters.record(tenant_id, request.method, status, key, exchange.applied)

    async def _respond(self, exchange: _Exchange, check: TokenCheck) -> Response:
        request, policy_type = exchange.request, exchange.policy_type
        if request.method != "GET":
            # Inventory is read-only: any write attempt is refused (and counted).
            return exchange.error(
                405,
                "Request_BadRequest",
                "Specified HTTP method is not allowed for the request target.",
                {"Allow": "GET"},
            )
        if check.problem is not None or check.tenant_id is None:
            message = check.problem.value if check.problem else "Access token is empty."
            return exchange.error(
                401, "InvalidAuthenticationToken", message, {"WWW-Authenticate": _WWW_AUTHENTICATE}
            )
        tenant_id = check.tenant_id
        if policy_type is None:
            segment = exchange.path.rstrip("/").rsplit("/", 1)[-1]
            return exchange.error(
                404, "ResourceNotFound", f"Resource not found for the segment '{segment}'."
            )
        collection = self.state.data.collection(tenant_id, policy_type)
        token_scope = scope_of(tenant_id, policy_type)
        skiptoken = request.query_params.get("$skiptoken")
        try:
            if skiptoken is None:
                cursor = None
                page_size = page_size_for(
                    policy_type,
                    request.query_params.get("$top"),
                    self.state.options.settings_catalog_max_top,
                )
            else:
                cursor = decode_skiptoken(skiptoken, token_scope)
                page_size = cursor.page_size
                if collection.snapshot(cursor.version) is None:
                    raise PagingError("The $skiptoken has expired; restart the listing.")
        except PagingError as exc:
            return exchange.error(400, "BadRequest", str(exc))
        if policy_type.throttle_class == "identity" and not self.state.identity_allows(tenant_id):
            # Entra ID's per-tenant limit: 429 and, notoriously, no Retry-After.
            exchange.applied.append("identity_throttle")
            return exchange.error(429, "TooManyRequests", "Too many requests.")
        faults = self.state.faults.decide_graph(tenant_id, policy_type.key, cursor is None)
        exchange.applied.extend(faults.applied)
        if faults.rendezvous is not None:
            await faults.rendezvous.wait(tenant_id)
        if faults.latency_ms > 0:
            await asyncio.sleep(faults.latency_ms / 1000)
        fault = faults.response
        if fault is not None and fault.kind not in _BODY_FAULTS:
            return self._fault_response(exchange, tenant_id, fault)
        body = self._page(exchange, collection, cursor, page_size, faults, token_scope)
        headers = exchange.headers()
        if fault is None:
            return Response(body, media_type=GRAPH_CONTENT_TYPE, headers=headers)
        if fault.kind == "malformed_json":
            # Full length, but `[,` can never parse.
            broken = body.replace(b'"value":[', b'"value":[,', 1)
            return Response(broken, media_type=GRAPH_CONTENT_TYPE, headers=headers)
        if fault.kind == "truncated_body":
            cut = body[: max(1, len(body) * 2 // 3)]
            return Response(cut, media_type=GRAPH_CONTENT_TYPE, headers=headers)
        return HalfBodyThenReset(body, media_type=GRAPH_CONTENT_TYPE, headers=headers)

    async def batch(self, scope: Scope, receive: Receive, send: Send) -> None:
        """`POST /{version}/$batch`: JSON batching, each sub-request answered as its own GET."""
        await BatchEndpoint(self).handle(scope, receive, send)

    async def sub_request(self, scope: Scope, check: TokenCheck) -> tuple[Response, list[str]]:
        """One sub-request of a batch, through the same rules, faults and limits as a GET."""
        request = Request(scope)
        request_id = new_request_id()
        exchange = _Exchange(
            request,
            request_id,
            request.headers.get("client-request-id") or request_id,
            self._types.get(scope["path"].rstrip("/")),
        )
        response = await self._respond(exchange, check)
        return response, exchange.applied

    def policy_type_at(self, path: str) -> PolicyType | None:
        return self._types.get(path.rstrip("/"))

    def _fault_response(
        self, exchange: _Exchange, tenant_id: str, fault: ResponseFault
    ) -> Response:
        params = fault.params
        policy_type = exchange.policy_type
        if fault.kind == "revoke_tokens":
            self.state.tokens.revoke(tenant_id)
            return exchange.error(
                401,
                "InvalidAuthenticationToken",
                "Access token has expired or is not yet valid.",
                {"WWW-Authenticate": _WWW_AUTHENTICATE},
            )
        if fault.kind == "throttle":
            status = 429
            code = "TooManyRequests"
            message = params.get("message") or (
                "Application is over its resource limit."
                if fault.source_kind == "throttle"
                else "Rate limit exceeded."
            )
        else:
            status = params["status"]
            code = params.get("code") or default_error(status)[0]
            message = params.get("message") or (
                forbidden_message(policy_type) if status == 403 else default_error(status)[1]
            )
        intune_flag = params.get("intune_json_message")
        is_intune = policy_type is not None and policy_type.throttle_class == "intune"
        if intune_flag or (intune_flag is None and is_intune and status not in (401, 403)):
            url = intune_backend_url(policy_type, exchange.query_string)
            message = intune_json_message(message, url)
        extra: dict[str, str] = {}
        retry_after = retry_after_header(params.get("retry_after"))
        if retry_after is not None:
            extra["Retry-After"] = retry_after
        return exchange.error(status, code, message, extra)

    def _page(
        self,
        exchange: _Exchange,
        collection: Collection,
        cursor: Cursor | None,
        page_size: int,
        faults: GraphFaults,
        token_scope: int,
    ) -> bytes:
        """One page of the listing; listing faults come from the rules or the skiptoken."""
        request = exchange.request
        policy_type = collection.policy_type
        if cursor is None:
            cursor = Cursor(
                collection.version,
                0,
                page_size,
                faults.empty_pages,
                faults.duplicate,
                faults.missing_ids,
            )
        items = collection.snapshot(cursor.version) or ()
        base = exchange.base_url
        query = request.query_params.multi_items()
        if cursor.empty_pages_left > 0:
            chunk: list[bytes] = []
            following: Cursor | None = Cursor(
                cursor.version,
                cursor.offset,
                cursor.page_size,
                cursor.empty_pages_left - 1,
                cursor.duplicate,
                cursor.missing_ids,
            )
        else:
            offset, size = cursor.offset, cursor.page_size
            chunk = [item.json_bytes() for item in items[offset : offset + size]]
            if cursor.duplicate and 0 < offset <= len(items):
                chunk.insert(0, items[offset - 1].json_bytes())
            if cursor.missing_ids and offset == 0:
                chunk.extend(collection.id_less_items(cursor.missing_ids))
            following = (
                Cursor(cursor.version, offset + size, size, 0, cursor.duplicate, 0)
                if offset + size < len(items)
                else None
            )
        link = (
            next_link(base, exchange.path, query, encode_skiptoken(following, token_scope))
            if following is not None
            else None
        )
        if faults.repeat_next_link:
            link = exchange.url
        context = f"{base}/{policy_type.api_version}/$metadata#{policy_type.graph_path}"
        with_tips = "$select" not in request.query_params
        return render_page(context, chunk, link, self._styles[policy_type.key], with_tips=with_tips)


_BODY_FAULTS = frozenset({"malformed_json", "truncated_body", "reset_connection"})
_BATCH_PATHS = frozenset({"/v1.0/$batch", "/beta/$batch"})
