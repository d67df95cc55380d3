"""The Kubernetes values run Graph syncs under Entra workload identity, holding no secret."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

VALUES = Path(__file__).resolve().parents[1] / "deploy" / "kubernetes" / "values.yaml"
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
