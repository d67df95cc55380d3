"""The simulator's mutable per-tenant data: lazily generated collections with stable snapshots.

Mutations never change a snapshot in place; they publish a new version. A `$skiptoken`
names the version it started from, so a listing that is being paged while the control API
adds, deletes or edits items keeps seeing one consistent set, as Graph paging does.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from inventory_pipelines.core.policy_types import POLICY_TYPES, PolicyType, get_policy_type
from inventory_pipelines.simulator.generation import (
    Item,
    ItemFactory,
    default_size,
    seed_for_tenant,
)

MAX_SIZE_PER_TYPE = 2_000_000
SNAPSHOTS_KEPT = 32
"""Versions kept per collection for in-flight listings; older skiptokens become invalid."""

_VERSIONS = itertools.count(1)
"""Process-wide, so a skiptoken from before a reconfigure or reset never names new data."""


class UnknownItemsError(KeyError):
    """Ids given to delete/modify that are not in the collection."""

    def __init__(self, ids: list[str]) -> None:
        super().__init__(ids)
        self.ids = ids

    def __str__(self) -> str:
        shown = ", ".join(self.ids[:5]) + (" …" if len(self.ids) > 5 else "")
        return f"{len(self.ids)} unknown item id(s): {shown}"


class StoredItem:
    """One item and its lazily cached JSON, so pages are joined from ready-made bytes."""

    __slots__ = ("_json", "data", "id")

    def __init__(self, data: Item) -> None:
        self.data = data
        self.id: str = data["id"]
        self._json: bytes | None = None

    def json_bytes(self) -> bytes:
        cached = self._json
        if cached is None:
            cached = encode_item(self.data)
            self._json = cached
        return cached


def encode_item(item: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON with raw (not \\u-escaped) unicode, like Graph."""
    return json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode()


Snapshot = tuple[StoredItem, ...]


class Collection:
    """Items of one (tenant, policy type) as a sequence of immutable versions."""

    def __init__(self, seed: int, policy_type: PolicyType, size: int) -> None:
        self.seed = seed
        self.policy_type = policy_type
        factory = ItemFactory(seed, policy_type)
        generated = factory.items(size)
        self._next_index = max(0, size - len(factory.builtins()[:size]))
        self._add_batches = 0
        self._factory = factory
        self.version = next(_VERSIONS)
        self._snapshots: OrderedDict[int, Snapshot] = OrderedDict()
        self._publish(tuple(StoredItem(item) for item in generated))

    def _publish(self, items: Snapshot) -> None:
        self.current = items
        self._snapshots[self.version] = items
        while len(self._snapshots) > SNAPSHOTS_KEPT:
            self._snapshots.popitem(last=False)

    def snapshot(self, version: int) -> Snapshot | None:
        """The items as they were at `version`, or None when that version was evicted."""
        return self._snapshots.get(version)

    def add(self, count: int, now: float) -> list[str]:
        """Append `count` new items (created now) and return their ids."""
        self._add_batches += 1
        factory = ItemFactory(self.seed, self.policy_type, stream=f"add:{self._add_batches}")
        new = [StoredItem(factory.generated(self._next_index + i, now=now)) for i in range(count)]
        self._next_index += count
        self.version = next(_VERSIONS)
        self._publish(self.current + tuple(new))
        return [item.id for item in new]

    def _check_known(self, ids: Iterable[str]) -> set[str]:
        wanted = set(ids)
        unknown = wanted - {item.id for item in self.current}
        if unknown:
            raise UnknownItemsError(sorted(unknown))
        return wanted

    def delete(self, ids: Iterable[str]) -> int:
        """Remove items; every id must exist (a typo in a test should fail loudly)."""
        doomed = self._check_known(ids)
        self.version = next(_VERSIONS)
        self._publish(tuple(item for item in self.current if item.id not in doomed))
        return len(doomed)

    def modify(self, ids: Iterable[str], now: float) -> int:
        """Edit items in place of their position: new name, later timestamp, higher version."""
        targets = self._check_known(ids)
        factory = self._factory
        self.version = next(_VERSIONS)
        self._publish(
            tuple(
                StoredItem(factory.modified(item.data, now)) if item.id in targets else item
                for item in self.current
            )
        )
        return len(targets)

    def id_less_items(self, count: int) -> list[bytes]:
        """Serialized items without `id` for the `missing_ids` fault (deterministic)."""
        factory = ItemFactory(self.seed, self.policy_type, stream="missing-ids")
        return [encode_item(factory.without_id(10_000 + i)) for i in range(count)]


