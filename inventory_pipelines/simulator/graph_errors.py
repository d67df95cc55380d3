"""Error documents exactly as Graph, Intune and Entra ID (AADSTS) write them."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

from inventory_pipelines.core.policy_types import PolicyType
from inventory_pipelines.simulator.identifiers import utc_iso

GRAPH_CONTENT_TYPE = (
    "application/json;odata.metadata=minimal;odata.streaming=true;"
    "IEEE754Compatible=false;charset=utf-8"
)

_STATUS_CODES: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "Bad request."),
    401: ("InvalidAuthenticationToken", "Access token has expired or is not yet valid."),
    403: ("Forbidden", "Forbidden."),
    404: ("ResourceNotFound", "Resource not found."),
    405: ("Request_BadRequest", "Specified HTTP method is not allowed for the request target."),
    409: ("Conflict", "Conflict."),
    429: ("TooManyRequests", "Too many requests."),
    500: ("InternalServerError", "An internal server error has occurred."),
    502: ("BadGateway", "Bad gateway."),
    503: ("ServiceUnavailable", "The service is temporarily unavailable."),
    504: ("GatewayTimeout", "The gateway did not receive a timely response."),
}

_SCOPES_BY_PREFIX: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "deviceManagement/role",
        ("DeviceManagementRBAC.Read.All", "DeviceManagementRBAC.ReadWrite.All"),
    ),
    (
        "deviceManagement/virtualEndpoint",
        ("CloudPC.Read.All", "CloudPC.ReadWrite.All"),
    ),
    (
        "deviceManagement/deviceEnrollmentConfigurations",
        ("DeviceManagementServiceConfig.Read.All", "DeviceManagementServiceConfig.ReadWrite.All"),
    ),
    (
        "deviceManagement/",
        ("DeviceManagementConfiguration.Read.All", "DeviceManagementConfiguration.ReadWrite.All"),
    ),
    (
        "deviceAppManagement/",
        ("DeviceManagementApps.Read.All", "DeviceManagementApps.ReadWrite.All"),
    ),
    ("identityGovernance/", ("Agreement.Read.All", "Agreement.ReadWrite.All")),
    ("identity/", ("Policy.Read.All", "Policy.ReadWrite.ConditionalAccess")),
)


def default_error(status: int) -> tuple[str, str]:
    """Graph's usual (code, message) for an HTTP status."""
    if status in _STATUS_CODES:
        return _STATUS_CODES[status]
    return (
        ("UnknownError", f"HTTP {status}.") if status >= 500 else ("BadRequest", f"HTTP {status}.")
    )


def required_scopes(policy_type: PolicyType | None) -> tuple[str, ...]:
    """Application permissions Graph names in a 403 for this collection."""
    path = policy_type.graph_path if policy_type is not None else ""
    for prefix, scopes in _SCOPES_BY_PREFIX:
        if path.startswith(prefix):
            return scopes
    return ("DeviceManagementConfiguration.Read.All",)


def forbidden_message(policy_type: PolicyType | None) -> str:
    return (
        "Application is not authorized to perform this operation. Application must have one "
        f"of the following scopes: {', '.join(required_scopes(policy_type))}"
    )


def intune_json_message(message: str, url: str) -> str:
    """Intune's habit: `error.message` is itself a JSON document with an Activity ID."""
    activity = uuid.uuid4()
    document = {
        "_version": 3,
        "Message": f"{message} - Operation ID (for customer support): "
        f"00000000-0000-0000-0000-000000000000 - Activity ID: {activity} - Url: {url}",
        "CustomApiErrorPhrase": "",
        "RetryAfter": None,
        "ErrorSourceService": "",
        "HttpHeaders": "{}",
    }
    return json.dumps(document)


def intune_backend_url(policy_type: PolicyType | None, query: str) -> str:
    path = policy_type.graph_path if policy_type is not None else "deviceManagement"
    suffix = f"?{query}" if query else ""
    return (
        "https://fef.msua06.manage.microsoft.com/DeviceConfiguration_2408/"
        f"StatelessDeviceConfigurationFEService/{path}{suffix}"
    )


def graph_error_body(code: str, message: str, request_id: str, client_request_id: str) -> bytes:
    """`{"error": {"code", "message", "innerError": {...}}}` as Graph sends it."""
    document = {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": utc_iso(time.time(), fraction_digits=0),
                "request-id": request_id,
                "client-request-id": client_request_id,
            },
        }
    }
    return json.dumps(document, ensure_ascii=False).encode()


