"""Client-credentials tokens: issue JWT-looking bearer tokens, then check, expire and revoke them.

Tokens are opaque to the simulator's own checks (a lookup table), but look like Entra ID
access tokens so that redaction of JWT-shaped strings is exercised for real.
"""

from __future__ import annotations

import base64
import itertools
import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from enum import Enum

SIMULATOR_CLIENT_ID = "7c5b1c1e-0000-4000-8000-5137a7c11e47"
"""Application (client) id the simulator accepts unless configured otherwise."""
SIMULATOR_CLIENT_SECRET = "sim~8Qz.Graph-Simulator_Secret-4kT2vLm9pW"
"""Client secret the simulator accepts unless configured otherwise (not a real credential)."""

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
_PRUNE_ABOVE = 50_000


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass(frozen=True)
class IssuedToken:
    tenant_id: str
    sequence: int
    expires_at: float


class TokenProblem(Enum):
    """Why a bearer token was refused (all become 401 InvalidAuthenticationToken)."""

    MISSING = "Access token is empty."
    UNKNOWN = "Invalid access token: the token was not issued by this authority."
    EXPIRED = "Access token has expired or is not yet valid."
    REVOKED = "Access token has expired or is not yet valid."


@dataclass(frozen=True)
class TokenCheck:
    tenant_id: str | None
    problem: TokenProblem | None


class TokenIssuer:
    """All tokens issued by one simulator; thread-safe."""

    def __init__(self, client_id: str) -> None:
        self._client_id = client_id
        self._lock = threading.Lock()
        self._tokens: dict[str, IssuedToken] = {}
        self._sequence = itertools.count(1)
        self._revoked_through: dict[str, int] = {}

    def issue(self, tenant_id: str, expires_in: int) -> str:
        """A new token for `tenant_id`, unique per issue (jti + random signature)."""
        now = time.time()
        header = {"typ": "JWT", "alg": "RS256", "x5t": "simulator", "kid": "simulator"}
        payload = {
            "aud": "https://graph.microsoft.com",
            "iss": f"https://sts.windows.net/{tenant_id}/",
            "iat": int(now),
            "nbf": int(now),
            "exp": int(now) + expires_in,
            "appid": self._client_id,
            "idtyp": "app",
            "roles": ["DeviceManagementConfiguration.Read.All", "Policy.Read.All"],
            "tid": tenant_id,
            "uti": _b64url(secrets.token_bytes(16)),
            "jti": str(uuid.uuid4()),
            "ver": "1.0",
        }
        token = ".".join(
            (
                _b64url(json.dumps(header, separators=(",", ":")).encode()),
                _b64url(json.dumps(payload, separators=(",", ":")).encode()),
                _b64url(secrets.token_bytes(64)),
            )
        )
        with self._lock:
            self._tokens[token] = IssuedToken(tenant_id, next(self._sequence), now + expires_in)
            if len(self._tokens) > _PRUNE_ABOVE:
                self._prune(now)
        return token

    def _prune(self, now: float) -> None:
        self._tokens = {t: info for t, info in self._tokens.items() if info.expires_at > now}

    def check(self, authorization: str | None) -> TokenCheck:
        """The tenant a bearer token belongs to, and what is wrong with it, if anything."""
        if not authorization:
            return TokenCheck(None, TokenProblem.MISSING)
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return TokenCheck(None, TokenProblem.MISSING)
        with self._lock:
            info = self._tokens.get(token.strip())
            if info is None:
                return TokenCheck(None, TokenProblem.UNKNOWN)
            revoked_through = max(
                self._revoked_through.get(info.tenant_id, 0), self._revoked_through.get("*", 0)
            )
            if info.sequence <= revoked_through:
                return TokenCheck(info.tenant_id, TokenProblem.REVOKED)
        if time.time() >= info.expires_at:
            return TokenCheck(info.tenant_id, TokenProblem.EXPIRED)
        return TokenCheck(info.tenant_id, None)

    def revoke(self, tenant_id: str) -> None:
        """Invalidate every token issued so far for the tenant ("*": all tenants)."""
        with self._lock:
            self._revoked_through[tenant_id] = next(self._sequence)

    def reset(self) -> None:
        with self._lock:
            self._tokens.clear()
            self._revoked_through.clear()