@dataclass(frozen=True)
class TenantConfig:
    """How a tenant's data is generated; None fields fall back to the defaults."""

    seed: int | None = None
    default_size: int | None = None
    sizes: Mapping[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "default_size": self.default_size, "sizes": dict(self.sizes)}


def validate_config(seed: Any = None, default_size: Any = None, sizes: Any = None) -> TenantConfig:
    """Check a tenant configuration from JSON, naming the bad field."""
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError("seed must be an integer or null")
    if default_size is not None:
        _check_size("default_size", default_size)
    checked: dict[str, int] = {}
    if sizes is not None:
        if not isinstance(sizes, Mapping):
            raise ValueError("sizes must be an object mapping policy type keys to sizes")
        for key, size in sizes.items():
            get_policy_type(str(key))
            _check_size(f"sizes[{key!r}]", size)
            checked[str(key)] = int(size)
    return TenantConfig(seed=seed, default_size=default_size, sizes=checked)


def _check_size(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SIZE_PER_TYPE:
        raise ValueError(f"{name} must be an integer between 0 and {MAX_SIZE_PER_TYPE}")


class TenantData:
    """All collections of one tenant, each generated on first use and cached."""

    def __init__(self, tenant_id: str, config: TenantConfig) -> None:
        self.tenant_id = tenant_id
        self.config = config
        self.seed = config.seed if config.seed is not None else seed_for_tenant(tenant_id)
        self._collections: dict[str, Collection] = {}

    def size_for(self, policy_type: PolicyType) -> int:
        if policy_type.key in self.config.sizes:
            return self.config.sizes[policy_type.key]
        if self.config.default_size is not None:
            return self.config.default_size
        return default_size(self.seed, policy_type)

    def collection(self, policy_type: PolicyType) -> Collection:
        found = self._collections.get(policy_type.key)
        if found is None:
            found = Collection(self.seed, policy_type, self.size_for(policy_type))
            self._collections[policy_type.key] = found
        return found


class DataStore:
    """Every tenant's data; the lock makes generation and mutation safe from any thread."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._tenants: dict[str, TenantData] = {}

    def configure(self, tenant_id: str, config: TenantConfig) -> None:
        """Replace a tenant's configuration; its data is regenerated on next use."""
        with self._lock:
            self._tenants[tenant_id] = TenantData(tenant_id, config)

    def tenant(self, tenant_id: str) -> TenantData:
        with self._lock:
            found = self._tenants.get(tenant_id)
            if found is None:
                found = TenantData(tenant_id, TenantConfig())
                self._tenants[tenant_id] = found
            return found

    def collection(self, tenant_id: str, policy_type: PolicyType) -> Collection:
        with self._lock:
            return self.tenant(tenant_id).collection(policy_type)

    def add_items(self, tenant_id: str, policy_type: PolicyType, count: int) -> list[str]:
        with self._lock:
            return self.collection(tenant_id, policy_type).add(count, time.time())

    def delete_items(self, tenant_id: str, policy_type: PolicyType, ids: list[str]) -> int:
        with self._lock:
            return self.collection(tenant_id, policy_type).delete(ids)

    def modify_items(self, tenant_id: str, policy_type: PolicyType, ids: list[str]) -> int:
        with self._lock:
            return self.collection(tenant_id, policy_type).modify(ids, time.time())

    def items(self, tenant_id: str, policy_type: PolicyType) -> list[Item]:
        """Ground truth: the current valid items (all have ids) in listing order."""
        with self._lock:
            current = self.collection(tenant_id, policy_type).current
        return [item.data for item in current if item.id]

    def item_count(self, tenant_id: str, policy_type: PolicyType | None = None) -> int:
        with self._lock:
            types = [policy_type] if policy_type is not None else list(POLICY_TYPES)
            return sum(len(self.collection(tenant_id, t).current) for t in types)

    def reset(self) -> None:
        with self._lock:
            self._tenants.clear()
