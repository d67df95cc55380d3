"""The three credential kinds end to end: msal over the guarded client against the simulator,
which verifies client assertions as Entra does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inventory_pipelines.core.errors import ErrorCode, GraphError
from inventory_pipelines.graph.client import GraphClient
from inventory_pipelines.simulator import SimulatorServer
from inventory_pipelines_tests.credential_files import (
    KeyPair,
    federated_registration,
    federated_token,
    new_key_pair,
    write_token_file,
)
from inventory_pipelines_tests.reliability.harness import RecordingTransport
from inventory_pipelines_tests.simulator_fixtures import FAST_RETRY, simulator_settings

TENANT = "5d2f7c1a-9b3e-4f60-8a21-c0ffee000001"
TYPE = "device_configurations"


@pytest.fixture(scope="module")
def app_keys() -> KeyPair:
    return new_key_pair("app certificate")


@pytest.fixture(scope="module")
def issuer_keys() -> KeyPair:
    return new_key_pair("cluster OIDC issuer")


@pytest.fixture(scope="module")
def stranger_keys() -> KeyPair:
    return new_key_pair("not registered anywhere")


def certificate_client(sim: SimulatorServer, path: Path, **kwargs: object) -> GraphClient:
    settings = simulator_settings(sim, client_secret="", certificate_path=str(path))
    return GraphClient(settings, retry=FAST_RETRY, identity_requests_per_second=0, **kwargs)  # type: ignore[arg-type]


def federated_client(sim: SimulatorServer, path: Path) -> GraphClient:
    settings = simulator_settings(sim, client_secret="", federated_token_file=str(path))
    return GraphClient(settings, retry=FAST_RETRY, identity_requests_per_second=0)


def fetched_items(client: GraphClient) -> int:
    return sum(len(page.items) for page in client.fetch(TENANT, TYPE))


def rejection(client: GraphClient) -> GraphError:
    with pytest.raises(GraphError) as info:
        client.tokens.token(TENANT)
    assert info.value.code is ErrorCode.AUTHENTICATION_FAILED
    return info.value


def assert_nothing_secret(error: GraphError, *secrets: str) -> None:
    exposed = str(error) + repr(error) + json.dumps(error.context())
    for secret in secrets:
        assert secret not in exposed
    assert "eyJ" not in exposed and "PRIVATE KEY" not in exposed


def test_a_registered_certificate_gets_a_token_and_graph_answers(
    sim: SimulatorServer, tmp_path: Path, app_keys: KeyPair
) -> None:
    sim.control.configure_tenant(TENANT, seed=3, sizes={TYPE: 7})
    sim.control.set_credentials(certificates=[app_keys.certificate_pem])
    recorder = RecordingTransport()
    with certificate_client(
        sim, app_keys.write(tmp_path / "app.pem"), transport=recorder
    ) as client:
        assert fetched_items(client) == 7
        secrets = client.tokens.secrets()
    assert app_keys.key_pem in secrets
    assert any(s.startswith("eyJ") and s not in recorder.tokens for s in secrets)  # assertion
    assert sim.control.counters()["token_by_status"] == {"200": 1}


def test_an_unregistered_certificate_is_aadsts700027(
    sim: SimulatorServer, tmp_path: Path, app_keys: KeyPair, stranger_keys: KeyPair
) -> None:
    sim.control.set_credentials(certificates=[app_keys.certificate_pem])
    with certificate_client(sim, stranger_keys.write(tmp_path / "other.pem")) as client:
        error = rejection(client)
        assert error.graph_code == "AADSTS700027"
        assert error.status == 401
        assert_nothing_secret(error, stranger_keys.key_pem, *client.tokens.secrets())


def test_a_certificate_is_refused_when_the_app_registers_none(
    sim: SimulatorServer, tmp_path: Path, app_keys: KeyPair
) -> None:
    with certificate_client(sim, app_keys.write(tmp_path / "app.pem")) as client:
        assert rejection(client).graph_code == "AADSTS700027"


def test_a_federated_token_file_gets_a_token_and_graph_answers(
    sim: SimulatorServer, tmp_path: Path, issuer_keys: KeyPair
) -> None:
    sim.control.configure_tenant(TENANT, seed=4, sizes={TYPE: 5})
    sim.control.set_credentials(federated=[federated_registration(issuer_keys)])
    token_file = write_token_file(tmp_path / "token", federated_token(issuer_keys))
    with federated_client(sim, token_file) as client:
        assert fetched_items(client) == 5
        assert token_file.read_text() in client.tokens.secrets()


def test_the_token_file_is_read_again_after_it_rotates(
    sim: SimulatorServer, tmp_path: Path, issuer_keys: KeyPair
) -> None:
    """An expired projected token is refused; once the kubelet has written a new one, the
    next token request sends the new one without a restart."""
    sim.control.set_credentials(federated=[federated_registration(issuer_keys)])
    stale = federated_token(issuer_keys, issued_at=0, lifetime=600)
    token_file = write_token_file(tmp_path / "token", stale)
    with federated_client(sim, token_file) as client:
        assert rejection(client).graph_code == "AADSTS700024"
        write_token_file(token_file, federated_token(issuer_keys))
        assert client.tokens.token(TENANT)
    assert sim.control.counters()["token_by_status"] == {"401": 1, "200": 1}


@pytest.mark.parametrize(
    ("registration", "token", "aadsts"),
    [
        ({"issuer": "https://another-issuer.test/"}, {}, "AADSTS70021"),
        ({"subject": "system:serviceaccount:other:app"}, {}, "AADSTS700213"),
        ({"audience": "api://SomethingElse"}, {}, "AADSTS700212"),
        ({}, {"lifetime": -3600}, "AADSTS700024"),
    ],
)
def test_federated_mismatches_get_entras_codes(
    sim: SimulatorServer,
    tmp_path: Path,
    issuer_keys: KeyPair,
    registration: dict[str, str],
    token: dict[str, float],
    aadsts: str,
) -> None:
    sim.control.set_credentials(federated=[federated_registration(issuer_keys, **registration)])
    assertion = federated_token(issuer_keys, **token)
    with federated_client(sim, write_token_file(tmp_path / "token", assertion)) as client:
        error = rejection(client)
    assert error.graph_code == aadsts
    assert_nothing_secret(error, assertion)


def test_a_token_signed_by_another_key_is_aadsts700027(
    sim: SimulatorServer, tmp_path: Path, issuer_keys: KeyPair, stranger_keys: KeyPair
) -> None:
    sim.control.set_credentials(federated=[federated_registration(issuer_keys)])
    forged = federated_token(stranger_keys)
    with federated_client(sim, write_token_file(tmp_path / "token", forged)) as client:
        error = rejection(client)
    assert error.graph_code == "AADSTS700027"
    assert_nothing_secret(error, forged)


def test_a_token_file_that_is_no_jwt_is_aadsts50027(
    sim: SimulatorServer, tmp_path: Path, issuer_keys: KeyPair
) -> None:
    sim.control.set_credentials(federated=[federated_registration(issuer_keys)])
    with federated_client(sim, write_token_file(tmp_path / "token", "not-a-jwt")) as client:
        assert rejection(client).graph_code == "AADSTS50027"


def test_a_token_file_removed_after_start_is_authentication_failed(
    sim: SimulatorServer, tmp_path: Path, issuer_keys: KeyPair
) -> None:
    token_file = write_token_file(tmp_path / "token", federated_token(issuer_keys))
    with federated_client(sim, token_file) as client:
        token_file.unlink()
        error = rejection(client)
    assert "federated token file" in str(error) and "GRAPH_FEDERATED_TOKEN_FILE" in str(error)


def test_msal_talks_only_to_the_authority_discovery_then_token(
    sim: SimulatorServer, tmp_path: Path, app_keys: KeyPair
) -> None:
    """One OpenID configuration GET and one token POST per tenant; no instance discovery on
    login.microsoftonline.com (no network needed), nothing else."""
    sim.control.set_credentials(certificates=[app_keys.certificate_pem])
    seen: list[str] = []

    class Noting(RecordingTransport):
        def handle_request(self, request):  # type: ignore[no-untyped-def]
            seen.append(f"{request.method} {request.url.host}:{request.url.port}{request.url.path}")
            return super().handle_request(request)

    with certificate_client(sim, app_keys.write(tmp_path / "app.pem"), transport=Noting()) as c:
        c.tokens.token(TENANT)
        c.tokens.invalidate(TENANT)
        c.tokens.token(TENANT)
    origin = f"127.0.0.1:{sim.port}/{TENANT}"
    assert seen == [
        f"GET {origin}/v2.0/.well-known/openid-configuration",
        f"POST {origin}/oauth2/v2.0/token",
        f"POST {origin}/oauth2/v2.0/token",
    ]
