"""Deterministic, realistic Graph objects for one (tenant, policy type).

Everything derives from a seed through `random.Random` streams (never Python's salted
`hash()`), so the same tenant and configuration give byte-identical items across restarts.
Items are drawn sequentially: a larger size keeps the smaller size's items as its prefix.
"""

from __future__ import annotations

import hashlib
import random
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from inventory_pipelines.core.policy_types import PolicyType
from inventory_pipelines.simulator.identifiers import parse_utc_iso, utc_iso

Item = dict[str, Any]
Extras = Callable[[random.Random, int], Item]

_CREATED_FROM = 1_546_300_800.0  # 2019-01-01T00:00:00Z
_CREATED_SPAN = 6.4 * 365 * 86_400  # up to mid-2025
_MODIFIED_SPAN = 400 * 86_400

LONG_STRING_EVERY = 200
"""Generated item `i` carries a > 10 kB string when `i % LONG_STRING_EVERY == LONG_STRING_AT`."""
LONG_STRING_AT = 7
UNICODE_NAME_AT = 2
"""Generated item at this index always has a non-ASCII name, so small sets exercise unicode."""

UNICODE_NAMES = (
    "Richtlinie – Geräte ✓",
    "デバイス構成 – 東京オフィス",
    "设备合规策略（北京）",
    "Política – Dispositivos móviles Ñandú",
    "Політика безпеки – Київ",
    "Ρύθμιση συσκευών – Αθήνα",
    "🔒 BitLocker – Ünïcödé",
    "سياسة الأجهزة – الرياض",
    "장치 구성 – 서울",
)
_PREFIXES = ("CORP", "Contoso", "WIN", "iOS", "MAC", "AND", "TEST", "EU", "US", "Fabrikam")
_AREAS = (
    "Baseline",
    "Wi-Fi",
    "VPN",
    "BitLocker",
    "Defender",
    "Edge",
    "OneDrive",
    "Kiosk",
    "Passwords",
    "Updates",
    "Certificates",
    "Firewall",
    "LAPS",
    "Office",
    "Privacy",
)
_RINGS = ("Pilot", "Prod", "Ring 0", "Ring 1", "Broad", "Test", "VIP", "Shared devices")
_APP_NAMES = (
    "Microsoft Teams",
    "Company Portal",
    "Adobe Acrobat Reader DC",
    "Google Chrome",
    "7-Zip",
    "Zoom Workplace",
    "Slack",
    "Microsoft Edge",
    "Microsoft 365 Apps for enterprise",
    "Notepad++",
    "Visual Studio Code",
    "Microsoft Outlook",
    "Microsoft Authenticator",
    "Mozilla Firefox",
    "VLC media player",
    "Citrix Workspace",
    "Cisco Secure Client",
    "Power BI Desktop",
    "Microsoft To Do",
    "WinRAR",
    "Greenshot",
    "KeePassXC",
    "Webex",
)
_CA_TEMPLATES = (
    "Require MFA for administrators",
    "Block legacy authentication",
    "Require compliant device",
    "Require MFA for Azure management",
    "Block access by location",
    "Require app protection policy",
    "Sign-in risk requires MFA",
    "Session lifetime 12h",
)
_LONG_TEXT = (
    "Sicherheitsrichtlinie für verwaltete Geräte – bitte nicht ändern. "
    "This baseline was exported from the production tenant and documents every setting. "
)


def _guid(rng: random.Random) -> str:
    """A version-4 GUID from the stream (string formatting: 4x faster than `uuid.UUID`)."""
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def _between(rng: random.Random, low: int, high: int) -> int:
    """`rng.randint` (inclusive) without its overhead."""
    return low + int(rng.random() * (high - low + 1))


def _pick(rng: random.Random, options: tuple[Any, ...]) -> Any:
    """`rng.choice` without its per-call overhead (hot path for 100k-item collections)."""
    return options[int(rng.random() * len(options))]


@dataclass(frozen=True)
class TypeShape:
    """How items of one policy type look: derived `@odata.type`s (polymorphic lists only)."""

    odata_types: tuple[str, ...] = ()
    extras: Extras | None = None
    has_version: bool = True
    modified_field: str | None = "lastModifiedDateTime"
    created_field: str | None = "createdDateTime"
    identity_style: bool = False
    id_style: str = "guid"  # "guid", "numeric" (scope tags) or "context" (auth contexts c1, c2…)
    long_field: str = "description"


def _odata(*names: str) -> tuple[str, ...]:
    return tuple(f"#microsoft.graph.{n}" for n in names)


