"""What the Graph client did lands in the run's event log (the UI's log view), redacted.

The instance gets the `python_logs` section of the repository's own dagster.yaml, so the test
fails when that file stops managing the project's loggers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import yaml

from inventory_pipelines.assets import inventory_items
from inventory_pipelines.partitions import partition_key
from inventory_pipelines.simulator import SIMULATOR_CLIENT_SECRET, SimulatorServer
from inventory_pipelines_tests.dagster.fixtures import TENANT, resources

__all__ = ["resources"]  # fixture

REPO = Path(__file__).resolve().parents[2]
SELECTION = "compliance"


@pytest.fixture
def logging_instance() -> Iterator[dg.DagsterInstance]:
    shipped = yaml.safe_load((REPO / "dagster.yaml").read_text())
    with dg.instance_for_test(overrides={"python_logs": shipped["python_logs"]}) as instance:
        instance.add_dynamic_partitions("tenant", [TENANT])
        instance.add_dynamic_partitions("selection", [SELECTION])
        yield instance


def test_throttle_waits_retries_and_type_failures_appear_in_the_run_log(
    logging_instance: dg.DagsterInstance, resources: dict[str, object], sim: SimulatorServer
) -> None:
    sim.control.set_faults(
        TENANT,
        [
            {
                "kind": "throttle",
                "policy_type": "compliance_policies",
                "retry_after": 1,
                "count": 1,
            },
            {"kind": "status", "status": 503, "policy_type": "compliance_scripts", "count": 1},
            {"kind": "status", "status": 403, "policy_type": "settings_catalog_compliance"},
        ],
    )
    result = dg.materialize(
        [inventory_items],
        partition_key=partition_key(TENANT, SELECTION),
        instance=logging_instance,
        resources=resources,
        raise_on_error=False,
    )
    assert not result.success  # partial: the forbidden type fails the run, loudly
    messages = [
        (record.level, record.user_message)
        for record in logging_instance.all_logs(result.run_id)
        if record.dagster_event is None
    ]
    text = "\n".join(message for _, message in messages)
    # The 429 and its Retry-After, the 503 retried with backoff, the forbidden type, and the
    # summary line of the sync: all in the run's own log.
    assert "compliance_policies" in text and "Retry-After 1s" in text, text
    assert "HTTP 503" in text
    assert any(
        level >= 30 and "settings_catalog_compliance" in message and "HTTP 403" in message
        for level, message in messages
    ), messages
    assert "partial" in text
    assert SIMULATOR_CLIENT_SECRET not in text
    assert "Bearer " not in text
