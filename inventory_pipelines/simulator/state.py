"""Everything one simulator instance knows: options, data, faults, tokens and counters."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from inventory_pipelines.simulator.assertions import FederatedCredential
from inventory_pipelines.simulator.counters import RequestCounters
from inventory_pipelines.simulator.faults import FaultRegistry, FaultRule, TokenBucket
from inventory_pipelines.simulator.paging import DEFAULT_SETTINGS_CATALOG_MAX_TOP
from inventory_pipelines.simulator.store import DataStore, TenantConfig
from inventory_pipelines.simulator.tokens import (
    SIMULATOR_CLIENT_ID,
    SIMULATOR_CLIENT_SECRET,
    TokenIssuer,
)


@dataclass(frozen=True)
class SimulatorOptions:
    """Server-wide settings; `reset()` returns to the values the server was started with."""

    client_id: str = SIMULATOR_CLIENT_ID
    client_secret: str = SIMULATOR_CLIENT_SECRET
    token_expires_in: int = 3599
    identity_requests_per_second: float = 1.0
    """Entra ID's conditional-access limit per tenant (429 without Retry-After); 0 disables."""
    settings_catalog_max_top: int = DEFAULT_SETTINGS_CATALOG_MAX_TOP
    """Largest `$top` the settings catalog lists take; more is a 400 naming the limit."""
    batch_enabled: bool = True
    """False: `POST /{version}/$batch` is a 404, like a proxy or cloud without JSON batching."""
    client_certificates: tuple[str, ...] = ()
    """PEM certificates registered on the app: client assertions signed with their keys pass."""
    federated_credentials: tuple[FederatedCredential, ...] = ()
    """Federated identity credentials of the app (workload identity token issuers it trusts)."""


class SimulatorState:
    """Shared by the token endpoint, the Graph endpoint and the control API."""

    def __init__(self, options: SimulatorOptions) -> None:
        self.initial_options = options
        self.options = options
        self.data = DataStore()
        self.faults = FaultRegistry()
        self.tokens = TokenIssuer(options.client_id)
        self.counters = RequestCounters()
        self._identity_lock = threading.Lock()
        self._identity_buckets: dict[str, TokenBucket] = {}
        self.initial_setup: Callable[[SimulatorState], None] | None = None
        """Re-applied by `reset()`: the tenants and faults the server was started with."""

    def set_options(
        self,
        *,
        expires_in: int | None = None,
        identity_requests_per_second: float | None = None,
        settings_catalog_max_top: int | None = None,
        batch_enabled: bool | None = None,
    ) -> None:
        if batch_enabled is not None:
            if not isinstance(batch_enabled, bool):
                raise ValueError(f"batch_enabled must be true or false, got {batch_enabled!r}")
            self.options = replace(self.options, batch_enabled=batch_enabled)
        if settings_catalog_max_top is not None:
            if (
                isinstance(settings_catalog_max_top, bool)
                or not isinstance(settings_catalog_max_top, int)
                or settings_catalog_max_top < 1
            ):
                raise ValueError(
                    "settings_catalog_max_top must be a positive integer, "
                    f"got {settings_catalog_max_top!r}"
                )
            self.options = replace(self.options, settings_catalog_max_top=settings_catalog_max_top)
        if expires_in is not None:
            self.options = replace(self.options, token_expires_in=expires_in)
        if identity_requests_per_second is not None:
            self.options = replace(
                self.options, identity_requests_per_second=identity_requests_per_second
            )
            with self._identity_lock:
                self._identity_buckets.clear()

    def set_credentials(
        self,
        certificates: tuple[str, ...],
        federated: tuple[FederatedCredential, ...],
    ) -> None:
        """Replace the certificates and federated identity credentials of the app."""
        self.options = replace(
            self.options, client_certificates=certificates, federated_credentials=federated
        )

    def identity_allows(self, tenant_id: str) -> bool:
        """Whether an identity-class request fits the tenant's requests-per-second budget."""
        rate = self.options.identity_requests_per_second
        if rate <= 0:
            return True
        with self._identity_lock:
            bucket = self._identity_buckets.get(tenant_id)
            if bucket is None:
                bucket = TokenBucket(rate, max(1.0, rate))
                self._identity_buckets[tenant_id] = bucket
            return bucket.take(time.monotonic()) == 0.0

    def _activate(self, tenant_id: str, rule: FaultRule) -> bool:
        """Immediate actions: `revoke_tokens` without `skip` revokes now and is not kept."""
        if rule.kind == "revoke_tokens" and rule.skip == 0:
            self.tokens.revoke(tenant_id)
            return False
        return True

    def add_fault(self, tenant_id: str, raw: Mapping[str, Any]) -> dict[str, Any]:
        rule = self.faults.parse(raw)
        if self._activate(tenant_id, rule):
            self.faults.add(tenant_id, rule)
        return rule.to_dict()

    def set_faults(self, tenant_id: str, raws: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Replace the tenant's rules; all are validated before anything changes."""
        rules = [self.faults.parse(raw) for raw in raws]
        kept = [rule for rule in rules if self._activate(tenant_id, rule)]
        self.faults.replace(tenant_id, kept)
        return [rule.to_dict() for rule in rules]

    def configure_tenant(self, tenant_id: str, config: TenantConfig) -> None:
        self.data.configure(tenant_id, config)

    def reset(self) -> None:
        """Back to a freshly started server: start-up tenants and faults, no tokens or counts."""
        self.data.reset()
        self.faults.clear()
        self.tokens.reset()
        self.counters.reset()
        self.options = self.initial_options
        with self._identity_lock:
            self._identity_buckets.clear()
        if self.initial_setup is not None:
            self.initial_setup(self)
