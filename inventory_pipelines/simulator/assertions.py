"""Client assertions checked as Entra ID checks them, failures named by their AADSTS codes.

Two kinds arrive as `client_assertion`: one the app signed with a certificate registered on
it (issuer = subject = client id), and one from another identity provider that a federated
identity credential of the app trusts (workload identity: issuer, subject and audience must
match the credential, the signature the issuer's key).
"""

from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
FEDERATED_AUDIENCE = "api://AzureADTokenExchange"
_ALGORITHMS = ["RS256", "PS256"]
_CLOCK_SKEW = 300  # seconds of skew Entra tolerates on nbf/exp


@dataclass(frozen=True)
class FederatedCredential:
    """A federated identity credential of the app: whom it trusts and the issuer's cert."""

    issuer: str
    subject: str
    certificate_pem: str
    audience: str = FEDERATED_AUDIENCE

    def to_dict(self) -> dict[str, str]:
        return {
            "issuer": self.issuer,
            "subject": self.subject,
            "audience": self.audience,
            "certificate": self.certificate_pem,
        }


@dataclass(frozen=True)
class AssertionProblem:
    """Why an assertion was refused: the AADSTS code and the detail Entra adds."""

    code: int
    detail: str = ""


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _thumbprints(certificate_pem: str) -> tuple[str, str]:
    """(x5t, x5t#S256) of a PEM certificate, as JWT headers carry them."""
    der = x509.load_pem_x509_certificate(certificate_pem.encode()).public_bytes(
        serialization.Encoding.DER
    )
    return _b64url(hashlib.sha1(der).digest()), _b64url(hashlib.sha256(der).digest())


def _public_key(certificate_pem: str) -> Any:
    return x509.load_pem_x509_certificate(certificate_pem.encode()).public_key()


def _unverified(assertion: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    try:
        header = jwt.get_unverified_header(assertion)
        claims = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    return header, claims


def _verified(assertion: str, certificate_pem: str) -> bool:
    try:
        jwt.decode(
            assertion,
            _public_key(certificate_pem),
            algorithms=_ALGORITHMS,
            options={"verify_exp": False, "verify_nbf": False, "verify_aud": False},
        )
    except jwt.PyJWTError:  # a bad signature, or a key of another type or algorithm
        return False
    return True


def _time_problem(claims: dict[str, Any], now: float) -> AssertionProblem | None:
    exp, nbf = claims.get("exp"), claims.get("nbf", 0)
    if not isinstance(exp, int | float) or not isinstance(nbf, int | float):
        return AssertionProblem(50027, "the assertion lacks a numeric exp or nbf claim")
    if now > exp + _CLOCK_SKEW or now < nbf - _CLOCK_SKEW:
        return AssertionProblem(
            700024,
            f"Current time: {int(now)}, assertion valid from {int(nbf)}, expiry time of "
            f"assertion {int(exp)}.",
        )
    return None


def issued_by_app(assertion: str, client_id: str) -> bool:
    """True when the app signed the assertion itself (issuer = client id): a certificate
    assertion; any other issuer makes it a federated identity's."""
    parsed = _unverified(assertion)
    return parsed is not None and parsed[1].get("iss") == client_id


def check_certificate_assertion(
    assertion: str,
    *,
    client_id: str,
    token_urls: frozenset[str],
    certificates: tuple[str, ...],
    now: float | None = None,
) -> AssertionProblem | None:
    """None when the app itself signed the assertion with a registered certificate."""
    parsed = _unverified(assertion)
    if parsed is None:
        return AssertionProblem(50027)
    header, claims = parsed
    if claims.get("iss") != client_id or claims.get("sub") != client_id:
        return AssertionProblem(700021)
    thumbprints = {_thumbprints(pem): pem for pem in certificates}
    # base64url, with or without padding: msal pads, RFC 7515 says it should not.
    named = {str(header.get(name, "")).rstrip("=") for name in ("x5t#S256", "x5t")} - {""}
    registered = [pem for (sha1, sha256), pem in thumbprints.items() if named & {sha1, sha256}]
    if not registered:
        shown = header.get("x5t#S256") or header.get("x5t") or "none"
        return AssertionProblem(700027, f"[Reason - The key was not found., Thumbprint: '{shown}']")
    if not _verified(assertion, registered[0]):
        return AssertionProblem(700027, "Client assertion failed signature validation.")
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if not any(a in token_urls for a in audiences):
        return AssertionProblem(50027, f"Invalid audience {audience!r}.")
    return _time_problem(claims, time.time() if now is None else now)


def check_federated_assertion(
    assertion: str,
    *,
    credentials: tuple[FederatedCredential, ...],
    now: float | None = None,
) -> AssertionProblem | None:
    """None when a federated identity credential of the app trusts the assertion."""
    parsed = _unverified(assertion)
    if parsed is None:
        return AssertionProblem(50027)
    _, claims = parsed
    issuer, subject, audience = claims.get("iss"), claims.get("sub"), claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    shown = f"Assertion Issuer: '{issuer}'. Assertion Subject: '{subject}'."
    by_issuer = [c for c in credentials if c.issuer == issuer]
    if not by_issuer:
        return AssertionProblem(70021, shown)
    by_subject = [c for c in by_issuer if c.subject == subject]
    if not by_subject:
        return AssertionProblem(700213, shown)
    matching = [c for c in by_subject if c.audience in audiences]
    if not matching:
        return AssertionProblem(700212, f"Assertion Audience: '{audience}'.")
    if not any(_verified(assertion, c.certificate_pem) for c in matching):
        return AssertionProblem(700027, "Client assertion failed signature validation.")
    return _time_problem(claims, time.time() if now is None else now)
