"""The Kubernetes values run Graph syncs under Entra workload identity, holding no secret, with
the limits of dagster.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

VALUES = Path(__file__).resolve().parents[1] / "deploy" / "kubernetes" / "values.yaml"
DAGSTER_YAML = Path(__file__).resolve().parents[1] / "dagster.yaml"
TOKEN_FILE = "/var/run/secrets/azure/tokens/azure-identity-token"


def values() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(VALUES.read_text())
    return loaded


def test_code_server_and_runs_use_the_workload_identity_service_account() -> None:
    user = values()["dagster-user-deployments"]
    account = user["serviceAccount"]
    assert account["annotations"]["azure.workload.identity/client-id"]
    [deployment] = user["deployments"]
    assert deployment["labels"]["azure.workload.identity/use"] == "true"
    assert deployment["env"]["GRAPH_FEDERATED_TOKEN_FILE"] == TOKEN_FILE
    launcher = values()["runLauncher"]["config"]["k8sRunLauncher"]
    run_pods = launcher["runK8sConfig"]
    assert run_pods["podSpecConfig"]["serviceAccountName"] == account["name"]
    assert run_pods["podTemplateSpecMetadata"]["labels"]["azure.workload.identity/use"] == "true"
    assert f"GRAPH_FEDERATED_TOKEN_FILE={TOKEN_FILE}" in launcher["envVars"]


def test_no_graph_secret_is_referenced() -> None:
    text = VALUES.read_text()
    assert "GRAPH_CLIENT_SECRET=" not in text and "inventory-pipelines-graph" not in text
    secrets = values()["runLauncher"]["config"]["k8sRunLauncher"]["envSecrets"]
    assert [s["name"] for s in secrets] == ["inventory-pipelines-database"]


def test_the_chart_enforces_the_limits_of_dagster_yaml() -> None:
    """Runs in progress, runs per tenant, the pool limit and its granularity are dagster.yaml's,
    set once: the chart refuses a run limit given both here and under the run coordinator."""
    shipped = yaml.safe_load(DAGSTER_YAML.read_text())["concurrency"]
    chart = values()["concurrency"]
    assert chart["enabled"] is True
    assert chart["runs"]["maxConcurrentRuns"] == shipped["runs"]["max_concurrent_runs"]
    assert chart["runs"]["tagConcurrencyLimits"] == shipped["runs"]["tag_concurrency_limits"]
    assert chart["pools"] == {
        "defaultLimit": shipped["pools"]["default_limit"],
        "granularity": shipped["pools"]["granularity"],
    }
    coordinator = values()["dagsterDaemon"]["runCoordinator"]
    assert coordinator["type"] == "QueuedRunCoordinator"
    queued = coordinator["config"]["queuedRunCoordinator"]
    assert not {"maxConcurrentRuns", "tagConcurrencyLimits"} & set(queued)
    polling = yaml.safe_load(DAGSTER_YAML.read_text())["run_coordinator"]["config"]
    assert queued == {
        "dequeueIntervalSeconds": polling["dequeue_interval_seconds"],
        "dequeueUseThreads": polling["dequeue_use_threads"],
        "dequeueNumWorkers": polling["dequeue_num_workers"],
    }
