"""Switchable faults: validated rules per tenant and the per-request decision of which apply.

Rule dicts (the kind names are a contract with the client team) share `kind`,
`policy_type` (a registry key, or absent for every type), `count` (how many requests the
rule affects; absent = until cleared) and `skip` (let that many matching requests through
first, e.g. to fail the third page). Rules for the pseudo tenant "*" apply to all tenants
(a rate limit there is one app-wide bucket).

Response faults (throttle, rate_limit, status, malformed_json, truncated_body,
reset_connection, revoke_tokens), latency and rendezvous match any Graph request. Listing faults
(empty_pages, duplicate_across_pages, repeat_next_link, missing_ids) match only first-page
requests (no `$skiptoken`): they shape the whole listing, carried on in its skiptokens,
so their `count` and `skip` count listings. token_error matches token requests.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from inventory_pipelines.core.policy_types import POLICY_TYPES_BY_KEY

RESPONSE_KINDS = frozenset(
    {"throttle", "status", "malformed_json", "truncated_body", "reset_connection", "revoke_tokens"}
)
LISTING_KINDS = frozenset(
    {"empty_pages", "duplicate_across_pages", "repeat_next_link", "missing_ids"}
)
FAULT_KINDS = (
    RESPONSE_KINDS
    | LISTING_KINDS
    | {
        "latency",
        "rate_limit",
        "rendezvous",
        "token_error",
    }
)

_COMMON_KEYS = frozenset({"kind", "policy_type", "count", "skip"})
_KIND_KEYS: dict[str, frozenset[str]] = {
    "throttle": frozenset({"retry_after", "intune_json_message", "message"}),
    "rate_limit": frozenset({"requests_per_second", "burst", "retry_after", "intune_json_message"}),
    "status": frozenset({"status", "code", "message", "retry_after", "intune_json_message"}),
    "malformed_json": frozenset(),
    "truncated_body": frozenset(),
    "reset_connection": frozenset(),
    "revoke_tokens": frozenset(),
    "latency": frozenset({"ms"}),
    "rendezvous": frozenset({"tenants", "timeout_ms"}),
    "empty_pages": frozenset({"pages"}),
    "duplicate_across_pages": frozenset(),
    "repeat_next_link": frozenset(),
    "missing_ids": frozenset({"items"}),
    "token_error": frozenset({"aadsts", "status"}),
}


class FaultSpecError(ValueError):
    """A fault dict the simulator cannot honour; the message names the field."""


class TokenBucket:
    """Classic token bucket: `rate` tokens per second, at most `burst` stored."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._stamp = time.monotonic()

    def take(self, now: float) -> float:
        """0.0 when a request may pass, else the seconds until one token is available."""
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate


class Rendezvous:
    """Holds Graph requests until requests of `tenants` distinct tenants are waiting together,
    then lets them all go (once; later requests pass straight through).

    Proves that syncs of different tenants really run at the same time, whatever the
    machine's load: a request held here keeps its run open until the other tenant's run has
    reached Graph too. After `timeout_s` the waiters give up (`timed_out`), so a deployment
    that never overlaps runs is slow and visible, not stuck. Used only from the server's
    event loop, so its state needs no lock.
    """

    def __init__(self, tenants: int, timeout_s: float) -> None:
        self.tenants = tenants
        self.timeout_s = timeout_s
        self.met = False
        self.timed_out = False
        self._arrived: set[str] = set()
        self._event: asyncio.Event | None = None

    @property
    def open(self) -> bool:
        return not (self.met or self.timed_out)

    async def wait(self, tenant_id: str) -> None:
        if not self.open:
            return
        if self._event is None:
            self._event = asyncio.Event()
        self._arrived.add(tenant_id)
        if len(self._arrived) >= self.tenants:
            self.met = True
            self._event.set()
            return
        try:
            await asyncio.wait_for(self._event.wait(), self.timeout_s)
        except TimeoutError:
            self.timed_out = not self.met
            self._event.set()

    def describe(self) -> dict[str, Any]:
        return {"met": self.met, "timed_out": self.timed_out, "arrived": len(self._arrived)}


@dataclass
class FaultRule:
    """One active fault rule and its remaining budget."""

    rule_id: int
    kind: str
    policy_type: str | None
    count: int | None
    skip: int
    params: dict[str, Any]
    applied: int = 0
    bucket: TokenBucket | None = field(default=None, repr=False)
    rendezvous: Rendezvous | None = field(default=None, repr=False)

    def matches(self, policy_type: str | None) -> bool:
        return self.policy_type is None or self.policy_type == policy_type

    def to_dict(self) -> dict[str, Any]:
        """The rule as given, plus its id and how often it has fired."""
        return {
            "id": self.rule_id,
            "kind": self.kind,
            "policy_type": self.policy_type,
            "count": self.count,
            "skip": self.skip,
            "applied": self.applied,
            **self.params,
            **(self.rendezvous.describe() if self.rendezvous else {}),
        }


