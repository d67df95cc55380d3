"""Secret redaction applied to every message before it is stored or logged.

Patterns err on the side of hiding: a redacted non-secret costs a little context, a leaked
token costs a tenant.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

REDACTED = "[REDACTED]"

_SECRET_KEYS = (
    r"client[_-]?secret|access[_-]?token|refresh[_-]?token|id[_-]?token|password|passwd|"
    r"passphrase|secret|api[_-]?key|private[_-]?key|client[_-]?assertion|assertion"
)
# A quote as it appears in plain, escaped or URL-encoded JSON: " ' \" %22.
_QUOTE = r"(?:\\?[\"']|%22)"
# The separator between key and value: = : or their URL encodings.
_SEPARATOR = r"\s*(?:[:=]|%3[aAdD])\s*"

_PATTERNS: tuple[re.Pattern[str], ...] = (
    # Private keys in PEM, also with escaped newlines or cut short (then up to the text's end).
    re.compile(
        r"()-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----"
        r"(?:.*?-----END [A-Z0-9 ]*PRIVATE KEY-----|[A-Za-z0-9+/=\s\\]*)",
        re.DOTALL,
    ),
    # Authorization headers and bearer/basic credentials, in any quoting.
    re.compile(
        r"(?i)(authorization" + _QUOTE + r"?" + _SEPARATOR + _QUOTE + r"?)"
        r"(?:bearer\s+|basic\s+)?[^\s\"'\\,;}]+"
    ),
    re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9\-._~+/]+=*"),
    # JWT-looking strings: three base64url segments, the first starting with eyJ.
    re.compile(r"()eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*"),
)

# "key": "value" pairs whose key names a secret: the whole quoted value, spaces included (an
# unclosed quote hides the rest of the line).
_QUOTED_SECRET = re.compile(
    r"(?i)((?:" + _SECRET_KEYS + r")" + _QUOTE + r"?" + _SEPARATOR + r")"
    r"(\\?[\"']|%22)([^\n]*?)(\2|(?=\n)|\Z)"
)
# key=value pairs whose value is not quoted: up to the next separator of its kind.
_BARE_SECRET = re.compile(
    r"(?i)((?:" + _SECRET_KEYS + r")" + _QUOTE + r"?" + _SEPARATOR + r")"
    r"(?![\"']|\\[\"']|%22|\[REDACTED\])[^\s\"'&,;}\\]+"
)


def redact(text: str, extra_secrets: Iterable[str] = ()) -> str:
    """Return `text` with tokens, JWTs, keys, secrets and Authorization values replaced."""
    for secret in extra_secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
    text = _QUOTED_SECRET.sub(lambda m: m.group(1) + m.group(2) + REDACTED + m.group(4), text)
    return _BARE_SECRET.sub(lambda m: m.group(1) + REDACTED, text)


def redact_value(value: Any, extra_secrets: Iterable[str] = ()) -> Any:
    """Redact every string inside a JSON-like value (dicts, lists, scalars)."""
    secrets = tuple(extra_secrets)
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {str(k): redact_value(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(v, secrets) for v in value]
    return value


class RedactingFilter(logging.Filter):
    """Redacts every record of the logger it is attached to, arguments included."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg = redact(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


_FILTER = RedactingFilter()


def project_logger(name: str) -> logging.Logger:
    """A logger whose records are redacted before any handler sees them."""
    logger = logging.getLogger(name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger
