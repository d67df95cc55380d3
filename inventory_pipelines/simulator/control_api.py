"""The control API under `/_simulator/`: configure tenants, switch faults, mutate data, read counts.

Unauthenticated by design (the server only binds loopback). Bad input gets 400/404 with
`{"error": "<what is wrong>"}` so that a typo in a test fails loudly.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from cryptography import x509
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from inventory_pipelines.core.policy_types import (
    PolicyType,
    UnknownPolicyTypeError,
    get_policy_type,
)
from inventory_pipelines.simulator.assertions import FEDERATED_AUDIENCE, FederatedCredential
from inventory_pipelines.simulator.faults import FaultSpecError
from inventory_pipelines.simulator.identifiers import GLOBAL_TENANT, canonical_tenant_id
from inventory_pipelines.simulator.state import SimulatorState
from inventory_pipelines.simulator.store import UnknownItemsError, validate_config

PREFIX = "/_simulator"


class ControlError(Exception):
    """A control request the simulator refuses; becomes `{"error": message}`."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _tenant(request: Request, *, allow_global: bool = False) -> str:
    raw = request.path_params["tenant"]
    if allow_global and raw == GLOBAL_TENANT:
        return GLOBAL_TENANT
    tenant_id = canonical_tenant_id(raw)
    if tenant_id is None:
        raise ControlError(f"tenant id {raw!r} is not a GUID")
    return tenant_id


def _policy_type(request: Request) -> PolicyType:
    try:
        return get_policy_type(request.path_params["policy_type"])
    except UnknownPolicyTypeError as exc:
        raise ControlError(str(exc), 404) from None


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ControlError(f"request body is not JSON: {exc}") from None


async def _object_body(request: Request) -> dict[str, Any]:
    body = await _json_body(request)
    if not isinstance(body, dict):
        raise ControlError("request body must be a JSON object")
    return body


def _ids(body: dict[str, Any]) -> list[str]:
    ids = body.get("ids")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ControlError('body must be {"ids": ["<id>", ...]}')
    return ids


