"""`POST /{tenant}/oauth2/v2.0/token`: the client-credentials grant with a client secret or a
client assertion (certificate or federated), AADSTS errors included; and the tenant's OpenID
configuration, which token libraries such as msal read first."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import Response

from inventory_pipelines.simulator.assertions import (
    JWT_BEARER,
    AssertionProblem,
    check_certificate_assertion,
    check_federated_assertion,
    issued_by_app,
)
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
        code = self._failure(tenant_id, raw_tenant, form, applied, _token_urls(request))
        if code is not None:
            code_value, parameter, status_override, detail = code
            failure = aadsts_error(
                code_value,
                tenant_id=raw_tenant,
                client_id=client_id,
                parameter=parameter,
                detail=detail,
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

    async def openid_configuration(self, request: Request) -> Response:
        """`GET /{tenant}/v2.0/.well-known/openid-configuration`, the endpoints of a tenant."""
        raw_tenant = request.path_params["tenant"]
        tenant_id = canonical_tenant_id(raw_tenant)
        if tenant_id is None:
            failure = aadsts_error(90002, tenant_id=raw_tenant, client_id="")
            return _json(400, aadsts_body(failure, 90002))
        base = f"{request.url.scheme}://{request.url.netloc}/{tenant_id}"
        return _json(
            200,
            {
                "issuer": f"{base}/v2.0",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "jwks_uri": f"{base}/discovery/v2.0/keys",
                "response_types_supported": ["code", "id_token", "code id_token", "token"],
                "tenant_region_scope": "EU",
            },
        )

    def _failure(
        self,
        tenant_id: str | None,
        raw_tenant: str,
        form: dict[str, str],
        applied: list[str],
        token_urls: frozenset[str],
    ) -> tuple[int, str, int | None, str] | None:
        """(AADSTS code, missing parameter name, status override, detail) or None when all is
        well."""
        if tenant_id is None:
            return 90002, "", None, ""
        rule = self.state.faults.decide_token(tenant_id)
        if rule is not None:
            applied.append(rule.kind)
            return rule.params["aadsts"], "", rule.params["status"], ""
        for name in _REQUIRED_FIELDS:
            if not form.get(name):
                return 900144, name, None, ""
        if form["grant_type"] != "client_credentials":
            return 70003, "", None, ""
        if form["client_id"] != self.state.options.client_id:
            return 700016, "", None, ""
        if form.get("client_assertion"):
            problem = self._assertion_problem(form, token_urls)
            if problem is not None:
                return problem.code, "", None, problem.detail
        elif not form.get("client_secret"):
            return 7000216, "", None, ""
        elif form["client_secret"] != self.state.options.client_secret:
            return 7000215, "", None, ""
        if form["scope"] not in _ACCEPTED_SCOPES:
            return 1002012, "", None, ""
        return None

    def _assertion_problem(
        self, form: dict[str, str], token_urls: frozenset[str]
    ) -> AssertionProblem | None:
        """The app's own assertion (issuer = client id) or a federated identity's."""
        if form.get("client_assertion_type") != JWT_BEARER:
            return AssertionProblem(50012)
        options = self.state.options
        assertion = form["client_assertion"]
        if issued_by_app(assertion, options.client_id):
            return check_certificate_assertion(
                assertion,
                client_id=options.client_id,
                token_urls=token_urls,
                certificates=options.client_certificates,
            )
        return check_federated_assertion(assertion, credentials=options.federated_credentials)


def _token_urls(request: Request) -> frozenset[str]:
    """Audiences a client assertion may name: this token endpoint, over http or https (msal
    knows an authority only by its https URL, the simulator serves plain http on loopback)."""
    path = request.url.path
    return frozenset(f"{scheme}://{request.url.netloc}{path}" for scheme in ("http", "https"))


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
