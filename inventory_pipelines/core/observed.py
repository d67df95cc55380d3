"""One Graph object as the store takes it: built once per item on the fetchers' threads, read by
the upsert of either dialect (`bulk_upsert.py`) and by the store that hands batches to it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NamedTuple

from inventory_pipelines.core.content_hash import content_hash
from inventory_pipelines.core.fast_json import canonical_dumps
from inventory_pipelines.core.metadata import display_name_of, whitelist_metadata


class ObservedItem(NamedTuple):
    """One Graph object as inventory keeps it: id, name and whitelisted metadata as canonical
    JSON (serialized once here; the store compares and loads that text as it is), and the
    hash of the whole object, which tells a changed item from an unchanged one."""

    external_id: str
    display_name: str | None
    meta_json: str
    content_hash: bytes

    @property
    def meta(self) -> dict[str, Any]:
        return dict(json.loads(self.meta_json))

    @classmethod
    def build(
        cls,
        external_id: str,
        display_name: str | None,
        meta: dict[str, Any],
        content: Mapping[str, Any] | None = None,
    ) -> ObservedItem:
        """An item from its parts; without `content`, the object is its id, name and meta."""
        if content is None:
            content = {"id": external_id, "displayName": display_name, **meta}
        return cls(external_id, display_name, canonical_dumps(meta), content_hash(content))

    @classmethod
    def from_graph(cls, item: Mapping[str, Any], name_field: str = "displayName") -> ObservedItem:
        return cls(
            str(item["id"]),
            display_name_of(item, name_field),
            canonical_dumps(whitelist_metadata(item), json_floats=False),
            content_hash(item),
        )
