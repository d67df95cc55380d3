"""No token, client secret or Authorization value in exceptions, reprs or log lines.

The scripted Graph echoes the secrets back in every field it can, as a misbehaving proxy
or a verbose error page would; whatever the strings are, they must not come out.
"""

from __future__ import annotations

import json
import logging
import string

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inventory_pipelines.core.errors import GraphError
from inventory_pipelines.graph.client import GraphClient
from inventory_pipelines.graph.retry import RetryPolicy
from inventory_pipelines_tests.graph.mock_graph import (
    TENANT,
    MockGraph,
    SleepRecorder,
    graph_error,
)
from inventory_pipelines_tests.graph.mock_graph import settings as graph_settings

DC = "/beta/deviceManagement/deviceConfigurations"
# The "~k~" prefix keeps a generated value from being an ordinary word the client prints anyway
# (Hypothesis otherwise finds token="unauthorized"); the rest is arbitrary.
SECRETS = st.text(
    alphabet=string.ascii_letters + string.digits + "-._~", min_size=10, max_size=48
).map(lambda s: "~k~" + s)


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        self.lines.append(json.dumps({k: str(v) for k, v in vars(record).items()}))


def echo(secret: str, token: str) -> str:
    return f"client_secret {secret} token {token} Authorization: Bearer {token} raw {token}"


def run(graph: MockGraph, secret: str) -> tuple[GraphError, GraphClient, list[str]]:
    handler = ListHandler()
    logger = logging.getLogger(f"test.redaction.{id(handler)}")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    client = GraphClient(
        graph_settings(client_secret=secret),
        retry=RetryPolicy(max_attempts=3),
        transport=httpx.MockTransport(graph),
        sleep=SleepRecorder(),
        logger=logger,
    )
    with client:
        fetch = client.fetch(TENANT, "device_configurations")
        try:
            list(fetch)
        except GraphError as exc:
            error = exc
        else:
            raise AssertionError("the scripted Graph never succeeds")
        texts = [repr(client), repr(client.tokens), repr(fetch), repr(fetch.stats)]
    logger.removeHandler(handler)
    return error, client, handler.lines + texts


def exposed(error: GraphError, more: list[str]) -> str:
    return "\n".join([str(error), repr(error), error.message, json.dumps(error.context()), *more])


def token_ok(token: str) -> httpx.Response:
    return httpx.Response(200, json={"access_token": token, "expires_in": 3599})


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(secret=SECRETS, token=SECRETS, status=st.sampled_from([400, 403, 429, 500, 503]))
def test_graph_errors_never_expose_secret_or_token(secret: str, token: str, status: int) -> None:
    graph = MockGraph()
    graph.token_responses.append(token_ok(token))
    graph.on(
        DC,
        graph_error(
            status,
            f"Code{token}",
            echo(secret, token),
            request_id=f"rid-{token}",
            headers={"Retry-After": "0", "WWW-Authenticate": f"Bearer {token}"},
        ),
    )
    error, _, texts = run(graph, secret)
    text = exposed(error, texts)
    assert secret not in text
    assert token not in text


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(secret=SECRETS, token=SECRETS)
def test_unauthorized_after_refresh_never_exposes_tokens(secret: str, token: str) -> None:
    second = token[::-1] + "x"
    graph = MockGraph()
    graph.token_responses.extend([token_ok(token), token_ok(second)])
    graph.on(
        DC, lambda r: graph_error(401, "InvalidAuthenticationToken", r.headers["Authorization"])
    )
    error, _, texts = run(graph, secret)
    text = exposed(error, texts)
    for value in (secret, token, second):
        assert value not in text


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(secret=SECRETS, status=st.sampled_from([400, 401, 500]))
def test_token_errors_never_expose_the_secret(secret: str, status: int) -> None:
    def echo_form(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            status,
            json={
                "error": "invalid_client",
                "error_description": f"AADSTS7000215: bad secret {secret}; form "
                + request.content.decode(),
                "error_codes": [7000215],
            },
            headers={"Retry-After": "0"},
        )

    graph = MockGraph()
    graph.token_responses.extend([echo_form] * 5)
    error, _, texts = run(graph, secret)
    text = exposed(error, texts)
    assert secret not in text
    assert "client_secret=" + secret not in text


@settings(max_examples=25, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(secret=SECRETS, token=SECRETS)
def test_transport_errors_never_expose_tokens(secret: str, token: str) -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError(f"reset while sending {request.headers['Authorization']} {secret}")

    graph = MockGraph()
    graph.token_responses.append(token_ok(token))
    graph.on(DC, broken)
    error, _, texts = run(graph, secret)
    text = exposed(error, texts)
    assert secret not in text
    assert token not in text
