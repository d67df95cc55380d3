"""The registry of Intune policy types that inventory can fetch from Microsoft Graph.

Each type is pinned to one API version forever: v1.0 and beta return different sets for
the same path, so switching would make items look missing or new.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ApiVersion = Literal["v1.0", "beta"]
ThrottleClass = Literal["intune", "identity", "directory"]
"""Which Graph service limits apply: Intune's (per tenant and app, `Retry-After` on 429);
"identity", the "Identity protection and Conditional Access service limits" (1 request/s per
tenant for all apps together, 429 without `Retry-After`), paced up front by the client;
"directory", the other Entra ID collections, under Graph's general limits only."""


@dataclass(frozen=True)
class PolicyType:
    """One Graph collection that inventory reads.

    `max_top` is the largest `$top` the endpoint is believed to accept: the client starts
    there and learns a smaller size from Graph's refusal (`page_size.py`); None: send no
    `$top`. `server_page_size` is what Graph returns without `$top` (the simulator honours it).
    """

    key: str
    graph_path: str
    api_version: ApiVersion
    label: str
    name_field: str = "displayName"
    max_top: int | None = 999
    server_page_size: int = 1000
    throttle_class: ThrottleClass = "intune"

    @property
    def entra(self) -> bool:
        """An Entra ID collection (conditional access, terms of use), not an Intune one."""
        return self.graph_path.startswith(("identity/", "identityGovernance/"))

    def url_path(self) -> str:
        """Path below the Graph base URL, e.g. `/beta/deviceManagement/intents`."""
        return f"/{self.api_version}/{self.graph_path}"


def _intune(
    key: str,
    path: str,
    label: str,
    *,
    version: ApiVersion = "beta",
    name_field: str = "displayName",
    max_top: int | None = 999,
    server_page_size: int = 1000,
) -> PolicyType:
    return PolicyType(key, path, version, label, name_field, max_top, server_page_size, "intune")


def _entra(
    key: str,
    path: str,
    label: str,
    *,
    version: ApiVersion = "v1.0",
    throttle_class: ThrottleClass = "directory",
) -> PolicyType:
    # Entra ID collections: pages of 100 by default.
    return PolicyType(key, path, version, label, "displayName", 999, 100, throttle_class)


_DM = "deviceManagement"
_DAM = "deviceAppManagement"

