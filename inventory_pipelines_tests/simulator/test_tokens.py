"""Token endpoint: Entra ID's client-credentials grant and its AADSTS errors, tenant binding."""

from __future__ import annotations

import re

import httpx
import pytest

from inventory_pipelines.simulator import SimulatorServer
from inventory_pipelines_tests.simulator.graph_http import (
    TENANT_A,
    TENANT_B,
    graph_client,
    raw_get,
    request_token,
    token_for,
)

JWT = re.compile(r"^eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
POLICIES = "/beta/deviceManagement/deviceConfigurations"


def _assert_aadsts(response: httpx.Response, status: int, error: str, code: int) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error
    assert body["error_codes"] == [code]
    assert body["error_description"].startswith(f"AADSTS{code}: ")
    for key in ("timestamp", "trace_id", "correlation_id"):
        assert body[key]


def test_success_returns_a_unique_jwt_looking_bearer_token(sim: SimulatorServer) -> None:
    first = request_token(sim, TENANT_A)
    second = request_token(sim, TENANT_A)
    assert first.status_code == 200
    body = first.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == body["ext_expires_in"] == 3599
    assert JWT.match(body["access_token"])
    assert body["access_token"] != second.json()["access_token"]


def test_bad_secret_is_aadsts7000215(sim: SimulatorServer) -> None:
    response = request_token(sim, TENANT_A, client_secret="not-the-secret")
    _assert_aadsts(response, 401, "invalid_client", 7000215)
    assert "Invalid client secret provided" in response.json()["error_description"]


def test_unknown_client_is_aadsts700016(sim: SimulatorServer) -> None:
    response = request_token(sim, TENANT_A, client_id="00000000-1111-2222-3333-444444444444")
    _assert_aadsts(response, 400, "unauthorized_client", 700016)


def test_tenant_that_is_not_a_guid_is_aadsts90002(sim: SimulatorServer) -> None:
    response = request_token(sim, "contoso")
    _assert_aadsts(response, 400, "invalid_request", 90002)


@pytest.mark.parametrize("missing", ["grant_type", "client_id", "scope"])
def test_missing_form_field_is_aadsts900144(sim: SimulatorServer, missing: str) -> None:
    response = request_token(sim, TENANT_A, **{missing: None})
    _assert_aadsts(response, 400, "invalid_request", 900144)
    assert f"'{missing}'" in response.json()["error_description"]


def test_wrong_scope_and_grant_type_are_refused(sim: SimulatorServer) -> None:
    _assert_aadsts(request_token(sim, TENANT_A, scope="User.Read"), 400, "invalid_scope", 1002012)
    _assert_aadsts(
        request_token(sim, TENANT_A, grant_type="password"), 400, "unsupported_grant_type", 70003
    )


def test_token_error_fault_fails_the_token_endpoint_count_times(sim: SimulatorServer) -> None:
    sim.control.add_fault(TENANT_A, {"kind": "token_error", "aadsts": 7000222, "count": 1})
    _assert_aadsts(request_token(sim, TENANT_A), 401, "invalid_client", 7000222)
    assert request_token(sim, TENANT_A).status_code == 200
    assert request_token(sim, TENANT_B).status_code == 200


def test_token_selects_the_tenant_whose_data_is_served(sim: SimulatorServer) -> None:
    with graph_client(sim, TENANT_A) as a, graph_client(sim, TENANT_B) as b:
        ids_a = {i["id"] for i in a.get(POLICIES).json()["value"]}
        ids_b = {i["id"] for i in b.get(POLICIES).json()["value"]}
    assert ids_a == {i["id"] for i in sim.control.items(TENANT_A, "device_configurations")}
    assert ids_a.isdisjoint(ids_b)


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer", "Bearer eyJub3QiOiJpc3N1ZWQifQ.eyJ4IjoxfQ.c2ln", "Basic dXNlcjpwYXNz"],
)
def test_missing_or_foreign_bearer_is_401(sim: SimulatorServer, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = raw_get(sim.base_url + POLICIES, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert response.headers["request-id"]


def test_expired_token_is_401_and_a_fresh_one_works(sim: SimulatorServer) -> None:
    sim.control.set_options(expires_in=0)
    expired = request_token(sim, TENANT_A).json()
    assert expired["expires_in"] == 0
    response = raw_get(
        sim.base_url + POLICIES, headers={"Authorization": f"Bearer {expired['access_token']}"}
    )
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "InvalidAuthenticationToken"
    assert error["message"] == "Access token has expired or is not yet valid."
    assert set(error["innerError"]) >= {"date", "request-id", "client-request-id"}
    sim.control.set_options(expires_in=3599)
    with graph_client(sim, TENANT_A) as client:
        assert client.get(POLICIES).status_code == 200


def test_revoke_tokens_invalidates_earlier_tokens_only(sim: SimulatorServer) -> None:
    old_a, old_b = token_for(sim, TENANT_A), token_for(sim, TENANT_B)
    sim.control.add_fault(TENANT_A, {"kind": "revoke_tokens"})
    with graph_client(sim, TENANT_A, old_a) as stale:
        assert stale.get(POLICIES).status_code == 401
    with graph_client(sim, TENANT_B, old_b) as other:
        assert other.get(POLICIES).status_code == 200
    with graph_client(sim, TENANT_A) as fresh:
        assert fresh.get(POLICIES).status_code == 200
    assert sim.control.faults(TENANT_A) == []  # immediate: nothing left behind


def test_deferred_revoke_tokens_hits_mid_listing(sim: SimulatorServer) -> None:
    sim.control.add_fault(TENANT_A, {"kind": "revoke_tokens", "skip": 1, "count": 1})
    token = token_for(sim, TENANT_A)
    with graph_client(sim, TENANT_A, token) as client:
        assert client.get(POLICIES).status_code == 200
        assert client.get(POLICIES).status_code == 401
        assert client.get(POLICIES).status_code == 401  # the old token stays revoked
    with graph_client(sim, TENANT_A) as fresh:
        assert fresh.get(POLICIES).status_code == 200