def _settings_catalog(rng: random.Random, index: int) -> Item:
    template = (
        {
            "templateId": "804339ad-1553-4478-a742-138fb5807418_1",
            "templateFamily": "endpointSecurityAntivirus",
            "templateDisplayName": "Microsoft Defender Antivirus",
            "templateDisplayVersion": "Version 1",
        }
        if rng.random() < 0.2
        else {
            "templateId": "",
            "templateFamily": "none",
            "templateDisplayName": None,
            "templateDisplayVersion": None,
        }
    )
    return {
        "platforms": _pick(rng, ("windows10", "macOS", "iOS", "android", "linux")),
        "technologies": _pick(rng, ("mdm", "mdm,microsoftSense", "configManager", "mdm")),
        "settingCount": _between(rng, 1, 60),
        "creationSource": None,
        "isAssigned": rng.random() < 0.7,
        "priorityMetaData": None,
        "templateReference": template,
    }


def _scripts(rng: random.Random, index: int) -> Item:
    return {
        "fileName": f"script-{index:04d}.ps1",
        "runAsAccount": _pick(rng, ("system", "user")),
        "enforceSignatureCheck": rng.random() < 0.3,
        "runAs32Bit": rng.random() < 0.2,
        "scriptContent": None,
    }


def _update_profile(rng: random.Random, index: int) -> Item:
    return {
        "featureUpdateVersion": _pick(
            rng,
            ("Windows 11, version 23H2", "Windows 11, version 24H2", "Windows 10, version 22H2"),
        ),
        "rolloutSettings": {"offerStartDateTimeInUTC": None, "offerEndDateTimeInUTC": None},
        "endOfSupportDate": "2026-11-10T00:00:00Z",
        "installLatestWindows10OnWindows11IneligibleDevice": False,
    }


def _assignment_filter(rng: random.Random, index: int) -> Item:
    return {
        "platform": _pick(rng, ("windows10AndLater", "iOS", "androidForWork", "macOS")),
        "rule": f'(device.deviceName -startsWith "LAB-{index:03d}")',
        "assignmentFilterManagementType": _pick(rng, ("devices", "apps")),
    }


def _mobile_app(rng: random.Random, index: int) -> Item:
    return {
        "publisher": _pick(rng, ("Microsoft Corporation", "Google LLC", "Adobe", "Contoso IT")),
        "largeIcon": None,
        "isFeatured": rng.random() < 0.1,
        "privacyInformationUrl": None,
        "informationUrl": _pick(rng, (None, "https://www.example.com/app")),
        "owner": "",
        "developer": "",
        "notes": "",
        "publishingState": "published",
        "isAssigned": rng.random() < 0.6,
        "dependentAppCount": 0,
        "supersedingAppCount": _between(rng, 0, 2),
        "supersededAppCount": 0,
    }


def _conditional_access(rng: random.Random, index: int) -> Item:
    return {
        "state": _pick(rng, ("enabled", "disabled", "enabledForReportingButNotEnforced")),
        "templateId": None,
        "conditions": {
            "clientAppTypes": ["all"],
            "users": {"includeUsers": ["All"], "excludeUsers": [], "excludeGroups": []},
            "applications": {"includeApplications": ["All"], "excludeApplications": []},
            "locations": None,
            "platforms": None,
        },
        "grantControls": {"operator": "OR", "builtInControls": ["mfa"]},
        "sessionControls": None,
    }


def _named_location(rng: random.Random, index: int) -> Item:
    return {"isTrusted": rng.random() < 0.5}


def _role_definition(rng: random.Random, index: int) -> Item:
    return {
        "isBuiltIn": False,
        "rolePermissions": [
            {"resourceActions": [{"allowedResourceActions": ["Microsoft.Intune_Read"]}]}
        ],
    }


def _intent(rng: random.Random, index: int) -> Item:
    return {
        "templateId": _pick(
            rng, ("e44c2ca3-2f9a-400a-a113-6cc88efd773d", "d1174162-1dd2-4976-affc-6667049ab0ae")
        ),
        "isAssigned": rng.random() < 0.5,
        "isMigratingToConfigurationPolicy": False,
    }


def _enrollment(rng: random.Random, index: int) -> Item:
    return {"priority": index + 1, "deviceEnrollmentConfigurationType": "limit", "limit": 5}


