"""The content hash of a Graph object: what "changed" means for the change feed.

SHA-256 of the canonical JSON (keys sorted at every depth, compact) of the full object Graph
returned, minus its volatile fields. Only the 32-byte digest is stored, never the content:
inventory is not a backup. The text is `fast_json.canonical_dumps` with orjson's spelling of
floats (this runs once per item of every sync, and the stored digests were made that way), so
a given object always hashes the same way.

Volatile fields are the item's own OData annotations: keys that start with `@` (instance
annotations such as `@odata.etag`, `@odata.id`, `@odata.editLink`, `@microsoft.graph.tips`)
or hold one (property annotations such as `assignments@odata.context`,
`settings@odata.nextLink`). They describe the response (the request URL, paging, caching),
not the policy, and may differ between two reads of an unchanged object. The one exception is
`@odata.type`: the derived type of a polymorphic object is part of what it is. Annotations
nested inside property values are content: Graph only puts them there for expanded
navigation properties, which the sync never requests. Everything else, nested values
included, is content. Changing this list changes every hash: clear `content_hash` in a
migration then, and the next observation stores the new hash without reporting a change.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from inventory_pipelines.core.fast_json import canonical_dumps

KEPT_ANNOTATIONS = frozenset({"@odata.type"})
"""Annotations that are content, not response metadata."""


def is_volatile(key: str) -> bool:
    """An OData annotation of the item (other than `@odata.type`)."""
    return "@" in key and key not in KEPT_ANNOTATIONS


def hashed_content(item: Mapping[str, Any]) -> Mapping[str, Any]:
    """The item without its volatile fields (the item itself when it has none)."""
    volatile = [key for key in item if is_volatile(key)]
    if not volatile:
        return item
    return {key: value for key, value in item.items() if key not in volatile}


def content_hash(item: Mapping[str, Any]) -> bytes:
    """The 32-byte SHA-256 digest of the item's canonical JSON, volatile fields left out.

    NaN and infinities (not JSON; Graph never sends them) encode as `null`, as orjson does.
    """
    text = canonical_dumps(hashed_content(item), json_floats=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
