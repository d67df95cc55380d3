"""JSON batching (`POST /{version}/$batch`, at most 20 GETs each): what may leave the client.

The read-only guarantee covers batches too: an envelope may only carry GETs of registry
collections of its own API version, checked on the serialized body right before it is sent.
"""

from __future__ import annotations

import threading
from urllib.parse import urlsplit

from inventory_pipelines.core import fast_json
from inventory_pipelines.core.policy_types import POLICY_TYPES

MAX_BATCH_REQUESTS = 20
"""Graph's limit of requests per `$batch` envelope."""

_REGISTRY_PATHS: dict[str, frozenset[str]] = {
    version: frozenset(t.graph_path for t in POLICY_TYPES if t.api_version == version)
    for version in ("v1.0", "beta")
}


def batch_version(path: str) -> str | None:
    """The API version of a `$batch` URL path (`/beta/$batch` → `beta`), else None."""
    for version in _REGISTRY_PATHS:
        if path == f"/{version}/$batch":
            return version
    return None


def batch_body_problem(content: bytes, version: str) -> str | None:
    """Why this envelope must not be sent (None: only GETs of registry collections)."""
    try:
        body = fast_json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return "the batch body is not JSON"
    requests = body.get("requests") if isinstance(body, dict) else None
    if not isinstance(requests, list) or not requests:
        return "the batch body has no list of requests"
    if len(requests) > MAX_BATCH_REQUESTS:
        return f"a batch holds at most {MAX_BATCH_REQUESTS} requests"
    allowed = _REGISTRY_PATHS.get(version, frozenset())
    for sub in requests:
        if not isinstance(sub, dict) or sub.get("method") != "GET":
            method = sub.get("method") if isinstance(sub, dict) else None
            return f"a batched request uses {method!r}; only GET is allowed"
        url = sub.get("url")
        if not isinstance(url, str):
            return "a batched request has no url"
        parts = urlsplit(url)
        if parts.scheme or parts.netloc or parts.path.lstrip("/") not in allowed:
            return f"a batched request targets {parts.path!r}, not a {version} registry collection"
    return None


def relative_url(url: str, base_url: str, version: str) -> str | None:
    """A page URL relative to `{base_url}/{version}` as a batch wants it (query kept), or None
    when it lies elsewhere (a next link to another host or version is never batched)."""
    root = f"{base_url}/{version}/"
    if not url.startswith(root):
        return None
    return "/" + url[len(root) :]


class BatchRefusals:
    """Base URLs whose Graph (or proxy) refused `$batch`: plain GETs there for this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._refused: set[str] = set()

    def refused(self, base_url: str) -> bool:
        with self._lock:
            return base_url in self._refused

    def refuse(self, base_url: str) -> bool:
        """Remember the refusal; True the first time (so it is logged once)."""
        with self._lock:
            first = base_url not in self._refused
            self._refused.add(base_url)
            return first

    def reset(self) -> None:
        with self._lock:
            self._refused.clear()


PROCESS_BATCH_REFUSALS = BatchRefusals()
"""Shared by every `GraphClient` of the process, like the learned page sizes."""