SHAPES: dict[str, TypeShape] = {
    "device_configurations": TypeShape(
        _odata(
            "windows10GeneralConfiguration",
            "windows10CustomConfiguration",
            "windowsHealthMonitoringConfiguration",
            "iosGeneralDeviceConfiguration",
            "iosDeviceFeaturesConfiguration",
            "androidWorkProfileGeneralDeviceConfiguration",
            "macOSCustomConfiguration",
            "windowsUpdateForBusinessConfiguration",
            "windows10EndpointProtectionConfiguration",
        )
    ),
    "compliance_policies": TypeShape(
        _odata(
            "windows10CompliancePolicy",
            "iosCompliancePolicy",
            "androidWorkProfileCompliancePolicy",
            "macOSCompliancePolicy",
            "aospDeviceOwnerCompliancePolicy",
        )
    ),
    "settings_catalog_policies": TypeShape(extras=_settings_catalog, has_version=False),
    "settings_catalog_compliance": TypeShape(extras=_settings_catalog, has_version=False),
    "endpoint_security_intents": TypeShape(extras=_intent),
    "autopilot_profiles": TypeShape(
        _odata(
            "azureADWindowsAutopilotDeploymentProfile",
            "activeDirectoryWindowsAutopilotDeploymentProfile",
        )
    ),
    "enrollment_configurations": TypeShape(
        _odata(
            "deviceEnrollmentLimitConfiguration",
            "deviceEnrollmentPlatformRestrictionsConfiguration",
            "deviceEnrollmentWindowsHelloForBusinessConfiguration",
            "windows10EnrollmentCompletionPageConfiguration",
        ),
        extras=_enrollment,
    ),
    "platform_scripts": TypeShape(extras=_scripts, long_field="scriptContent"),
    "remediation_scripts": TypeShape(extras=_scripts, long_field="detectionScriptContent"),
    "macos_shell_scripts": TypeShape(extras=_scripts, long_field="scriptContent"),
    "macos_custom_attributes": TypeShape(extras=_scripts, long_field="scriptContent"),
    "compliance_scripts": TypeShape(extras=_scripts, long_field="detectionScriptContent"),
    "feature_update_profiles": TypeShape(extras=_update_profile),
    "assignment_filters": TypeShape(extras=_assignment_filter, has_version=False),
    "scope_tags": TypeShape(
        has_version=False, id_style="numeric", created_field=None, modified_field=None
    ),
    "intune_roles": TypeShape(
        extras=_role_definition, has_version=False, created_field=None, modified_field=None
    ),
    "app_protection_policies": TypeShape(
        _odata(
            "iosManagedAppProtection",
            "androidManagedAppProtection",
            "windowsManagedAppProtection",
            "mdmWindowsInformationProtectionPolicy",
            "windowsInformationProtectionPolicy",
        )
    ),
    "app_configurations_devices": TypeShape(
        _odata("iosMobileAppConfiguration", "androidManagedStoreAppConfiguration")
    ),
    "mobile_apps": TypeShape(
        _odata(
            "win32LobApp",
            "winGetApp",
            "officeSuiteApp",
            "iosStoreApp",
            "iosVppApp",
            "androidManagedStoreApp",
            "managedAndroidStoreApp",
            "macOSLobApp",
            "webApp",
            "microsoftStoreForBusinessApp",
            "windowsMicrosoftEdgeApp",
        ),
        extras=_mobile_app,
        has_version=False,
    ),
    "conditional_access_policies": TypeShape(
        extras=_conditional_access,
        has_version=False,
        modified_field="modifiedDateTime",
        identity_style=True,
    ),
    "named_locations": TypeShape(
        _odata("ipNamedLocation", "countryNamedLocation"),
        extras=_named_location,
        has_version=False,
        modified_field="modifiedDateTime",
        identity_style=True,
    ),
    "authentication_strengths": TypeShape(
        has_version=False, modified_field="modifiedDateTime", identity_style=True
    ),
    "authentication_contexts": TypeShape(
        has_version=False,
        modified_field=None,
        created_field=None,
        identity_style=True,
        id_style="context",
    ),
    "terms_of_use": TypeShape(has_version=False, modified_field=None, identity_style=True),
}
_DEFAULT_SHAPE = TypeShape()
_IDENTITY_DEFAULT = TypeShape(
    has_version=False, modified_field="modifiedDateTime", identity_style=True
)


def shape_for(policy_type: PolicyType) -> TypeShape:
    """The item shape of a registry type (a plain Intune shape when nothing special applies)."""
    if policy_type.key in SHAPES:
        return SHAPES[policy_type.key]
    return _IDENTITY_DEFAULT if policy_type.entra else _DEFAULT_SHAPE


def seed_for_tenant(tenant_id: str) -> int:
    """Default seed of a tenant: stable across processes (unlike the salted built-in `hash`)."""
    return int.from_bytes(hashlib.sha256(tenant_id.encode()).digest()[:8], "big") >> 1