def _int(raw: Mapping[str, Any], name: str, default: int | None, minimum: int) -> int | None:
    value = raw.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise FaultSpecError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _number(raw: Mapping[str, Any], name: str, default: float | None) -> float | None:
    value = raw.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise FaultSpecError(f"{name} must be a non-negative number, got {value!r}")
    return float(value)


def _retry_after(raw: Mapping[str, Any], default: int | None) -> int | str | None:
    value = raw.get("retry_after", default)
    if value is None or value == "http-date":
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise FaultSpecError(
            f'retry_after must be seconds (int >= 0), "http-date" or null, got {value!r}'
        )
    return value


def _bool_or_none(raw: Mapping[str, Any], name: str) -> bool | None:
    value = raw.get(name)
    if value is not None and not isinstance(value, bool):
        raise FaultSpecError(f"{name} must be true, false or null, got {value!r}")
    return value


def _params_for(kind: str, raw: Mapping[str, Any]) -> dict[str, Any]:
    if kind == "throttle":
        return {
            "retry_after": _retry_after(raw, 1),
            "intune_json_message": _bool_or_none(raw, "intune_json_message"),
            "message": raw.get("message"),
        }
    if kind == "rate_limit":
        rate = _number(raw, "requests_per_second", None)
        if not rate:
            raise FaultSpecError("rate_limit needs requests_per_second > 0")
        burst = _number(raw, "burst", max(1.0, rate))
        if burst is None or burst < 1:
            raise FaultSpecError("burst must be >= 1")
        retry_after = raw.get("retry_after", True)
        if not isinstance(retry_after, bool):
            raise FaultSpecError("rate_limit retry_after must be true or false")
        return {
            "requests_per_second": rate,
            "burst": burst,
            "retry_after": retry_after,
            "intune_json_message": _bool_or_none(raw, "intune_json_message"),
        }
    if kind == "status":
        status = _int(raw, "status", None, 400)
        if status is None or status > 599:
            raise FaultSpecError("status must be an HTTP error status between 400 and 599")
        for text_field in ("code", "message"):
            if raw.get(text_field) is not None and not isinstance(raw[text_field], str):
                raise FaultSpecError(f"{text_field} must be a string")
        return {
            "status": status,
            "code": raw.get("code"),
            "message": raw.get("message"),
            "retry_after": _retry_after(raw, None),
            "intune_json_message": _bool_or_none(raw, "intune_json_message"),
        }
    if kind == "latency":
        ms = _number(raw, "ms", None)
        if ms is None:
            raise FaultSpecError("latency needs ms (milliseconds to add)")
        return {"ms": ms}
    if kind == "rendezvous":
        tenants = _int(raw, "tenants", 2, 2)
        timeout_ms = _number(raw, "timeout_ms", 60_000)
        return {"tenants": tenants, "timeout_ms": timeout_ms}
    if kind == "empty_pages":
        return {"pages": _int(raw, "pages", 1, 1)}
    if kind == "missing_ids":
        return {"items": _int(raw, "items", 1, 1)}
    if kind == "token_error":
        status = _int(raw, "status", None, 400)
        return {"aadsts": _int(raw, "aadsts", 7000215, 1), "status": status}
    return {}


def parse_fault(raw: Mapping[str, Any], rule_id: int = 0) -> FaultRule:
    """Validate a fault dict; unknown kinds, types and keys are errors, not silently ignored."""
    if not isinstance(raw, Mapping):
        raise FaultSpecError("a fault must be a JSON object")
    kind = raw.get("kind")
    if kind not in FAULT_KINDS:
        raise FaultSpecError(
            f"unknown fault kind {kind!r}; known: {', '.join(sorted(FAULT_KINDS))}"
        )
    unknown = set(raw) - _COMMON_KEYS - _KIND_KEYS[kind]
    if unknown:
        raise FaultSpecError(f"unknown field(s) for {kind}: {', '.join(sorted(unknown))}")
    policy_type = raw.get("policy_type")
    if policy_type is not None and policy_type not in POLICY_TYPES_BY_KEY:
        raise FaultSpecError(f"unknown policy type {policy_type!r}")
    if kind == "token_error" and policy_type is not None:
        raise FaultSpecError("token_error applies to the token endpoint, not to a policy type")
    rule = FaultRule(
        rule_id=rule_id,
        kind=kind,
        policy_type=policy_type,
        count=_int(raw, "count", None, 1),
        skip=_int(raw, "skip", 0, 0) or 0,
        params=_params_for(kind, raw),
    )
    if kind == "rate_limit":
        rule.bucket = TokenBucket(rule.params["requests_per_second"], rule.params["burst"])
    if kind == "rendezvous":
        rule.rendezvous = Rendezvous(rule.params["tenants"], rule.params["timeout_ms"] / 1000)
    return rule


