"""The Celery deployment variant's files: `dagster.celery.yaml` holds exactly the limits of
`dagster.yaml` and the storage of `dagster.postgres.yaml`; its run launcher, compute logs and
the worker's settings (`deploy/celery/worker.yaml`) come from the environment the README lists.
No broker or database is needed: nothing here connects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster._core.launcher import RunLauncher
from dagster._core.storage.local_compute_log_manager import LocalComputeLogManager
from dagster._serdes import ConfigurableClassData
from dagster_celery.cli import get_validated_config

from inventory_pipelines.celery_stack import CELERY_DAGSTER_YAML, CELERY_WORKER_YAML
from inventory_pipelines_tests.celery_journal import read_journal

REPO = Path(__file__).resolve().parents[1]
BROKER = "amqp://inventory:s3cret@rabbitmq.internal:5672/inventory"
BACKEND = "db+postgresql+psycopg2://dagster:s3cret@db.internal:5432/dagster"


def _load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / name).read_text())
    return loaded


@pytest.fixture
def celery_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("DAGSTER_CELERY_BROKER_URL", BROKER)
    monkeypatch.setenv("DAGSTER_CELERY_BACKEND_URL", BACKEND)
    monkeypatch.setenv("DAGSTER_COMPUTE_LOGS_DIR", str(tmp_path / "shared"))
    return tmp_path / "shared"


def test_celery_config_has_the_limits_of_dagster_yaml_and_the_postgres_storage() -> None:
    celery = _load("dagster.celery.yaml")
    assert CELERY_DAGSTER_YAML == REPO / "dagster.celery.yaml"
    launcher = celery.pop("run_launcher")
    celery.pop("compute_logs")
    storage = celery.pop("storage")
    assert celery == _load("dagster.yaml")
    assert storage == _load("dagster.postgres.yaml")["storage"]
    assert (launcher["module"], launcher["class"]) == (
        "dagster_celery.launcher",
        "CeleryRunLauncher",
    )


def test_launcher_reads_broker_and_a_shared_result_backend_from_the_environment(
    celery_environment: Path,
) -> None:
    section = _load("dagster.celery.yaml")["run_launcher"]
    launcher = ConfigurableClassData(
        section["module"], section["class"], yaml.safe_dump(section["config"])
    ).rehydrate(as_type=RunLauncher)
    assert type(launcher).__name__ == "CeleryRunLauncher"
    app = launcher.celery  # type: ignore[attr-defined]
    assert app.conf.broker_url == BROKER
    # Run monitoring reads task states from other threads than the one that sent the task:
    # never the thread-bound rpc:// backend.
    assert app.conf.result_backend == BACKEND
    assert launcher.supports_check_run_worker_health


def test_compute_logs_go_to_the_shared_directory(celery_environment: Path) -> None:
    section = _load("dagster.celery.yaml")["compute_logs"]
    manager = ConfigurableClassData(
        section["module"], section["class"], yaml.safe_dump(section["config"])
    ).rehydrate(as_type=LocalComputeLogManager)
    assert Path(manager._base_dir) == celery_environment


def test_worker_settings_resolve_and_leave_run_output_to_dagster(
    celery_environment: Path,
) -> None:
    config = get_validated_config(str(CELERY_WORKER_YAML))
    assert (config["broker"], config["backend"]) == (BROKER, BACKEND)
    assert config["config_source"]["worker_redirect_stdouts"] is False


def test_journal_keeps_complete_lines_only(tmp_path: Path) -> None:
    (tmp_path / "w.jsonl").write_text(
        '{"event": "ready", "node": "w", "pid": 1, "netns": 7, "time": 1.0}\n'
        '{"event": "start", "node": "w", "pid": 2, "netns": 7, "time": 2.0, "run_id": "r"}\n'
        '{"event": "end", "node": "w", "pid": 2, "ne'
    )
    entries = list(read_journal(tmp_path))
    assert [(e.event, e.pid, e.run_id) for e in entries] == [("ready", 1, None), ("start", 2, "r")]