def retry_after_header(value: int | str | None) -> str | None:
    """`Retry-After` text: seconds, an HTTP-date about a second ahead, or no header."""
    if value is None:
        return None
    if value == "http-date":
        # Whole-second resolution: the date is 1–2 s ahead, never in the past.
        return formatdate(int(time.time()) + 2, usegmt=True)
    return str(value)


@dataclass(frozen=True)
class AadstsError:
    """One Entra ID token-endpoint failure."""

    status: int
    error: str
    description: str


def aadsts_error(
    code: int, *, tenant_id: str, client_id: str, parameter: str = "grant_type", detail: str = ""
) -> AadstsError:
    """The token endpoint's failure for an AADSTS code (unknown codes become invalid_request)."""
    known: dict[int, tuple[int, str, str]] = {
        7000215: (
            401,
            "invalid_client",
            "Invalid client secret provided. Ensure the secret being sent in the request is "
            "the client secret value, not the client secret ID, for a secret added to app "
            f"'{client_id}'.",
        ),
        7000222: (
            401,
            "invalid_client",
            f"The provided client secret keys for app '{client_id}' are expired. Visit the "
            "Azure portal to create new keys for your app.",
        ),
        700016: (
            400,
            "unauthorized_client",
            f"Application with identifier '{client_id}' was not found in the directory "
            f"'{tenant_id}'. This can happen if the application has not been installed by the "
            "administrator of the tenant or consented to by any user in the tenant. You may "
            "have sent your authentication request to the wrong tenant.",
        ),
        65001: (
            400,
            "invalid_grant",
            f"The user or administrator has not consented to use the application with ID "
            f"'{client_id}'. Send an interactive authorization request for this user and "
            "resource.",
        ),
        90002: (
            400,
            "invalid_request",
            f"Tenant '{tenant_id}' not found. Check to make sure you have the correct tenant "
            "ID and are signing into the correct cloud.",
        ),
        900144: (
            400,
            "invalid_request",
            f"The request body must contain the following parameter: '{parameter}'.",
        ),
        7000216: (
            401,
            "invalid_client",
            "'client_assertion', 'client_secret' or 'request' is required for the "
            "'client_credentials' grant type.",
        ),
        700027: (
            401,
            "invalid_client",
            "The certificate with identifier used to sign the client assertion is not "
            f"registered on application '{client_id}', or the assertion failed signature "
            "validation.",
        ),
        700024: (
            401,
            "invalid_client",
            "Client assertion is not within its valid time range.",
        ),
        700021: (
            401,
            "invalid_client",
            "Client assertion application identifier doesn't match 'client_id' parameter.",
        ),
        50027: (
            400,
            "invalid_request",
            "JWT token is invalid or malformed.",
        ),
        70021: (
            400,
            "invalid_request",
            "No matching federated identity record found for presented assertion.",
        ),
        700213: (
            400,
            "invalid_request",
            "No matching federated identity record found for presented assertion subject.",
        ),
        700212: (
            400,
            "invalid_request",
            "No matching federated identity record found for presented assertion audience.",
        ),
        50012: (
            401,
            "invalid_client",
            "The client assertion type is not supported; use "
            "'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'.",
        ),
        70003: (
            400,
            "unsupported_grant_type",
            "The app requested an unsupported grant type.",
        ),
        1002012: (
            400,
            "invalid_scope",
            "The provided value for scope is not valid. Client credential flows must have a "
            "scope value with /.default suffixed to the resource identifier.",
        ),
    }
    status, error, text = known.get(code, (400, "invalid_request", "The request is invalid."))
    return AadstsError(status, error, f"AADSTS{code}: {text}" + (f" {detail}" if detail else ""))


def aadsts_body(failure: AadstsError, code: int) -> dict[str, Any]:
    """The JSON body Entra ID returns, with trace and correlation ids in the description."""
    trace_id = str(uuid.uuid4())
    correlation_id = str(uuid.uuid4())
    timestamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())
    return {
        "error": failure.error,
        "error_description": f"{failure.description} Trace ID: {trace_id} "
        f"Correlation ID: {correlation_id} Timestamp: {timestamp}",
        "error_codes": [code],
        "timestamp": timestamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": f"https://login.microsoftonline.com/error?code={code}",
    }
