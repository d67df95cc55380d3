"""Selections of policy types and their identity, the selection hash.

The hash is SHA-256 over canonical JSON (sorted keys, recursively sorted arrays, no
whitespace, UTF-8), so the same logical selection always has the same identity. Sorting the
arrays is the selection's own rule; the text is the project's one encoder,
`fast_json.canonical_dumps`.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from inventory_pipelines.core.errors import ValidationError
from inventory_pipelines.core.fast_json import canonical_dumps
from inventory_pipelines.core.policy_types import POLICY_TYPES_BY_KEY, all_policy_type_keys

SELECTIONS_FILE_VERSION = 1
ALL_TYPES = "*"


def _canonical(value: Any) -> Any:
    """Return `value` with every array sorted by its elements' own canonical encoding."""
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [_canonical(v) for v in value]
        return sorted(items, key=canonical_dumps)
    return value


def canonical_json(payload: Any) -> str:
    """Canonical JSON text of a payload: keys sorted, arrays sorted, no whitespace."""
    return canonical_dumps(_canonical(payload))


def selection_hash(payload: Any) -> str:
    """SHA-256 hex digest of the canonical JSON, encoded as UTF-8."""
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Selection:
    """A validated selection: its name (the Dagster partition key) and canonical payload."""

    name: str
    payload: dict[str, Any]

    @property
    def policy_types(self) -> tuple[str, ...]:
        return tuple(self.payload["policy_types"])

    @property
    def hash(self) -> str:
        return selection_hash(self.payload)

    @property
    def canonical_json(self) -> str:
        return canonical_json(self.payload)


def validate_payload(payload: Any) -> dict[str, Any]:
    """Check a selection payload and return its canonical form (types sorted, no repeats)."""
    if not isinstance(payload, Mapping):
        raise ValidationError(
            'selection payload must be a JSON object like {"policy_types": [...]}'
        )
    types = payload.get("policy_types")
    if not isinstance(types, list) or not types:
        raise ValidationError("selection payload needs a non-empty list 'policy_types'")
    bad = [t for t in types if not isinstance(t, str)]
    if bad:
        raise ValidationError(f"policy_types must be strings, got {bad[:3]!r}")
    unknown = sorted({t for t in types if t not in POLICY_TYPES_BY_KEY})
    if unknown:
        raise ValidationError(
            f"unknown policy type(s): {', '.join(unknown)}; "
            "run `inventory-pipelines policy-types` for the supported keys"
        )
    result = {str(k): v for k, v in payload.items()}
    result["policy_types"] = sorted(set(types))
    return _canonical(result)


def expand_all_types(payload: Any) -> Any:
    """`"*"` (or `["*"]`) as `policy_types` means every supported type, spelled out, so its
    hash is that of the explicit list (the same as the shipped `all` selection)."""
    if not isinstance(payload, Mapping):
        return payload
    types = payload.get("policy_types")
    if types == ALL_TYPES or types == [ALL_TYPES]:
        return {**payload, "policy_types": all_policy_type_keys()}
    if isinstance(types, list) and ALL_TYPES in types:
        raise ValidationError(
            f'"{ALL_TYPES}" already means every policy type; do not list other types with it'
        )
    return payload


def parse_payload(text: str) -> dict[str, Any]:
    """Parse and validate selection JSON given on a command line."""
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(
            f"selection is not valid JSON: {exc.msg} at position {exc.pos}"
        ) from None
    return validate_payload(expand_all_types(payload))


def default_selections_path() -> Path:
    return Path(str(resources.files("inventory_pipelines").joinpath("selections.toml")))


def load_selections(path: Path | None = None) -> dict[str, Selection]:
    """Load the named selections file; `*` in `policy_types` means every supported type."""
    path = path or default_selections_path()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValidationError(f"selections file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValidationError(f"selections file {path} is not valid TOML: {exc}") from None
    if data.get("version") != SELECTIONS_FILE_VERSION:
        raise ValidationError(
            f"selections file {path} must declare version = {SELECTIONS_FILE_VERSION}"
        )
    selections: dict[str, Selection] = {}
    for name, body in (data.get("selections") or {}).items():
        if not isinstance(body, dict):
            raise ValidationError(f"selection {name!r} in {path} must be a table")
        try:
            selections[name] = Selection(name, validate_payload(expand_all_types(dict(body))))
        except ValidationError as exc:
            raise ValidationError(f"selection {name!r} in {path}: {exc.message}") from None
    if not selections:
        raise ValidationError(f"selections file {path} defines no selections")
    return selections


def get_selection(name: str, path: Path | None = None) -> Selection:
    selections = load_selections(path)
    try:
        return selections[name]
    except KeyError:
        raise ValidationError(
            f"unknown selection {name!r}; known: {', '.join(sorted(selections))}"
        ) from None
