"""Raw HTTP helpers for simulator tests: tokens and paging done by hand, not by our client."""

from __future__ import annotations

import ssl
from typing import Any

import httpx

from inventory_pipelines.core.policy_types import PolicyType, get_policy_type
from inventory_pipelines.simulator import (
    GRAPH_SCOPE,
    SIMULATOR_CLIENT_ID,
    SIMULATOR_CLIENT_SECRET,
    SimulatorServer,
)

# One TLS context for all helper clients: building httpx's default one costs ~40 ms a client.
_TLS = ssl.create_default_context()

TENANT_A = "0f1e2d3c-4b5a-4697-8877-665544332211"
TENANT_B = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"


def token_form(**overrides: str | None) -> dict[str, str]:
    form: dict[str, str | None] = {
        "client_id": SIMULATOR_CLIENT_ID,
        "client_secret": SIMULATOR_CLIENT_SECRET,
        "scope": GRAPH_SCOPE,
        "grant_type": "client_credentials",
        **overrides,
    }
    return {key: value for key, value in form.items() if value is not None}


def http_client(**kwargs: Any) -> httpx.Client:
    return httpx.Client(verify=_TLS, timeout=30, **kwargs)


def raw_get(url: str, headers: dict[str, str] | None = None) -> httpx.Response:
    with http_client() as client:
        return client.get(url, headers=headers)


def request_token(server: SimulatorServer, tenant: str, **overrides: str | None) -> httpx.Response:
    with http_client() as client:
        return client.post(server.token_url(tenant), data=token_form(**overrides))


def token_for(server: SimulatorServer, tenant: str) -> str:
    response = request_token(server, tenant)
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def graph_client(server: SimulatorServer, tenant: str, token: str | None = None) -> httpx.Client:
    """An httpx client authorised for `tenant` against the simulator's Graph base URL."""
    bearer = token or token_for(server, tenant)
    return http_client(base_url=server.base_url, headers={"Authorization": f"Bearer {bearer}"})


def url_of(policy_type: str | PolicyType) -> str:
    pt = get_policy_type(policy_type) if isinstance(policy_type, str) else policy_type
    return pt.url_path()


def list_pages(
    client: httpx.Client,
    policy_type: str,
    params: dict[str, Any] | None = None,
    *,
    max_pages: int = 10_000,
) -> list[dict[str, Any]]:
    """Every page body of a listing, following `@odata.nextLink` as given."""
    pages: list[dict[str, Any]] = []
    response = client.get(url_of(policy_type), params=params)
    while True:
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body)
        link = body.get("@odata.nextLink")
        if not link:
            return pages
        assert len(pages) < max_pages, "next links never ended"
        response = client.get(link)


def list_items(
    client: httpx.Client, policy_type: str, params: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    return [item for page in list_pages(client, policy_type, params) for item in page["value"]]


def ids_of(items: list[dict[str, Any]]) -> list[str]:
    return [item["id"] for item in items]
