import logging
import re
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


# -- the shapes a secret takes on its way into a message -------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # A JSON document logged as a JSON string: its quotes arrive escaped.
        (
            '"{\\"client_secret\\": \\"S3cr3tValue1234\\"}"',
            '"{\\"client_secret\\": \\"[REDACTED]\\"}"',
        ),
        # A quoted value with spaces is hidden whole, not only its first word.
        ('{"password": "correct horse battery"}', '{"password": "[REDACTED]"}'),
        ("password='correct horse battery' then", "password='[REDACTED]' then"),
        (
            "client_assertion=eyJhbGciOiJQUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln&client_assertion_type=jwt",
            "client_assertion=[REDACTED]&client_assertion_type=jwt",
        ),
        ("%22client_secret%22%3A%22two%20words%22", "%22client_secret%22%3A%22[REDACTED]%22"),
        (
            "-----BEGIN PRIVATE KEY-----\nMIIEv\nQ==\n-----END PRIVATE KEY-----\nnext",
            "[REDACTED]\nnext",
        ),
    ],
)
def test_known_leaks_are_closed(text: str, expected: str) -> None:
    assert redact(text) == expected


KEYS = [
    "client_secret",
    "Client-Secret",
    "password",
    "access_token",
    "api_key",
    "x-api-key",
    "client_assertion",
    "private_key",
    "refresh_token",
    "passphrase",
]
# Each word of a value carries a digit: key names and the surrounding text have none, so a
# word that survives redaction is a leak and never a coincidence.
words = st.from_regex(r"[A-Za-z~.+/=-]{0,8}[0-9][A-Za-z0-9~.+/=-]{2,10}", fullmatch=True)
one_word = words
base64url_words = st.from_regex(r"[A-Za-z_-]{0,8}[0-9][A-Za-z0-9_-]{2,10}", fullmatch=True)
many_words = st.lists(words, min_size=1, max_size=4).map(" ".join)


def _pem(body: list[str]) -> str:
    return "-----BEGIN PRIVATE KEY-----\n" + "\n".join(body) + "\n-----END PRIVATE KEY-----"


@st.composite
def leaked(draw: st.DrawFn) -> tuple[str, str]:
    """(text, secret): a secret in one of the shapes logs, errors and echoed bodies show."""
    key = draw(st.sampled_from(KEYS))
    shape = draw(
        st.sampled_from(
            [
                "key=value",
                "query",
                "url-encoded",
                "header",
                "json",
                "escaped json",
                "single quotes",
                "url-encoded json",
                "authorization",
                "pem",
                "jwt",
            ]
        )
    )
    segments = draw(st.lists(base64url_words, min_size=3, max_size=3))
    value = draw(
        many_words
        if shape in ("json", "escaped json", "single quotes", "url-encoded json")
        else one_word
    )
    text = {
        "key=value": f"{key}={value}",
        "query": f"POST /token?scope=x&{key}={value}&grant_type=client_credentials",
        "url-encoded": f"{key}%3D{value.replace('/', '%2F')}%26scope%3Dx",
        "header": f"{key}: {value}\r\nAccept: application/json",
        "json": f'{{"{key}": "{value}", "scope": "x"}}',
        "escaped json": f'"{{\\"{key}\\": \\"{value}\\", \\"scope\\": \\"x\\"}}"',
        "single quotes": f"{{'{key}': '{value}'}}",
        "url-encoded json": f"%7B%22{key}%22%3A%22{value.replace(' ', '%20')}%22%7D",
        "authorization": f"Authorization: {draw(st.sampled_from(['Bearer', 'Basic']))} {value}",
        "pem": _pem(draw(st.lists(words, min_size=1, max_size=5))),
        "jwt": "eyJ{}.eyJ{}.{}".format(*segments),
    }[shape]
    secret = {"pem": text, "jwt": " ".join(segments)}.get(shape, value)
    return text, secret


@given(noise, leaked(), noise)
def test_secrets_in_every_shape_never_survive(
    before: str, leak: tuple[str, str], after: str
) -> None:
    text, secret = leak
    cleaned = redact(f"{before} {text} {after}")
    assert REDACTED in cleaned
    surviving = [
        w for w in re.split(r"[\s\n]+", secret) if any(c.isdigit() for c in w) and w in cleaned
    ]
    assert surviving == [], cleaned
