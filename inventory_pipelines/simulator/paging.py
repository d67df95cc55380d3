"""Graph paging: page sizes and `$top` rules, opaque `$skiptoken`s, and page bodies.

A skiptoken is an opaque base64url blob naming the snapshot version, the offset and the
page size (plus fault state such as empty pages still to emit), bound to one tenant and
collection so it cannot be replayed elsewhere.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote

from inventory_pipelines.core.policy_types import PolicyType

CLAMPED_MAX_TOP = 999
"""Endpoints without a hard `$top` cap silently clamp larger values to this."""

DEFAULT_SETTINGS_CATALOG_MAX_TOP = 100
"""Settings catalog lists (25 per page by default) refuse a larger `$top` with a 400."""

SETTINGS_CATALOG_TYPES = frozenset({"settings_catalog_policies", "settings_catalog_compliance"})

_TOKEN_MAGIC = b"SIM1"
_TOKEN_FORMAT = ">4sIIIIIIB"
_FLAG_DUPLICATE = 1

TIPS = (
    "Use $select to choose only the properties your app needs, as this can lead to "
    "performance improvements. For example: GET {path}?$select=id,{name_field}"
)


class PagingError(ValueError):
    """A query option Graph would answer with 400 BadRequest; the message is Graph's."""


@dataclass(frozen=True)
class Cursor:
    """Where the next page of one listing starts."""

    version: int
    offset: int
    page_size: int
    empty_pages_left: int = 0
    duplicate: bool = False
    missing_ids: int = 0
    """Id-less items still to inject into the first real page (`missing_ids` fault)."""


def scope_of(tenant_id: str, policy_type: PolicyType) -> int:
    """32-bit binding of a skiptoken to one tenant's collection."""
    return zlib.crc32(f"{tenant_id}|{policy_type.key}".encode())


def encode_skiptoken(cursor: Cursor, scope: int) -> str:
    raw = struct.pack(
        _TOKEN_FORMAT,
        _TOKEN_MAGIC,
        scope,
        cursor.version,
        cursor.offset,
        cursor.page_size,
        cursor.empty_pages_left,
        cursor.missing_ids,
        _FLAG_DUPLICATE if cursor.duplicate else 0,
    )
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_skiptoken(token: str, scope: int) -> Cursor:
    """Parse a skiptoken issued for `scope`; anything else is Graph's 400."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        magic, token_scope, version, offset, size, empties, missing, flags = struct.unpack(
            _TOKEN_FORMAT, raw
        )
    except (binascii.Error, struct.error, ValueError) as exc:
        raise PagingError(f"The $skiptoken value '{token[:40]}' is not valid.") from exc
    if magic != _TOKEN_MAGIC or token_scope != scope or size < 1:
        raise PagingError(f"The $skiptoken value '{token[:40]}' is not valid.")
    return Cursor(version, offset, size, empties, bool(flags & _FLAG_DUPLICATE), missing)


def top_limit(
    policy_type: PolicyType, settings_catalog_max_top: int = DEFAULT_SETTINGS_CATALOG_MAX_TOP
) -> tuple[int | None, bool]:
    """`(limit, refused_above)` of an endpoint's `$top`, as Graph behaves (not as the client's
    registry believes): settings catalog and update profiles refuse more than their limit,
    Entra ID lists ignore `$top` (limit None), the other Intune lists clamp at 999."""
    if policy_type.key in SETTINGS_CATALOG_TYPES:
        return settings_catalog_max_top, True
    if policy_type.entra:
        return None, False
    if policy_type.max_top is not None and policy_type.max_top < CLAMPED_MAX_TOP:
        return policy_type.max_top, True
    return CLAMPED_MAX_TOP, False


def top_exceeded_message(limit: int, value: int | str) -> str:
    """Graph's own wording, which the client parses for the limit."""
    return (
        f"The limit of '{limit}' for Top query has been exceeded. "
        f"The value from the incoming request is '{value}'."
    )


def page_size_for(
    policy_type: PolicyType,
    top: str | None,
    settings_catalog_max_top: int = DEFAULT_SETTINGS_CATALOG_MAX_TOP,
) -> int:
    """Page size for a first request: `$top` is honoured, clamped, ignored or rejected."""
    limit, refused_above = top_limit(policy_type, settings_catalog_max_top)
    if top is None or limit is None:
        return policy_type.server_page_size
    try:
        value = int(top)
    except ValueError:
        raise PagingError(
            f"Invalid value '{top}' for $top query option found. "
            "The $top query option requires a non-negative integer value."
        ) from None
    if value < 1:
        raise PagingError(
            f"Invalid value '{top}' for $top query option found. "
            "The $top query option requires a positive integer value."
        )
    if refused_above and value > limit:
        raise PagingError(top_exceeded_message(limit, value))
    return min(value, limit)


def learned_page_size(
    policy_type: PolicyType, settings_catalog_max_top: int = DEFAULT_SETTINGS_CATALOG_MAX_TOP
) -> int:
    """The page size a client ends up with once it has learned the endpoint's `$top` limit."""
    if policy_type.max_top is None:
        return policy_type.server_page_size
    limit, _ = top_limit(policy_type, settings_catalog_max_top)
    top = policy_type.max_top if limit is None else min(policy_type.max_top, limit)
    return page_size_for(policy_type, str(top), settings_catalog_max_top)


def next_link(base_url: str, path: str, query: Sequence[tuple[str, str]], token: str) -> str:
    """Absolute next link: the original query options (minus `$skiptoken`) plus the new one."""
    kept = [
        f"{quote(key, safe='$')}={quote(value, safe='$,()')}"
        for key, value in query
        if key != "$skiptoken"
    ]
    kept.append(f"$skiptoken={token}")
    return f"{base_url}{path}?{'&'.join(kept)}"


@dataclass(frozen=True)
class PageStyle:
    """Per-collection annotation habits, fixed per type so responses stay reproducible."""

    with_count: bool
    next_link_first: bool
    tips: str | None


def page_style(policy_type: PolicyType) -> PageStyle:
    """Some lists carry `@odata.count` (= page length), some put the next link before `value`."""
    digest = zlib.crc32(policy_type.key.encode())
    tips = (
        TIPS.format(path=policy_type.graph_path, name_field=policy_type.name_field)
        if policy_type.api_version == "beta"
        else None
    )
    return PageStyle(with_count=digest % 3 == 0, next_link_first=digest % 2 == 0, tips=tips)


def render_page(
    context: str,
    items: Sequence[bytes],
    link: str | None,
    style: PageStyle,
    *,
    with_tips: bool,
) -> bytes:
    """The page body, joined from pre-serialized items (no re-encoding of 999 dicts)."""
    parts = [b'{"@odata.context":', _json_string(context)]
    if with_tips and style.tips is not None:
        parts += [b',"@microsoft.graph.tips":', _json_string(style.tips)]
    if style.with_count:
        parts.append(b',"@odata.count":%d' % len(items))
    if link is not None and style.next_link_first:
        parts += [b',"@odata.nextLink":', _json_string(link)]
    parts += [b',"value":[', b",".join(items), b"]"]
    if link is not None and not style.next_link_first:
        parts += [b',"@odata.nextLink":', _json_string(link)]
    parts.append(b"}")
    return b"".join(parts)


def _json_string(text: str) -> bytes:
    return json.dumps(text, ensure_ascii=False).encode()
