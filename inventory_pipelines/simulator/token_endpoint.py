"""`POST /{tenant}/oauth2/v2.0/token`: the client-credentials grant, AADSTS errors included."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import Response

from inventory_pipelines.simulator.graph_errors import aadsts_body, aadsts_error
from inventory_pipelines.simulator.identifiers import canonical_tenant_id, new_request_id
from inventory_pipelines.simulator.state import SimulatorState
from inventory_pipelines.simulator.tokens import GRAPH_SCOPE

_ACCEPTED_SCOPES = frozenset({GRAPH_SCOPE, "00000003-0000-0000-c000-000000000000/.default"})
_REQUIRED_FIELDS = ("grant_type", "client_id", "scope")


class TokenEndpoint:
    """Issues tokens for any GUID tenant to the configured app; faults can make it refuse."""

    def __init__(self, state: SimulatorState) -> None:
        self.state = state

    async def handle(self, request: Request) -> Response:
        raw_tenant = request.path_params["tenant"]
        tenant_id = canonical_tenant_id(raw_tenant)
        counted_tenant = tenant_id or raw_tenant[:64]
        form = _parse_form(await request.body())
        client_id = form.get("client_id", "")
        applied: list[str] = []
        code = self._failure(tenant_id, raw_tenant, form, applied)
        if code is not None:
            code_value, parameter, status_override = code
            failure = aadsts_error(
                code_value, tenant_id=raw_tenant, client_id=client_id, parameter=parameter
            )
            status = status_override or failure.status
            self.state.counters.record_token(counted_tenant, status, applied)
            return _json(status, aadsts_body(failure, code_value))
        assert tenant_id is not None
        expires_in = self.state.options.token_expires_in
        token = self.state.tokens.issue(tenant_id, expires_in)
        self.state.counters.record_token(tenant_id, 200, applied)
        return _json(
            200,
            {
                "token_type": "Bearer",
                "expires_in": expires_in,
                "ext_expires_in": expires_in,
                "access_token": token,
            },
        )

    def _failure(
        self, tenant_id: str | None, raw_tenant: str, form: dict[str, str], applied: list[str]
    ) -> tuple[int, str, int | None] | None:
        """(AADSTS code, missing parameter name, status override) or None when all is well."""
        if tenant_id is None:
            return 90002, "", None
        rule = self.state.faults.decide_token(tenant_id)
        if rule is not None:
            applied.append(rule.kind)
            return rule.params["aadsts"], "", rule.params["status"]
        for name in _REQUIRED_FIELDS:
            if not form.get(name):
                return 900144, name, None
        if form["grant_type"] != "client_credentials":
            return 70003, "", None
        if form["client_id"] != self.state.options.client_id:
            return 700016, "", None
        if not form.get("client_secret"):
            return 7000216, "", None
        if form["client_secret"] != self.state.options.client_secret:
            return 7000215, "", None
        if form["scope"] not in _ACCEPTED_SCOPES:
            return 1002012, "", None
        return None


def _parse_form(body: bytes) -> dict[str, str]:
    """`application/x-www-form-urlencoded` (first value wins), without python-multipart."""
    parsed = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {key: values[0] for key, values in parsed.items()}


def _json(status: int, document: dict[str, object]) -> Response:
    return Response(
        json.dumps(document).encode(),
        status_code=status,
        media_type="application/json; charset=utf-8",
        headers={
            "Cache-Control": "no-store, no-cache",
            "Pragma": "no-cache",
            "x-ms-request-id": new_request_id(),
        },
    )