@dataclass(frozen=True)
class ResponseFault:
    """The one fault that decides a request's response (rate limits become throttles)."""

    kind: str
    params: Mapping[str, Any]
    source_kind: str


@dataclass
class GraphFaults:
    """Everything the fault rules decided for one Graph request."""

    latency_ms: float = 0.0
    rendezvous: Rendezvous | None = None
    response: ResponseFault | None = None
    empty_pages: int = 0
    duplicate: bool = False
    repeat_next_link: bool = False
    missing_ids: int = 0
    applied: list[str] = field(default_factory=list)


class FaultRegistry:
    """Active rules per tenant; decisions are atomic under one lock, so counts never race."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: dict[str, list[FaultRule]] = {}
        self._next_id = 1

    def parse(self, raw: Mapping[str, Any]) -> FaultRule:
        with self._lock:
            rule = parse_fault(raw, self._next_id)
            self._next_id += 1
            return rule

    def add(self, tenant_id: str, rule: FaultRule) -> None:
        with self._lock:
            self._rules.setdefault(tenant_id, []).append(rule)

    def replace(self, tenant_id: str, rules: Iterable[FaultRule]) -> None:
        with self._lock:
            self._rules[tenant_id] = list(rules)

    def clear(self, tenant_id: str | None = None) -> None:
        with self._lock:
            if tenant_id is None:
                self._rules.clear()
            else:
                self._rules.pop(tenant_id, None)

    def describe(self, tenant_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [rule.to_dict() for rule in self._rules.get(tenant_id, [])]

    def _turn(self, rule: FaultRule) -> bool:
        """Whether this matching request is affected, honouring `skip`."""
        if rule.skip > 0:
            rule.skip -= 1
            return False
        return True

    @staticmethod
    def _spend(rule: FaultRule, out: list[str]) -> None:
        rule.applied += 1
        if rule.count is not None:
            rule.count -= 1
        out.append(rule.kind)

    def _prune(self, tenant_ids: Iterable[str]) -> None:
        for tenant_id in tenant_ids:
            rules = self._rules.get(tenant_id)
            if rules and any(r.count == 0 for r in rules):
                self._rules[tenant_id] = [r for r in rules if r.count != 0]

    def decide_graph(
        self, tenant_id: str, policy_type: str | None, first_page: bool
    ) -> GraphFaults:
        """Apply the rules to one Graph request: latency adds up, one response fault wins."""
        decision = GraphFaults()
        now = time.monotonic()
        with self._lock:
            rules = [*self._rules.get("*", ()), *self._rules.get(tenant_id, ())]
            if not rules:
                return decision
            for rule in rules:
                if rule.kind in LISTING_KINDS or rule.kind == "token_error":
                    continue
                if not rule.matches(policy_type):
                    continue
                if rule.kind == "latency":
                    if self._turn(rule):
                        decision.latency_ms += rule.params["ms"]
                        self._spend(rule, decision.applied)
                    continue
                if rule.kind == "rendezvous":
                    assert rule.rendezvous is not None
                    if rule.rendezvous.open and decision.rendezvous is None and self._turn(rule):
                        decision.rendezvous = rule.rendezvous
                        rule.applied += 1
                        decision.applied.append(rule.kind)
                    continue
                if decision.response is not None or not self._turn(rule):
                    continue
                if rule.kind == "rate_limit":
                    assert rule.bucket is not None
                    wait = rule.bucket.take(now)
                    if wait == 0.0:
                        continue
                    retry_after = max(1, math.ceil(wait)) if rule.params["retry_after"] else None
                    params = {
                        "retry_after": retry_after,
                        "intune_json_message": rule.params["intune_json_message"],
                    }
                    decision.response = ResponseFault("throttle", params, "rate_limit")
                else:
                    decision.response = ResponseFault(rule.kind, rule.params, rule.kind)
                self._spend(rule, decision.applied)
            if decision.response is None and first_page:
                for rule in rules:
                    if rule.kind not in LISTING_KINDS or not rule.matches(policy_type):
                        continue
                    if not self._turn(rule):
                        continue
                    if rule.kind == "empty_pages":
                        decision.empty_pages = max(decision.empty_pages, rule.params["pages"])
                    elif rule.kind == "duplicate_across_pages":
                        decision.duplicate = True
                    elif rule.kind == "repeat_next_link":
                        decision.repeat_next_link = True
                    else:
                        decision.missing_ids += rule.params["items"]
                    self._spend(rule, decision.applied)
            self._prune(("*", tenant_id))
        return decision

    def decide_token(self, tenant_id: str) -> FaultRule | None:
        """The token_error rule that fails this token request, if any."""
        with self._lock:
            for rule in [*self._rules.get("*", ()), *self._rules.get(tenant_id, ())]:
                if rule.kind == "token_error" and self._turn(rule):
                    self._spend(rule, [])
                    self._prune(("*", tenant_id))
                    return rule
        return None
