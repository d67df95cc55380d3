"""The demo's tenants and what happens to them between their first and later syncs.

A demo in which nothing changes reports nothing missing, which shows nothing. So once a
tenant's first syncs are done (every selection finished, none running), its changes are
applied to the simulator, as an admin or a lost permission would between two nightly runs,
and the demo's frequent refresh shows what the inventory makes of them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import httpx
from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from inventory_pipelines.core.policy_types import POLICY_TYPES_BY_KEY
from inventory_pipelines.core.schema import sync_runs
from inventory_pipelines.core.store import COMPLETED_STATUSES
from inventory_pipelines.core.tenancy import tenant_transaction
from inventory_pipelines.simulator.control import SimulatorControl, SimulatorControlError

Action = Callable[[SimulatorControl, str], str]
"""Changes one tenant in the simulator and says what it did."""

CONSENT_REVOKED_AADSTS = 65001
"""AADSTS65001: the user or administrator has not consented to use the application."""

POLICY_READ_ALL_TYPES = (
    "conditional_access_policies",
    "named_locations",
    "authentication_strengths",
    "authentication_contexts",
)
"""The conditional-access collections that need the Policy.Read.All permission."""


def delete_items(counts: Mapping[str, int]) -> Action:
    """Delete that many items per type, as an admin tidying up the portal would."""

    def act(control: SimulatorControl, tenant_id: str) -> str:
        deleted = []
        for policy_type, count in counts.items():
            ids = sorted(item["id"] for item in control.items(tenant_id, policy_type))[:count]
            control.delete_items(tenant_id, policy_type, ids)
            deleted.append(f"{len(ids)} {POLICY_TYPES_BY_KEY[policy_type].label.lower()}")
        return "deleted " + " and ".join(deleted)

    return act


def edit_items(counts: Mapping[str, int]) -> Action:
    """Edit that many items per type (new name and description, version + 1), as an admin
    would in the portal: the next syncs record them as `changed` in the change feed."""

    def act(control: SimulatorControl, tenant_id: str) -> str:
        edited = []
        for policy_type, count in counts.items():
            ids = sorted(item["id"] for item in control.items(tenant_id, policy_type))[-count:]
            control.modify_items(tenant_id, policy_type, ids)
            edited.append(f"{len(ids)} {POLICY_TYPES_BY_KEY[policy_type].label.lower()}")
        return "edited " + " and ".join(edited)

    return act


def forbid(permission: str, policy_types: Sequence[str]) -> Action:
    """403 on these types from now on: the app's permission for them was withdrawn."""

    def act(control: SimulatorControl, tenant_id: str) -> str:
        for policy_type in policy_types:
            control.add_fault(
                tenant_id,
                {
                    "kind": "status",
                    "status": 403,
                    "code": "Forbidden",
                    "message": "Insufficient privileges to complete the operation.",
                    "policy_type": policy_type,
                },
            )
        return f"withdrew {permission} (403 on {len(policy_types)} conditional-access types)"

    return act


def revoke_consent(aadsts: int = CONSENT_REVOKED_AADSTS) -> Action:
    """Every later token request fails with `aadsts`; tokens issued so far stop working."""

    def act(control: SimulatorControl, tenant_id: str) -> str:
        control.add_fault(tenant_id, {"kind": "token_error", "aadsts": aadsts})
        control.revoke_tokens(tenant_id)
        return f"revoked admin consent (token requests fail with AADSTS{aadsts})"

    return act


@dataclass(frozen=True)
class DemoTenant:
    """One demo tenant: registry entry, its story for the announcement, its later changes."""

    tenant_id: str
    key: str
    name: str
    story: str
    changes: tuple[Action, ...] = ()
    consequence: str = ""

    def apply(self, control: SimulatorControl) -> str:
        """Apply every change; the line says what was done and what the next syncs show."""
        done = " and ".join(action(control, self.tenant_id) for action in self.changes)
        return f"{self.name}: {done}; {self.consequence}"