def _certificate(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ControlError(f"{where} must be a PEM certificate string")
    try:
        x509.load_pem_x509_certificate(value.encode())
    except ValueError:
        raise ControlError(f"{where} is not a PEM certificate") from None
    return value


def _credentials(
    body: dict[str, Any],
) -> tuple[tuple[str, ...], tuple[FederatedCredential, ...]]:
    """`{"certificates": [pem, ...], "federated": [{issuer, subject, audience?, certificate}]}`."""
    unknown = set(body) - {"certificates", "federated"}
    if unknown:
        raise ControlError(f"unknown credential setting(s): {', '.join(sorted(unknown))}")
    raw_certificates = body.get("certificates") or []
    raw_federated = body.get("federated") or []
    if not isinstance(raw_certificates, list) or not isinstance(raw_federated, list):
        raise ControlError("certificates and federated must be lists")
    certificates = tuple(
        _certificate(pem, f"certificates[{i}]") for i, pem in enumerate(raw_certificates)
    )
    federated = []
    for i, raw in enumerate(raw_federated):
        if not isinstance(raw, dict) or set(raw) - {"issuer", "subject", "audience", "certificate"}:
            raise ControlError(
                f"federated[{i}] must be {{issuer, subject, audience?, certificate}}"
            )
        issuer, subject = raw.get("issuer"), raw.get("subject")
        audience = raw.get("audience", FEDERATED_AUDIENCE)
        if not (
            isinstance(issuer, str) and isinstance(subject, str) and isinstance(audience, str)
        ) or not (issuer and subject and audience):
            raise ControlError(f"federated[{i}]: issuer, subject and audience must be strings")
        federated.append(
            FederatedCredential(
                issuer=issuer,
                subject=subject,
                audience=audience,
                certificate_pem=_certificate(raw.get("certificate"), f"federated[{i}].certificate"),
            )
        )
    return certificates, tuple(federated)


Handler = Callable[[Request], Awaitable[Any]]


def _endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a handler returning JSON-able data; map validation errors to 400/404."""

    async def endpoint(request: Request) -> Response:
        try:
            result = await handler(request)
        except ControlError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        except (FaultSpecError, ValueError) as exc:
            status = 404 if isinstance(exc, UnknownPolicyTypeError) else 400
            return JSONResponse({"error": str(exc)}, status_code=status)
        except UnknownItemsError as exc:
            return JSONResponse({"error": str(exc), "unknown_ids": exc.ids}, status_code=404)
        return JSONResponse(result if result is not None else {"ok": True})

    endpoint.__name__ = handler.__name__
    return endpoint


def control_routes(state: SimulatorState) -> list[Route]:
    """Routes of the control API bound to one simulator's state."""

    async def health(request: Request) -> dict[str, Any]:
        return {"status": "ok"}

    async def reset(request: Request) -> None:
        state.reset()

    async def get_options(request: Request) -> dict[str, Any]:
        options = state.options
        return {
            "expires_in": options.token_expires_in,
            "identity_requests_per_second": options.identity_requests_per_second,
            "settings_catalog_max_top": options.settings_catalog_max_top,
            "batch_enabled": options.batch_enabled,
        }

    async def set_options(request: Request) -> dict[str, Any]:
        body = await _object_body(request)
        unknown = set(body) - {
            "expires_in",
            "identity_requests_per_second",
            "settings_catalog_max_top",
            "batch_enabled",
        }
        if unknown:
            raise ControlError(f"unknown option(s): {', '.join(sorted(unknown))}")
        expires_in = body.get("expires_in")
        if expires_in is not None and (
            isinstance(expires_in, bool) or not isinstance(expires_in, int) or expires_in < 0
        ):
            raise ControlError("expires_in must be an integer >= 0")
        rps = body.get("identity_requests_per_second")
        if rps is not None and (
            isinstance(rps, bool) or not isinstance(rps, int | float) or rps < 0
        ):
            raise ControlError("identity_requests_per_second must be a number >= 0")
        state.set_options(
            expires_in=expires_in,
            identity_requests_per_second=float(rps) if rps is not None else None,
            settings_catalog_max_top=body.get("settings_catalog_max_top"),
            batch_enabled=body.get("batch_enabled"),
        )
        return await get_options(request)

    async def get_credentials(request: Request) -> dict[str, Any]:
        options = state.options
        return {
            "certificates": list(options.client_certificates),
            "federated": [c.to_dict() for c in options.federated_credentials],
        }

    async def set_credentials(request: Request) -> dict[str, Any]:
        body = await _object_body(request)
        certificates, federated = _credentials(body)
        state.set_credentials(certificates, federated)
        return await get_credentials(request)

    async def configure_tenant(request: Request) -> dict[str, Any]:
        tenant_id = _tenant(request)
        body = await _object_body(request)
        unknown = set(body) - {"seed", "default_size", "sizes"}
        if unknown:
            raise ControlError(f"unknown tenant setting(s): {', '.join(sorted(unknown))}")
        config = validate_config(body.get("seed"), body.get("default_size"), body.get("sizes"))
        state.configure_tenant(tenant_id, config)
        return {"tenant_id": tenant_id, **config.to_dict()}

    async def list_faults(request: Request) -> list[dict[str, Any]]:
        return state.faults.describe(_tenant(request, allow_global=True))

    async def set_faults(request: Request) -> list[dict[str, Any]]:
        tenant_id = _tenant(request, allow_global=True)
        body = await _json_body(request)
        if not isinstance(body, list):
            raise ControlError("body must be a JSON list of fault objects")
        return state.set_faults(tenant_id, body)

    async def add_fault(request: Request) -> dict[str, Any]:
        tenant_id = _tenant(request, allow_global=True)
        return state.add_fault(tenant_id, await _object_body(request))

    async def clear_tenant_faults(request: Request) -> None:
        state.faults.clear(_tenant(request, allow_global=True))

    async def clear_all_faults(request: Request) -> None:
        state.faults.clear()

    async def item_count(request: Request) -> dict[str, Any]:
        tenant_id = _tenant(request)
        key = request.query_params.get("policy_type")
        try:
            policy_type = get_policy_type(key) if key else None
        except UnknownPolicyTypeError as exc:
            raise ControlError(str(exc), 404) from None
        return {"count": state.data.item_count(tenant_id, policy_type)}

    async def items(request: Request) -> dict[str, Any]:
        return {"value": state.data.items(_tenant(request), _policy_type(request))}

    async def add_items(request: Request) -> dict[str, Any]:
        tenant_id, policy_type = _tenant(request), _policy_type(request)
        count = (await _object_body(request)).get("count")
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= 1_000_000:
            raise ControlError('body must be {"count": <0..1000000>}')
        return {"ids": state.data.add_items(tenant_id, policy_type, count)}

    async def delete_items(request: Request) -> dict[str, Any]:
        tenant_id, policy_type = _tenant(request), _policy_type(request)
        ids = _ids(await _object_body(request))
        return {"deleted": state.data.delete_items(tenant_id, policy_type, ids)}

    async def modify_items(request: Request) -> dict[str, Any]:
        tenant_id, policy_type = _tenant(request), _policy_type(request)
        ids = _ids(await _object_body(request))
        return {"modified": state.data.modify_items(tenant_id, policy_type, ids)}

    async def counters(request: Request) -> dict[str, Any]:
        return state.counters.snapshot()

    async def reset_counters(request: Request) -> None:
        state.counters.reset()

    tenant = f"{PREFIX}/tenants/{{tenant}}"
    typed = f"{tenant}/types/{{policy_type}}"
    table: list[tuple[str, Handler, list[str]]] = [
        (f"{PREFIX}/health", health, ["GET"]),
        (f"{PREFIX}/reset", reset, ["POST"]),
        (f"{PREFIX}/options", get_options, ["GET"]),
        (f"{PREFIX}/options", set_options, ["POST"]),
        (f"{PREFIX}/credentials", get_credentials, ["GET"]),
        (f"{PREFIX}/credentials", set_credentials, ["PUT"]),
        (f"{PREFIX}/faults", clear_all_faults, ["DELETE"]),
        (f"{PREFIX}/counters", counters, ["GET"]),
        (f"{PREFIX}/counters/reset", reset_counters, ["POST"]),
        (tenant, configure_tenant, ["PUT"]),
        (f"{tenant}/faults", list_faults, ["GET"]),
        (f"{tenant}/faults", set_faults, ["PUT"]),
        (f"{tenant}/faults", add_fault, ["POST"]),
        (f"{tenant}/faults", clear_tenant_faults, ["DELETE"]),
        (f"{tenant}/count", item_count, ["GET"]),
        (f"{typed}/items", items, ["GET"]),
        (f"{typed}/items", add_items, ["POST"]),
        (f"{typed}/delete", delete_items, ["POST"]),
        (f"{typed}/modify", modify_items, ["POST"]),
    ]
    return [Route(path, _endpoint(handler), methods=methods) for path, handler, methods in table]