POLICY_TYPES: tuple[PolicyType, ...] = (
    _intune(
        "device_configurations", f"{_DM}/deviceConfigurations", "Device configuration profiles"
    ),
    _intune("compliance_policies", f"{_DM}/deviceCompliancePolicies", "Compliance policies"),
    _intune(
        "settings_catalog_policies",
        f"{_DM}/configurationPolicies",
        "Settings catalog policies",
        name_field="name",
        server_page_size=25,
    ),
    _intune(
        "settings_catalog_compliance",
        f"{_DM}/compliancePolicies",
        "Settings catalog compliance policies",
        name_field="name",
        server_page_size=25,
    ),
    _intune(
        "administrative_templates",
        f"{_DM}/groupPolicyConfigurations",
        "Administrative templates",
    ),
    _intune("endpoint_security_intents", f"{_DM}/intents", "Endpoint security (intents)"),
    _intune(
        "autopilot_profiles",
        f"{_DM}/windowsAutopilotDeploymentProfiles",
        "Windows Autopilot deployment profiles",
    ),
    _intune(
        "enrollment_configurations",
        f"{_DM}/deviceEnrollmentConfigurations",
        "Enrollment configurations",
    ),
    _intune("platform_scripts", f"{_DM}/deviceManagementScripts", "Platform scripts (Windows)"),
    _intune("remediation_scripts", f"{_DM}/deviceHealthScripts", "Remediation scripts"),
    _intune("macos_shell_scripts", f"{_DM}/deviceShellScripts", "macOS shell scripts"),
    _intune(
        "macos_custom_attributes",
        f"{_DM}/deviceCustomAttributeShellScripts",
        "macOS custom attribute scripts",
    ),
    _intune("compliance_scripts", f"{_DM}/deviceComplianceScripts", "Compliance scripts"),
    _intune(
        "feature_update_profiles",
        f"{_DM}/windowsFeatureUpdateProfiles",
        "Windows feature update profiles",
        max_top=200,
    ),
    _intune(
        "quality_update_profiles",
        f"{_DM}/windowsQualityUpdateProfiles",
        "Windows quality update profiles",
        max_top=200,
    ),
    _intune(
        "quality_update_policies",
        f"{_DM}/windowsQualityUpdatePolicies",
        "Windows quality update policies",
        max_top=200,
    ),
    _intune(
        "driver_update_profiles",
        f"{_DM}/windowsDriverUpdateProfiles",
        "Windows driver update profiles",
        max_top=200,
    ),
    _intune("assignment_filters", f"{_DM}/assignmentFilters", "Assignment filters"),
    _intune("scope_tags", f"{_DM}/roleScopeTags", "Scope tags"),
    _intune("intune_roles", f"{_DM}/roleDefinitions", "Intune role definitions"),
    _intune("reusable_settings", f"{_DM}/reusablePolicySettings", "Reusable policy settings"),
    _intune(
        "notification_templates",
        f"{_DM}/notificationMessageTemplates",
        "Compliance notification templates",
    ),
    _intune("terms_and_conditions", f"{_DM}/termsAndConditions", "Terms and conditions"),
    _intune("branding_profiles", f"{_DM}/intuneBrandingProfiles", "Intune branding profiles"),
    _intune("device_categories", f"{_DM}/deviceCategories", "Device categories"),
    _intune(
        "apple_enrollment_profiles",
        f"{_DM}/appleUserInitiatedEnrollmentProfiles",
        "Apple user-initiated enrollment profiles",
    ),
    _intune(
        "windows365_provisioning_policies",
        f"{_DM}/virtualEndpoint/provisioningPolicies",
        "Windows 365 provisioning policies",
    ),
    _intune(
        "windows365_user_settings",
        f"{_DM}/virtualEndpoint/userSettings",
        "Windows 365 user settings",
    ),
    _intune(
        "hardware_configurations",
        f"{_DM}/hardwareConfigurations",
        "Hardware (BIOS) configurations",
    ),
    _intune(
        "remote_assistance_partners",
        f"{_DM}/remoteAssistancePartners",
        "Remote assistance partners",
    ),
    _intune("app_protection_policies", f"{_DAM}/managedAppPolicies", "App protection policies"),
    _intune(
        "app_configurations_devices",
        f"{_DAM}/mobileAppConfigurations",
        "App configuration policies (managed devices)",
    ),
    _intune(
        "app_configurations_apps",
        f"{_DAM}/targetedManagedAppConfigurations",
        "App configuration policies (managed apps)",
    ),
    _intune("mobile_apps", f"{_DAM}/mobileApps", "Mobile apps"),
    _intune("policy_sets", f"{_DAM}/policySets", "Policy sets"),
    _intune("vpp_tokens", f"{_DAM}/vppTokens", "Apple VPP tokens"),
    # Graph documents 1 request/s per tenant (all apps together, 429 without Retry-After) for
    # these two only, in "Identity protection and Conditional Access service limits" of the
    # "Microsoft Graph service-specific throttling limits" page (conditionalAccessPolicy,
    # namedLocation); the other Entra ID collections below are not on that list.
    _entra(
        "conditional_access_policies",
        "identity/conditionalAccess/policies",
        "Conditional access policies",
        throttle_class="identity",
    ),
    _entra(
        "named_locations",
        "identity/conditionalAccess/namedLocations",
        "Named locations",
        throttle_class="identity",
    ),
    _entra(
        "authentication_strengths",
        "identity/conditionalAccess/authenticationStrength/policies",
        "Authentication strengths",
    ),
    _entra(
        "authentication_contexts",
        "identity/conditionalAccess/authenticationContextClassReferences",
        "Authentication contexts",
    ),
    _entra("terms_of_use", "identityGovernance/termsOfUse/agreements", "Terms of use agreements"),
)

POLICY_TYPES_BY_KEY: dict[str, PolicyType] = {p.key: p for p in POLICY_TYPES}


class UnknownPolicyTypeError(ValueError):
    """A policy type key that is not in the registry."""


def get_policy_type(key: str) -> PolicyType:
    """Look up a registry entry, naming the unknown key and where to find valid ones."""
    try:
        return POLICY_TYPES_BY_KEY[key]
    except KeyError:
        raise UnknownPolicyTypeError(
            f"unknown policy type {key!r}; run `inventory-pipelines policy-types` for the list"
        ) from None


def all_policy_type_keys() -> list[str]:
    return sorted(POLICY_TYPES_BY_KEY)