DEMO_TENANTS: tuple[DemoTenant, ...] = (
    DemoTenant(
        "dec00001-0000-4000-8000-000000000001",
        "contoso",
        "Contoso",
        "large (~2,000 items); after its first syncs 5 settings catalog and 3 compliance "
        "policies are deleted and 4 device configurations edited, so the next syncs report "
        "the deleted ones missing with confidence high and the change feed shows them "
        "went_missing and the edited ones changed",
        (
            delete_items({"settings_catalog_policies": 5, "compliance_policies": 3}),
            edit_items({"device_configurations": 4}),
        ),
        "the next syncs report the deleted ones missing (not_observed, confidence high) and "
        "the edited ones changed",
    ),
    DemoTenant(
        "dec00002-0000-4000-8000-000000000002",
        "fabrikam",
        "Fabrikam",
        "throttled on every sync that holds apps, settings catalog or compliance policies "
        "(rate limits with and without Retry-After); its syncs still succeed, with retries "
        "and throttle waits in the run metadata and log",
    ),
    DemoTenant(
        "dec00003-0000-4000-8000-000000000003",
        "northwind",
        "Northwind",
        "after its first syncs the app loses Policy.Read.All: 403 on conditional access, so "
        "those syncs end partial and its conditional-access items become type_not_fetched, "
        "confidence low",
        (forbid("Policy.Read.All", POLICY_READ_ALL_TYPES),),
        "the next syncs end partial and report those items type_not_fetched (confidence low)",
    ),
    DemoTenant(
        "dec00004-0000-4000-8000-000000000004",
        "litware",
        "Litware",
        "after its first syncs admin consent is revoked (AADSTS65001): every later sync "
        "fails and its items become type_not_fetched, confidence low",
        (revoke_consent(),),
        "the next syncs fail and report its items type_not_fetched (confidence low)",
    ),
)


def first_syncs_done(engine: Engine, tenant_id: str, selections: Iterable[str]) -> bool:
    """True once every selection has a finished sync and none of the tenant's is running,
    so a change lands between two syncs rather than in the middle of one."""
    with tenant_transaction(engine, tenant_id) as conn:
        rows = conn.execute(
            select(sync_runs.c.selection_name, sync_runs.c.status)
            .where(sync_runs.c.tenant_id == tenant_id)
            .distinct()
        ).all()
    finished = {name for name, status in rows if status in COMPLETED_STATUSES}
    running = any(status == "running" for _, status in rows)
    return not running and set(selections) <= finished


class DemoStory:
    """Applies each tenant's changes once, as soon as its first syncs are done."""

    def __init__(
        self,
        engine: Engine,
        control: SimulatorControl,
        tenants: Iterable[DemoTenant],
        selections: Iterable[str],
        *,
        say: Callable[[str], None] = print,
    ) -> None:
        self.engine = engine
        self.control = control
        self.selections = sorted(selections)
        self.pending = [tenant for tenant in tenants if tenant.changes]
        self._say = say

    @property
    def done(self) -> bool:
        return not self.pending

    def poll(self) -> list[DemoTenant]:
        """Apply the changes of every tenant that is ready; returns those tenants."""
        applied = []
        for tenant in list(self.pending):
            if not first_syncs_done(self.engine, tenant.tenant_id, self.selections):
                continue
            # At most once, even if it fails half-way: a retry would delete other items.
            self.pending.remove(tenant)
            line = tenant.apply(self.control)
            applied.append(tenant)
            self._say(f"[{time.strftime('%H:%M:%S')}] {line}")
        return applied

    def run(self, stop: threading.Event, interval: float = 1.0) -> None:
        """Poll until every change is applied or `stop` is set. A failing poll is reported
        once and retried: the story must never take the demo down."""
        last_error = ""
        while not self.done and not stop.wait(interval):
            try:
                self.poll()
            except (SQLAlchemyError, httpx.HTTPError, SimulatorControlError) as exc:
                error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                if error != last_error and not stop.is_set():
                    self._say(f"demo story: {error} (retrying)")
                last_error = error
