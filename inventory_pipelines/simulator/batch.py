"""`POST /{version}/$batch`: Graph's JSON batching, at most 20 sub-requests per envelope.

Each sub-request goes through the Graph endpoint's own rules (token, paging, rate limits,
faults) and is counted like a GET; answers come back in any order, each with its status,
headers and body. A connection-reset fault on any sub-request resets the whole envelope.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
from typing import Any, Protocol
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from inventory_pipelines.core.policy_types import PolicyType
from inventory_pipelines.simulator.graph_errors import GRAPH_CONTENT_TYPE, graph_error_body
from inventory_pipelines.simulator.identifiers import UNKNOWN_TENANT, new_request_id
from inventory_pipelines.simulator.resets import HalfBodyThenReset
from inventory_pipelines.simulator.state import SimulatorState
from inventory_pipelines.simulator.tokens import TokenCheck


class SubRequests(Protocol):
    """What an envelope needs from the Graph endpoint it belongs to (`GraphEndpoint`):
    its state and each sub-request answered as its own GET."""

    state: SimulatorState

    async def sub_request(self, scope: Scope, check: TokenCheck) -> tuple[Response, list[str]]: ...

    def policy_type_at(self, path: str) -> PolicyType | None: ...


MAX_BATCH_REQUESTS = 20


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _sub_scope(envelope: Scope, version: str, sub: dict[str, Any]) -> Scope:
    url = sub.get("url")
    method = sub.get("method")
    if not isinstance(url, str) or not isinstance(method, str) or "id" not in sub:
        raise _Refused(400, "BadRequest", "Each request needs an id, a method and a url.")
    parts = urlsplit(url if url.startswith("/") else f"/{url}")
    if parts.scheme or parts.netloc:
        raise _Refused(400, "BadRequest", "Batch request urls must be relative.")
    headers = [
        (name, value)
        for name, value in envelope["headers"]
        if name in (b"host", b"authorization", b"user-agent")
    ]
    extra = sub.get("headers") or {}
    if isinstance(extra, dict):
        headers += [(str(k).lower().encode(), str(v).encode()) for k, v in extra.items()]
    return {
        "type": "http",
        "method": method.upper(),
        "path": f"/{version}{parts.path}",
        "raw_path": f"/{version}{parts.path}".encode(),
        "query_string": parts.query.encode(),
        "headers": headers,
        "scheme": envelope.get("scheme", "http"),
        "server": envelope.get("server"),
        "http_version": "1.1",
    }


def _body_of(response: Response) -> Any:
    raw = bytes(response.body)
    try:
        return json.loads(raw) if raw else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        return base64.b64encode(raw).decode()  # Graph base64-encodes bodies that are not JSON


class BatchEndpoint:
    """Answers one envelope for the Graph endpoint it belongs to."""

    def __init__(self, graph: SubRequests) -> None:
        self.graph = graph

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = self.graph.state
        request = Request(scope, receive)
        check = state.tokens.check(request.headers.get("authorization"))
        tenant_id = check.tenant_id or UNKNOWN_TENANT
        state.counters.begin(tenant_id)
        status, size = 500, 0
        try:
            version = scope["path"].split("/")[1]
            try:
                if not state.options.batch_enabled:
                    raise _Refused(
                        404, "ResourceNotFound", "Resource not found for the segment '$batch'."
                    )
                subs = await self._requests(request)
                size = len(subs)
                if check.problem is not None or check.tenant_id is None:
                    message = check.problem.value if check.problem else "Access token is empty."
                    raise _Refused(401, "InvalidAuthenticationToken", message)
                answers = await asyncio.gather(
                    *(self._answer(scope, version, sub, check, tenant_id) for sub in subs)
                )
            except _Refused as exc:
                status = exc.status
                rid = new_request_id()
                body = graph_error_body(exc.code, exc.message, rid, rid)
                await Response(body, exc.status, media_type=GRAPH_CONTENT_TYPE)(
                    scope, receive, send
                )
                return
            reset = any(answer is None for answer in answers)
            kept = [answer for answer in answers if answer is not None]
            random.shuffle(kept)  # Graph answers in any order
            content = json.dumps({"responses": kept}, ensure_ascii=False).encode()
            status = 200
            response = Response(content, media_type="application/json")
            if reset:
                response = HalfBodyThenReset(content, media_type="application/json")
            await response(scope, receive, send)
        finally:
            state.counters.end(tenant_id)
            state.counters.record_batch(tenant_id, status, size)

    async def _requests(self, request: Request) -> list[dict[str, Any]]:
        try:
            body = json.loads(await request.body())
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise _Refused(400, "BadRequest", "Invalid batch payload format.") from None
        subs = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(subs, list) or not all(isinstance(s, dict) for s in subs):
            raise _Refused(400, "BadRequest", "Invalid batch payload format.")
        if len(subs) > MAX_BATCH_REQUESTS:
            raise _Refused(
                400,
                "BadRequest",
                f"Number of batch request steps exceeds the maximum of {MAX_BATCH_REQUESTS}.",
            )
        if len({str(s.get("id")) for s in subs}) != len(subs):
            raise _Refused(400, "BadRequest", "Batch request ids must be unique.")
        return subs

    async def _answer(
        self, scope: Scope, version: str, sub: dict[str, Any], check: Any, tenant_id: str
    ) -> dict[str, Any] | None:
        sub_scope = _sub_scope(scope, version, sub)
        response, applied = await self.graph.sub_request(sub_scope, check)
        policy_type = self.graph.policy_type_at(sub_scope["path"])
        key = policy_type.key if policy_type is not None else None
        self.graph.state.counters.record(
            tenant_id, sub_scope["method"], response.status_code, key, applied
        )
        if "reset_connection" in applied and response.status_code < 300:
            return None
        headers = {
            name: value
            for name, value in response.headers.items()
            if name not in ("content-length",)
        }
        return {
            "id": str(sub["id"]),
            "status": response.status_code,
            "headers": headers,
            "body": _body_of(response),
        }
