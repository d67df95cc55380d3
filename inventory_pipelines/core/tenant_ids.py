"""Entra tenant ids: the one rule for what a tenant id is, used wherever one comes in.

A tenant id is the directory's GUID and nothing else. Tenants are registered by GUID (the
`tenants` primary key, stored lower-case), every inventory query filters on that GUID, and
the token authority takes the same GUID in its path (`{authority}/{tenant}/oauth2/v2.0/token`).
Entra would also accept one of the tenant's domain names there, but nothing here needs it, and
it would do harm: the same tenant under a second name gets a second token cache and rows the
registry's GUID never matches, and a domain in a URL path needs escaping rules of its own. A
GUID is safe in a URL path and a partition as it is.
"""

from __future__ import annotations

import re

from inventory_pipelines.core.errors import ValidationError

_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)


def looks_like_guid(value: str) -> bool:
    """A hyphenated GUID in either case (the shape of a tenant id, nothing around it)."""
    return isinstance(value, str) and _GUID.fullmatch(value) is not None


def normalize_tenant_id(value: str) -> str:
    """The tenant id as stored and sent: a GUID, lower-case; anything else is an error."""
    candidate = value.strip().lower() if isinstance(value, str) else ""
    if not looks_like_guid(candidate):
        raise ValidationError(
            f"tenant id {value!r} is not a GUID like 72f988bf-86f1-41af-91ab-2d7cd011db47 "
            "(the Entra directory id, not a domain name)"
        )
    return candidate
