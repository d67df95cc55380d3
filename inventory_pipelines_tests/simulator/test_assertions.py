"""Client assertions posted by hand: every check Entra makes, each failure with its AADSTS code,
and the OpenID configuration msal reads first."""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from inventory_pipelines.simulator import SIMULATOR_CLIENT_ID, SimulatorServer
from inventory_pipelines_tests.credential_files import KeyPair, new_key_pair
from inventory_pipelines_tests.simulator.graph_http import TENANT_A, raw_get, request_token

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@pytest.fixture(scope="module")
def app_keys() -> KeyPair:
    return new_key_pair("app certificate")


@pytest.fixture(scope="module")
def other_keys() -> KeyPair:
    return new_key_pair("another key")


def x5t_s256(keys: KeyPair) -> str:
    der = x509.load_pem_x509_certificate(keys.certificate_pem.encode()).public_bytes(
        serialization.Encoding.DER
    )
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


def app_assertion(sim: SimulatorServer, signer: KeyPair, named: KeyPair, **claims: Any) -> str:
    """What msal builds from a certificate: signed by `signer`, naming `named`'s thumbprint."""
    now = int(time.time())
    payload = {
        "aud": sim.token_url(TENANT_A),
        "iss": SIMULATOR_CLIENT_ID,
        "sub": SIMULATOR_CLIENT_ID,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": str(uuid.uuid4()),
        **claims,
    }
    return signer.sign(payload, headers={"x5t#S256": x5t_s256(named)})


def post_assertion(sim: SimulatorServer, assertion: str, **form: str | None) -> dict[str, Any]:
    fields: dict[str, str | None] = {
        "client_secret": None,
        "client_assertion": assertion,
        "client_assertion_type": JWT_BEARER,
        **form,
    }
    response = request_token(sim, TENANT_A, **fields)
    body: dict[str, Any] = response.json()
    body["status"] = response.status_code
    return body


def test_a_valid_certificate_assertion_gets_a_token(
    sim: SimulatorServer, app_keys: KeyPair
) -> None:
    sim.control.set_credentials(certificates=[app_keys.certificate_pem])
    body = post_assertion(sim, app_assertion(sim, app_keys, app_keys))
    assert body["status"] == 200 and body["access_token"].startswith("eyJ")


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("signed by another key", 401, 700027),
        ("unregistered certificate", 401, 700027),
        ("expired", 401, 700024),
        ("not yet valid", 401, 700024),
        ("audience of another tenant", 400, 50027),
        ("subject is not the app", 401, 700021),
        ("not a JWT", 400, 50027),
        ("wrong assertion type", 401, 50012),
    ],
)
def test_bad_certificate_assertions_get_entras_codes(
    sim: SimulatorServer,
    app_keys: KeyPair,
    other_keys: KeyPair,
    case: str,
    status: int,
    code: int,
) -> None:
    sim.control.set_credentials(certificates=[app_keys.certificate_pem])
    now = int(time.time())
    form: dict[str, str | None] = {}
    assertion = {
        "signed by another key": lambda: app_assertion(sim, other_keys, app_keys),
        "unregistered certificate": lambda: app_assertion(sim, other_keys, other_keys),
        "expired": lambda: app_assertion(sim, app_keys, app_keys, exp=now - 3600, nbf=now - 4200),
        "not yet valid": lambda: app_assertion(sim, app_keys, app_keys, nbf=now + 3600),
        "audience of another tenant": lambda: app_assertion(
            sim, app_keys, app_keys, aud=sim.token_url(str(uuid.uuid4()))
        ),
        "subject is not the app": lambda: app_assertion(sim, app_keys, app_keys, sub="x"),
        "not a JWT": lambda: "definitely.not.a-jwt",
        "wrong assertion type": lambda: app_assertion(sim, app_keys, app_keys),
    }[case]()
    if case == "wrong assertion type":
        form["client_assertion_type"] = "urn:ietf:params:oauth:client-assertion-type:saml2-bearer"
    body = post_assertion(sim, assertion, **form)
    assert (body["status"], body["error_codes"]) == (status, [code]), body
    assert body["error_description"].startswith(f"AADSTS{code}: ")


def test_credentials_are_replaced_and_undone_by_reset(
    sim: SimulatorServer, app_keys: KeyPair
) -> None:
    sim.control.set_credentials(certificates=[app_keys.certificate_pem])
    assert sim.control.set_credentials()["certificates"] == []
    sim.control.set_credentials(certificates=[app_keys.certificate_pem])
    sim.control.reset()
    assert post_assertion(sim, app_assertion(sim, app_keys, app_keys))["status"] == 401


def test_openid_configuration_names_the_tenants_token_endpoint(sim: SimulatorServer) -> None:
    response = raw_get(f"{sim.base_url}/{TENANT_A}/v2.0/.well-known/openid-configuration")
    assert response.status_code == 200
    assert response.json()["token_endpoint"] == sim.token_url(TENANT_A)
    unknown = raw_get(f"{sim.base_url}/not-a-guid/v2.0/.well-known/openid-configuration")
    assert unknown.status_code == 400 and unknown.json()["error_codes"] == [90002]
    assert sim.control.counters()["total"] == 0  # discovery is not a Graph request
