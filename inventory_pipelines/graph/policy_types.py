"""The policy-type registry under its former import path; it lives in `core/policy_types.py`.

`simulator/faults.py` still imports it from here; once that import names `core`, this module
goes.
"""

from __future__ import annotations

from inventory_pipelines.core.policy_types import (
    POLICY_TYPES,
    POLICY_TYPES_BY_KEY,
    ApiVersion,
    PolicyType,
    ThrottleClass,
    UnknownPolicyTypeError,
    all_policy_type_keys,
    get_policy_type,
)

__all__ = [
    "POLICY_TYPES",
    "POLICY_TYPES_BY_KEY",
    "ApiVersion",
    "PolicyType",
    "ThrottleClass",
    "UnknownPolicyTypeError",
    "all_policy_type_keys",
    "get_policy_type",
]
