"""`SimulatorControl`: the HTTP client tests, benchmarks and the demo drive a simulator with."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

import httpx

from inventory_pipelines.core.policy_types import PolicyType
from inventory_pipelines.simulator.control_api import PREFIX


class SimulatorControlError(RuntimeError):
    """The simulator refused a control request (bad fault, unknown id, not a GUID…)."""


def _key(policy_type: str | PolicyType) -> str:
    return policy_type.key if isinstance(policy_type, PolicyType) else policy_type


class SimulatorControl:
    """Typed wrapper around the `/_simulator/` control API of one running simulator."""

    def __init__(self, base_url: str, *, timeout: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url + PREFIX, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SimulatorControl:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        response = self._http.request(
            method,
            path,
            json=body,
            params={k: v for k, v in params.items() if v is not None},
        )
        if response.status_code >= 400:
            try:
                message = response.json().get("error", response.text)
            except ValueError:
                message = response.text
            raise SimulatorControlError(f"{method} {path}: {response.status_code} {message}")
        return response.json()

    # Tenants and data
    def configure_tenant(
        self,
        tenant_id: str,
        *,
        seed: int | None = None,
        default_size: int | None = None,
        sizes: Mapping[str, int] | None = None,
    ) -> None:
        """Replace how a tenant's data is generated (its data is regenerated on next use)."""
        body = {"seed": seed, "default_size": default_size, "sizes": dict(sizes or {})}
        self._call("PUT", f"/tenants/{tenant_id}", body)

    def add_items(self, tenant_id: str, policy_type: str | PolicyType, count: int) -> list[str]:
        """Create `count` items (as if made in the portal); returns their ids."""
        path = f"/tenants/{tenant_id}/types/{_key(policy_type)}/items"
        ids: list[str] = self._call("POST", path, {"count": count})["ids"]
        return ids

    def delete_items(
        self, tenant_id: str, policy_type: str | PolicyType, ids: Iterable[str]
    ) -> None:
        """Delete items; every id must exist."""
        path = f"/tenants/{tenant_id}/types/{_key(policy_type)}/delete"
        self._call("POST", path, {"ids": list(ids)})

    def modify_items(
        self, tenant_id: str, policy_type: str | PolicyType, ids: Iterable[str]
    ) -> None:
        """Edit items: new name and description, later modified time, version + 1."""
        path = f"/tenants/{tenant_id}/types/{_key(policy_type)}/modify"
        self._call("POST", path, {"ids": list(ids)})

    def items(self, tenant_id: str, policy_type: str | PolicyType) -> list[dict[str, Any]]:
        """Ground truth: the valid items a complete, fault-free listing returns right now."""
        path = f"/tenants/{tenant_id}/types/{_key(policy_type)}/items"
        value: list[dict[str, Any]] = self._call("GET", path)["value"]
        return value

    def item_count(self, tenant_id: str, policy_type: str | PolicyType | None = None) -> int:
        """Items of one type, or of all registry types when `policy_type` is None."""
        key = _key(policy_type) if policy_type is not None else None
        count: int = self._call("GET", f"/tenants/{tenant_id}/count", policy_type=key)["count"]
        return count

    # Faults
    def set_faults(
        self, tenant_id: str, faults: Iterable[Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        """Replace the tenant's fault rules ("*" = every tenant)."""
        rules: list[dict[str, Any]] = self._call(
            "PUT", f"/tenants/{tenant_id}/faults", [dict(f) for f in faults]
        )
        return rules

    def add_fault(self, tenant_id: str, fault: Mapping[str, Any]) -> dict[str, Any]:
        """Append one fault rule; returns it with its id."""
        rule: dict[str, Any] = self._call("POST", f"/tenants/{tenant_id}/faults", dict(fault))
        return rule

    def faults(self, tenant_id: str) -> list[dict[str, Any]]:
        """Active rules with remaining `count`, `skip` and how often each has `applied`."""
        rules: list[dict[str, Any]] = self._call("GET", f"/tenants/{tenant_id}/faults")
        return rules

    def clear_faults(self, tenant_id: str | None = None) -> None:
        """Remove one tenant's rules, or all rules (including "*") when `tenant_id` is None."""
        self._call("DELETE", f"/tenants/{tenant_id}/faults" if tenant_id else "/faults")

    def revoke_tokens(self, tenant_id: str) -> None:
        """Invalidate every token issued so far for the tenant."""
        self.add_fault(tenant_id, {"kind": "revoke_tokens"})

    # App credentials beyond the client secret
    def set_credentials(
        self,
        *,
        certificates: Iterable[str] = (),
        federated: Iterable[Mapping[str, str]] = (),
    ) -> dict[str, Any]:
        """Replace the certificates (PEM) registered on the app and its federated identity
        credentials (`issuer`, `subject`, optional `audience`, issuer's `certificate` PEM)."""
        body = {"certificates": list(certificates), "federated": [dict(f) for f in federated]}
        credentials: dict[str, Any] = self._call("PUT", "/credentials", body)
        return credentials

    # Counters, options, reset
    def counters(self) -> dict[str, Any]:
        """Graph request tallies (token requests separately) and in-flight maxima per tenant.

        Keys: total, by_tenant, by_method, by_status (status as string), by_policy_type,
        by_tenant_policy_type, token_requests, token_by_status, faults_applied, in_flight,
        max_in_flight, in_flight_total, max_in_flight_total.
        """
        snapshot: dict[str, Any] = self._call("GET", "/counters")
        return snapshot

    def reset_counters(self) -> None:
        self._call("POST", "/counters/reset")

    def reset(self) -> None:
        """All tenants, faults, counters, tokens and options back to the server's start state."""
        self._call("POST", "/reset")

    def set_options(
        self,
        *,
        expires_in: int | None = None,
        identity_requests_per_second: float | None = None,
        settings_catalog_max_top: int | None = None,
        batch_enabled: bool | None = None,
    ) -> dict[str, Any]:
        """Token lifetime for new tokens; identity-class requests per second (0 disables);
        the largest `$top` the settings catalog lists take; whether `$batch` is served."""
        body = {
            "expires_in": expires_in,
            "identity_requests_per_second": identity_requests_per_second,
            "settings_catalog_max_top": settings_catalog_max_top,
            "batch_enabled": batch_enabled,
        }
        options: dict[str, Any] = self._call(
            "POST", "/options", {k: v for k, v in body.items() if v is not None}
        )
        return options

    def options(self) -> dict[str, Any]:
        current: dict[str, Any] = self._call("GET", "/options")
        return current

    def health(self) -> bool:
        return bool(self._call("GET", "/health")["status"] == "ok")
