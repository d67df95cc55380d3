"""Reading Graph response bodies: collection pages and error documents.

Kept apart from the HTTP loop so the shapes Graph really sends (annotations, Intune's
JSON-inside-a-message errors) are unit-testable on plain bytes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from inventory_pipelines.core import fast_json

REQUEST_ID_HEADERS = ("request-id", "x-ms-request-id", "client-request-id")
_MAX_MESSAGE_CHARS = 500


class InvalidBodyError(ValueError):
    """A 2xx body that is not a Graph collection page (malformed, truncated, wrong shape)."""


@dataclass(frozen=True)
class CollectionPage:
    """The parts of one collection response that paging needs."""

    value: list[Any]
    next_link: str | None


def parse_collection_page(content: bytes) -> CollectionPage:
    """Parse one page; tolerate annotations anywhere, require a list `value`."""
    try:
        body = fast_json.loads(content)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidBodyError(f"body is not valid JSON ({type(exc).__name__})") from None
    return collection_page_from(body)


def collection_page_from(body: Any) -> CollectionPage:
    """The page in an already parsed body (a `$batch` answer carries it parsed)."""
    if not isinstance(body, dict):
        raise InvalidBodyError("body is not a JSON object")
    value = body.get("value")
    if not isinstance(value, list):
        raise InvalidBodyError("body has no list 'value'")
    next_link = body.get("@odata.nextLink")
    if next_link is not None and (not isinstance(next_link, str) or not next_link.strip()):
        raise InvalidBodyError("'@odata.nextLink' is not a non-empty string")
    return CollectionPage(value=value, next_link=next_link)


@dataclass(frozen=True)
class GraphErrorDetail:
    """What an error response tells support: Graph's code, message, request id, hint."""

    graph_code: str | None = None
    message: str | None = None
    request_id: str | None = None
    retry_after: float | None = None


def _text(value: object) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _shorten(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE_CHARS else text[:_MAX_MESSAGE_CHARS] + "…"


def _parse_intune_message(message: str) -> tuple[str | None, str | None, float | None]:
    """Intune nests a JSON document in `error.message`; return its message, code, RetryAfter."""
    if not message.lstrip().startswith("{"):
        return None, None, None
    try:
        inner = json.loads(message)
    except json.JSONDecodeError:
        return None, None, None
    if not isinstance(inner, dict):
        return None, None, None
    inner_message = _text(inner.get("Message")) or _text(inner.get("message"))
    inner_code = (
        _text(inner.get("ErrorCode"))
        or _text(inner.get("Code"))
        or _text(inner.get("code"))
        or _text(inner.get("CustomApiErrorPhrase"))
    )
    retry_after = inner.get("RetryAfter")
    hint: float | None = None
    if isinstance(retry_after, int | float | str) and not isinstance(retry_after, bool):
        try:
            seconds = float(retry_after)
        except ValueError:
            seconds = -1.0
        hint = seconds if math.isfinite(seconds) and seconds >= 0 else None
    return inner_message, inner_code, hint


def _request_id_from(inner_error: object) -> str | None:
    """Find `request-id` in `innerError`, which may nest further `innerError`s."""
    depth = 0
    while isinstance(inner_error, dict) and depth < 5:
        found = _text(inner_error.get("request-id")) or _text(inner_error.get("requestId"))
        if found:
            return found
        inner_error = inner_error.get("innerError") or inner_error.get("innererror")
        depth += 1
    return None


def parse_error_body(content: bytes, headers: Mapping[str, str] | None = None) -> GraphErrorDetail:
    """Best-effort reading of a Graph error response; never raises."""
    request_id = None
    if headers is not None:
        for name in REQUEST_ID_HEADERS:
            request_id = _text(headers.get(name))
            if request_id:
                break
    try:
        body = fast_json.loads(content) if content else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return GraphErrorDetail(request_id=request_id)
    graph_code = _text(error.get("code"))
    message = _text(error.get("message"))
    retry_hint = None
    if message is not None:
        inner_message, inner_code, retry_hint = _parse_intune_message(message)
        if inner_message is not None:
            message = inner_message
        if inner_code is not None and graph_code is None:
            graph_code = inner_code
    inner_error = error.get("innerError") or error.get("innererror")
    request_id = request_id or _request_id_from(inner_error)
    return GraphErrorDetail(
        graph_code=graph_code,
        message=_shorten(message) if message else None,
        request_id=request_id,
        retry_after=retry_hint,
    )
