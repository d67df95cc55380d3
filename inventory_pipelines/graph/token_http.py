"""msal's HTTP client: its discovery GETs and token POSTs go over the project's httpx client.

So the read-only guard, the timeouts and the retries apply to the authority exactly as to
Graph (the same loop, `retry.call_with_retries`, and the same budget decides), and msal
reaches no host but the configured authority.
msal accepts only https authorities; for the simulator's plain-http loopback authority this
adapter translates that one origin both ways. Every failure that survives the retries is
raised here as a classified GraphError, so msal never caches or reinterprets one.
"""

from __future__ import annotations

import logging
import random as _random
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from inventory_pipelines.core.errors import ErrorCode, GraphError
from inventory_pipelines.graph.retry import (
    Failure,
    RetryBudget,
    RetryPolicy,
    call_with_retries,
    status_failure,
    transport_failure,
)
from inventory_pipelines.graph.settings import GraphSettings

_AADSTS = re.compile(r"AADSTS\d+")


class MsalResponse:
    """The slice of a `requests.Response` msal reads."""

    def __init__(self, status_code: int, text: str, headers: Mapping[str, str]) -> None:
        self.status_code = status_code
        self.text = text
        self.headers = dict(headers)

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise GraphError(
                f"authority answered HTTP {self.status_code}",
                code=ErrorCode.AUTHENTICATION_FAILED,
                status=self.status_code,
            )


def aadsts_code(body: Mapping[str, Any]) -> str | None:
    """`AADSTS…` from an authority error (description first, then `error_codes`), else `error`."""
    description = body.get("error_description")
    if isinstance(description, str):
        match = _AADSTS.search(description)
        if match:
            return match.group(0)
    codes = body.get("error_codes")
    if isinstance(codes, list) and codes and isinstance(codes[0], int):
        return f"AADSTS{codes[0]}"
    error = body.get("error")
    return error if isinstance(error, str) and error else None


def _first_line(text: str, limit: int = 300) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[:limit] + "…"


class TokenHttp:
    """The `http_client` handed to msal: `get`/`post` with retries, errors classified."""

    def __init__(
        self,
        settings: GraphSettings,
        http: httpx.Client,
        *,
        retry: RetryPolicy,
        logger: logging.Logger,
        redact: Callable[[str], str],
        remember_secret: Callable[[str], None],
        sleep: Callable[[float], None] = time.sleep,
        random: Callable[[], float] = _random.random,
    ) -> None:
        self._http = http
        self._retry = retry
        self._logger = logger
        self._redact = redact
        self._remember_secret = remember_secret
        self._sleep = sleep
        self._random = random
        authority = httpx.URL(settings.authority_url)
        netloc = authority.netloc.decode("ascii")
        self._wire_origin = f"{authority.scheme}://{netloc}"
        self._msal_origin = f"https://{netloc}"
        self._authority_path = authority.path.rstrip("/")

    def msal_authority(self, tenant_id: str) -> str:
        """The authority URL msal is given for a tenant (always https)."""
        return f"{self._msal_origin}{self._authority_path}/{tenant_id}"

    def get(
        self,
        url: str,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        **_: Any,
    ) -> MsalResponse:
        return self._send("GET", url, params=params, data=None, headers=headers)

    def post(
        self,
        url: str,
        params: Mapping[str, str] | None = None,
        data: Mapping[str, str] | str | None = None,
        headers: Mapping[str, str] | None = None,
        **_: Any,
    ) -> MsalResponse:
        if isinstance(data, Mapping):
            # msal hands over the assertion it signed as bytes; a form field is text.
            data = {
                key: value.decode() if isinstance(value, bytes) else str(value)
                for key, value in data.items()
            }
            if data.get("client_assertion"):
                self._remember_secret(data["client_assertion"])
        return self._send("POST", url, params=params, data=data, headers=headers)

    def close(self) -> None:
        """The httpx client belongs to the Graph client, which closes it."""

    def _wire_url(self, url: str) -> str:
        if url.startswith(self._msal_origin + "/"):
            return self._wire_origin + url[len(self._msal_origin) :]
        raise GraphError(
            f"refusing a token-library request to {url.split('?')[0]}: it is not the configured "
            f"authority {self._wire_origin}",
            code=ErrorCode.INTERNAL,
        )

    def _send(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None,
        data: Mapping[str, str] | str | None,
        headers: Mapping[str, str] | None,
    ) -> MsalResponse:
        wire_url = self._wire_url(url)
        what = "token request" if method == "POST" else "authority discovery"
        tenant = self._tenant_of(wire_url)
        budget = RetryBudget(self._retry, self._random)
        refused: httpx.Response | None = None

        def attempt(_: int) -> MsalResponse | Failure:
            nonlocal refused
            try:
                response = self._http.request(
                    method,
                    wire_url,
                    params=dict(params) if params else None,
                    data=data if isinstance(data, Mapping) else None,
                    content=data if isinstance(data, str) else None,
                    headers={"Accept": "application/json", **dict(headers or {})},
                )
            except httpx.TransportError as exc:
                return transport_failure(exc)
            if 200 <= response.status_code < 300:
                text = response.text
                if self._wire_origin != self._msal_origin and method == "GET":
                    text = text.replace(self._wire_origin + "/", self._msal_origin + "/")
                return MsalResponse(response.status_code, text, response.headers)
            failure = status_failure(response.status_code, response.headers)
            if failure.final:
                refused = response
            return failure

        def give_up(failure: Failure) -> GraphError:
            if failure.final and refused is not None:
                return self._rejection(what, tenant, refused)
            message = (
                f"{what} for tenant {tenant} failed after {budget.attempts} attempt(s): "
                f"{failure.reason}"
            )
            return GraphError(self._redact(message), code=failure.code)

        def log_wait(failure: Failure, wait: float, number: int) -> None:
            self._logger.info(
                self._redact(
                    f"retrying {what} for tenant {tenant} in {wait:.3f}s "
                    f"(attempt {number} failed: {failure.reason})"
                ),
                extra={
                    "graph_tenant": tenant,
                    "graph_attempt": number,
                    "graph_wait_seconds": wait,
                    "graph_reason": self._redact(failure.reason),
                },
            )

        return call_with_retries(
            budget, attempt, give_up=give_up, on_wait=log_wait, sleep=self._sleep
        )

    def _tenant_of(self, wire_url: str) -> str:
        path = httpx.URL(wire_url).path[len(self._authority_path) :]
        return path.strip("/").split("/", 1)[0]

    def _rejection(self, what: str, tenant: str, response: httpx.Response) -> GraphError:
        """An authority refusal: keep the AADSTS code and its (redacted) description."""
        try:
            body = response.json()
        except ValueError:
            body = None
        aadsts: str | None = None
        description = ""
        request_id = response.headers.get("x-ms-request-id") or response.headers.get("request-id")
        if isinstance(body, dict):
            aadsts = aadsts_code(body)
            raw = body.get("error_description")
            description = _first_line(raw) if isinstance(raw, str) else ""
            error = body.get("error")
            if isinstance(error, str) and error and error not in description:
                description = f"{error}: {description}" if description else error
            for key in ("trace_id", "correlation_id"):
                if not request_id and isinstance(body.get(key), str):
                    request_id = body[key]
        message = f"{what} for tenant {tenant} rejected: HTTP {response.status_code}" + (
            f" {description}" if description else ""
        )
        return GraphError(
            self._redact(message),
            code=ErrorCode.AUTHENTICATION_FAILED,
            status=response.status_code,
            graph_code=aadsts,
            request_id=request_id,
        )