def stream_rng(seed: int, *parts: str) -> random.Random:
    """An independent deterministic random stream for (seed, parts)."""
    digest = hashlib.sha256(":".join((str(seed), *parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:16], "big"))


def default_size(seed: int, policy_type: PolicyType) -> int:
    """A small realistic spread: a long tail of 0–20 items, more apps and catalog policies."""
    rng = stream_rng(seed, policy_type.key, "size")
    key = policy_type.key
    if key == "mobile_apps":
        return rng.randint(30, 90)
    if key in ("settings_catalog_policies", "device_configurations", "compliance_policies"):
        return rng.randint(8, 45)
    return rng.randint(0, 20)


_BUILTIN_ROLES = (
    "Policy and Profile manager",
    "School Administrator",
    "Help Desk Operator",
    "Application Manager",
    "Read Only Operator",
    "Intune Role Administrator",
    "Endpoint Security Manager",
    "Endpoint Privilege Manager",
)
_BUILTIN_STRENGTHS = (
    ("00000000-0000-0000-0000-000000000002", "Multifactor authentication"),
    ("00000000-0000-0000-0000-000000000003", "Passwordless MFA"),
    ("00000000-0000-0000-0000-000000000004", "Phishing-resistant MFA"),
)
_BUILTIN_ENROLLMENT = (
    ("DefaultLimit", "deviceEnrollmentLimitConfiguration", "Device Limit Restriction"),
    (
        "DefaultPlatformRestrictions",
        "deviceEnrollmentPlatformRestrictionsConfiguration",
        "Platform Restriction",
    ),
    (
        "DefaultWindowsHelloForBusiness",
        "deviceEnrollmentWindowsHelloForBusinessConfiguration",
        "Windows Hello for Business",
    ),
    (
        "DefaultWindows10EnrollmentCompletionPageConfiguration",
        "windows10EnrollmentCompletionPageConfiguration",
        "Enrollment Status Page",
    ),
)
_REV_SUFFIX = re.compile(r" \(rev \d+\)$")


