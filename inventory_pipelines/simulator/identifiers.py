"""Tenant ids, request ids and timestamps in the exact textual forms Graph and Entra ID use."""

from __future__ import annotations

import calendar
import time
import uuid

GLOBAL_TENANT = "*"
"""Pseudo tenant whose fault rules apply to every tenant (an app-wide, cross-tenant limit)."""

UNKNOWN_TENANT = "unknown"
"""Counter bucket for Graph requests whose bearer token the simulator never issued."""


def canonical_tenant_id(value: str) -> str | None:
    """Lower-case hyphenated GUID, or None when `value` is not a GUID (Entra ID's AADSTS90002)."""
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        return None


def new_request_id() -> str:
    """A fresh `request-id` like the one Graph puts on every response."""
    return str(uuid.uuid4())


_DAYS: dict[int, str] = {}
_TWO_DIGITS = tuple(f"{n:02d}" for n in range(60))


def _day_text(day: int) -> str:
    """Date part, memoized: formatting 100k timestamps must stay cheap."""
    text = _DAYS.get(day)
    if text is None:
        text = time.strftime("%Y-%m-%d", time.gmtime(day * 86_400))
        _DAYS[day] = text
    return text


def utc_iso(epoch_seconds: float, *, fraction_digits: int = 7) -> str:
    """`2024-03-05T10:11:12.1234567Z`: Intune writes seven fraction digits, Entra ID none."""
    whole = int(epoch_seconds)
    day, rest = divmod(whole, 86_400)
    two = _TWO_DIGITS
    text = f"{_day_text(day)}T{two[rest // 3600]}:{two[rest // 60 % 60]}:{two[rest % 60]}"
    if fraction_digits <= 0:
        return text + "Z"
    scale = 10**fraction_digits
    fraction = min(int((epoch_seconds - whole) * scale), scale - 1)
    return f"{text}.{str(fraction).zfill(fraction_digits)}Z"


def parse_utc_iso(text: str) -> float:
    """Inverse of `utc_iso` for any number of fraction digits."""
    body = text.rstrip("Z")
    whole, _, fraction = body.partition(".")
    seconds = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
    return seconds + (float(f"0.{fraction}") if fraction else 0.0)
