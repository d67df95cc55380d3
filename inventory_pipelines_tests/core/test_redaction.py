import logging
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inventory_pipelines.core.errors import ErrorCode, GraphError, InventoryError
from inventory_pipelines.core.redaction import REDACTED, project_logger, redact, redact_value

token_chars = string.ascii_letters + string.digits + "-_"
secrets = st.text(alphabet=token_chars, min_size=12, max_size=60)
jwts = st.tuples(secrets, secrets, secrets).map(lambda p: f"eyJ{p[0]}.{p[1]}.{p[2]}")
# Surrounding text is drawn from phrases that cannot contain a generated secret.
noise = st.sampled_from(["", "request failed:", "POST /token (400) ->", "retrying in 2 s;"])

leak_shapes = [
    "Authorization: Bearer {s}",
    "authorization={s}",
    '{{"Authorization": "Bearer {s}"}}',
    "headers={{'Authorization': 'Bearer {s}'}}",
    "client_secret={s}&scope=x",
    '{{"client_secret": "{s}"}}',
    '"access_token":"{s}"',
    "bearer {s}",
    "refresh_token={s}",
]


@given(noise, secrets, noise, st.sampled_from(leak_shapes))
def test_secrets_in_known_shapes_never_survive(
    before: str, secret: str, after: str, shape: str
) -> None:
    text = before + " " + shape.format(s=secret) + " " + after
    cleaned = redact(text)
    assert secret not in cleaned
    assert REDACTED in cleaned


@given(noise, jwts, noise)
def test_jwt_looking_strings_are_redacted_anywhere(before: str, jwt: str, after: str) -> None:
    cleaned = redact(f"{before}{jwt} {after}")
    assert jwt not in cleaned
    assert jwt.split(".")[1] not in cleaned


@given(secrets)
def test_explicit_secrets_are_redacted_verbatim(secret: str) -> None:
    assert secret not in redact(f"failed with {secret}!", extra_secrets=[secret])


def test_harmless_text_is_kept() -> None:
    text = "GET /beta/deviceManagement/intents returned 403 Forbidden (request-id 1234)"
    assert redact(text) == text


@given(secrets)
def test_nested_values_are_redacted(secret: str) -> None:
    value = {"a": [f"Bearer {secret}", {"b": f"client_secret={secret}"}], "n": 3}
    assert secret not in repr(redact_value(value))


@given(jwts)
def test_exceptions_redact_their_message_and_repr(jwt: str) -> None:
    error = GraphError(f"token {jwt} rejected", code=ErrorCode.UNAUTHORIZED, status=401)
    assert jwt not in str(error) and jwt not in repr(error)
    assert jwt not in str(error.context())
    assert jwt not in str(InventoryError(f"Authorization: Bearer {jwt}"))


@pytest.mark.parametrize("use_args", [True, False])
def test_project_logger_redacts_records(caplog: pytest.LogCaptureFixture, use_args: bool) -> None:
    secret = "eyJhbGciOiJSUzI1NiJ9.eyJ0aWQiOiJ4In0.c2lnbmF0dXJl"
    logger = project_logger("inventory_pipelines.test_redaction")
    with caplog.at_level(logging.INFO, logger="inventory_pipelines"):
        if use_args:
            logger.info("token %s issued", secret)
        else:
            logger.info(f"Authorization: Bearer {secret}")
        try:
            raise RuntimeError(f"boom {secret}")
        except RuntimeError:
            logger.exception("failed")
    assert caplog.records
    assert secret not in caplog.text
    assert REDACTED in caplog.text