class ItemFactory:
    """Builds the items of one (tenant, policy type) from one random stream.

    `stream` separates the base collection from later `add_items` batches so that adding
    items never changes the ones already generated.
    """

    def __init__(self, seed: int, policy_type: PolicyType, stream: str = "base") -> None:
        self.seed = seed
        self.policy_type = policy_type
        self.shape = shape_for(policy_type)
        self._rng = stream_rng(seed, policy_type.key, stream)
        self._base_epoch = _CREATED_FROM
        self._long_text = (_LONG_TEXT * (12_000 // len(_LONG_TEXT) + 1))[:12_000]

    def builtins(self) -> list[Item]:
        """Items Graph ships in every tenant (default enrollment restrictions, tag "Default"…)."""
        key = self.policy_type.key
        rng = stream_rng(self.seed, key, "builtins")
        stamp = utc_iso(_CREATED_FROM + rng.random() * 86_400 * 30)
        if key == "enrollment_configurations":
            prefix = _guid(rng)
            return [
                {
                    "@odata.type": f"#microsoft.graph.{odata}",
                    "id": f"{prefix}_{suffix}",
                    "displayName": "All users and all devices",
                    "description": f"This is the default {label} applied with the lowest "
                    "priority to all users regardless of group membership.",
                    "priority": 0,
                    "createdDateTime": stamp,
                    "lastModifiedDateTime": stamp,
                    "version": 1,
                    "roleScopeTagIds": ["0"],
                    "deviceEnrollmentConfigurationType": suffix[7:8].lower() + suffix[8:],
                }
                for suffix, odata, label in _BUILTIN_ENROLLMENT
            ]
        if key == "scope_tags":
            return [
                {
                    "id": "0",
                    "displayName": "Default",
                    "description": "Built-in scope tag",
                    "isBuiltIn": True,
                }
            ]
        if key == "intune_roles":
            return [
                {
                    "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"intune-role:{name}")),
                    "displayName": name,
                    "description": f"{name} built-in role",
                    "isBuiltIn": True,
                    "roleScopeTagIds": ["0"],
                    "rolePermissions": [],
                }
                for name in _BUILTIN_ROLES
            ]
        if key == "authentication_strengths":
            return [
                {
                    "id": strength_id,
                    "displayName": name,
                    "description": f"Built-in: {name}",
                    "policyType": "builtIn",
                    "requirementsSatisfied": "mfa",
                    "allowedCombinations": ["windowsHelloForBusiness", "fido2"],
                    "createdDateTime": "2021-12-01T00:00:00Z",
                    "modifiedDateTime": "2021-12-01T00:00:00Z",
                }
                for strength_id, name in _BUILTIN_STRENGTHS
            ]
        if key == "branding_profiles":
            return [
                {
                    "id": _guid(rng),
                    "displayName": "Default",
                    "description": None,
                    "isDefaultProfile": True,
                    "createdDateTime": stamp,
                    "lastModifiedDateTime": stamp,
                    "version": 1,
                    "roleScopeTagIds": ["0"],
                }
            ]
        return []

    def items(self, size: int) -> list[Item]:
        """The first `size` items: built-ins first, then generated ones."""
        builtins = self.builtins()[:size]
        return builtins + [self.generated(i) for i in range(size - len(builtins))]

    def _name(self, rng: random.Random, index: int) -> str:
        if index == UNICODE_NAME_AT or rng.random() < 0.06:
            return f"{_pick(rng, UNICODE_NAMES)} {index}"
        key = self.policy_type.key
        if key == "mobile_apps":
            app = _APP_NAMES[index % len(_APP_NAMES)]
            return app if index < len(_APP_NAMES) else f"{app} {index // len(_APP_NAMES) + 1}"
        if key == "conditional_access_policies":
            return f"CA{index + 1:03d} - {_pick(rng, _CA_TEMPLATES)}"
        prefix, area, ring = _pick(rng, _PREFIXES), _pick(rng, _AREAS), _pick(rng, _RINGS)
        return f"{prefix} - {area} - {ring} {index:03d}"

    def generated(self, index: int, *, now: float | None = None) -> Item:
        """Generated item number `index` (the stream must be consumed in index order)."""
        rng = self._rng
        shape = self.shape
        item: Item = {}
        if shape.odata_types:
            item["@odata.type"] = _pick(rng, shape.odata_types)
        if shape.id_style == "numeric":
            item["id"] = str(index + 1)
        elif shape.id_style == "context":
            item["id"] = f"c{index + 1}"
        else:
            item["id"] = _guid(rng)
        item[self.policy_type.name_field] = self._name(rng, index)
        roll = rng.random()
        item["description"] = (
            None if roll < 0.3 else "" if roll < 0.4 else f"Managed by IT, ticket #{index + 1000}"
        )
        created = now if now is not None else self._base_epoch + rng.random() * _CREATED_SPAN
        modified = created if now is not None else created + rng.random() * _MODIFIED_SPAN
        digits = 0 if shape.identity_style and rng.random() < 0.5 else 7
        if shape.created_field:
            item[shape.created_field] = utc_iso(created, fraction_digits=digits)
        if shape.modified_field:
            never_modified = shape.identity_style and rng.random() < 0.2 and now is None
            item[shape.modified_field] = (
                None if never_modified else utc_iso(modified, fraction_digits=digits)
            )
        if shape.has_version:
            item["version"] = _between(rng, 1, 12)
        if not shape.identity_style:
            tags = ["0"] if rng.random() < 0.8 else ["0", str(_between(rng, 1, 9))]
            item["roleScopeTagIds"] = tags
            item["supportsScopeTags"] = True
        if shape.extras is not None:
            item.update(shape.extras(rng, index))
        if rng.random() < 0.1:
            item[_pick(rng, ("deploymentHealth", "tagsV2", "previewFlags"))] = {
                "unknownNested": [1, None, {"deep": "value"}],
                "since": "2025-01-01",
            }
        if index % LONG_STRING_EVERY == LONG_STRING_AT:
            item[shape.long_field] = self._long_text
        return item

    def without_id(self, index: int) -> Item:
        """An otherwise normal item lacking `id` (Graph has returned such objects)."""
        item = self.generated(index)
        del item["id"]
        return item

    def modified(self, item: Item, now: float) -> Item:
        """A copy edited in the portal: new name and description, later timestamp, version+1."""
        changed = dict(item)
        name_field = self.policy_type.name_field
        revision = int(changed.get("version") or 0) + 1
        match = re.search(r" \(rev (\d+)\)$", str(changed.get(name_field, "")))
        if match:
            revision = max(revision, int(match.group(1)) + 1)
        base_name = _REV_SUFFIX.sub("", str(changed.get(name_field, "")))
        changed[name_field] = f"{base_name} (rev {revision})"
        changed["description"] = f"Edited (revision {revision})"
        if "version" in changed:
            changed["version"] = revision
        field = self.shape.modified_field
        if field:
            digits = 7 if not self.shape.identity_style else 0
            previous = changed.get(field)
            if isinstance(previous, str):
                # Strictly later than before, even when edited twice within one second.
                now = max(now, parse_utc_iso(previous) + (1.0 if digits == 0 else 0.001))
            changed[field] = utc_iso(now, fraction_digits=digits)
        return changed
