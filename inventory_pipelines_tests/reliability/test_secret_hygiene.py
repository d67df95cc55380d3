"""Secret hygiene end to end: a representative set of faults through the plain sync and
through `dagster.materialize` on a real instance, then every place a secret could land is
searched for the client secret, a wrong secret that was tried, and every access token issued.

Searched: every row of every table of the inventory database (every column cast to text),
every Dagster run, snapshot and event log entry of the instance plus the raw files of its
directory, and every log record (DEBUG for our loggers, httpx, httpcore and dagster). The
simulator here has its own distinctive secret so a hit cannot be a coincidence.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import dagster as dg
import httpx
import pytest
from dagster import DagsterEventType
from sqlalchemy import Engine, LargeBinary, MetaData, Text, cast, select

import inventory_pipelines.resources as resources_module
from inventory_pipelines.assets import inventory_items, inventory_missing
from inventory_pipelines.core.errors import GraphError
from inventory_pipelines.core.missing import compute_missing
from inventory_pipelines.core.selection import get_selection
from inventory_pipelines.core.store import InventoryStore
from inventory_pipelines.core.tenants import add_tenant
from inventory_pipelines.definitions import defs
from inventory_pipelines.graph.client import GraphClient
from inventory_pipelines.graph.summary import summary_as_dict
from inventory_pipelines.graph.sync import sync_partition
from inventory_pipelines.partitions import partition_key
from inventory_pipelines.resources import GraphResource, InventoryDatabase
from inventory_pipelines.simulator import SimulatorServer
from inventory_pipelines_tests.credential_files import (
    federated_registration,
    federated_token,
    new_key_pair,
    write_token_file,
)
from inventory_pipelines_tests.reliability.harness import (
    CATALOG,
    FAST_RETRY,
    TENANT,
    RecordingTransport,
)
from inventory_pipelines_tests.simulator_fixtures import simulator_settings

CLIENT_SECRET = "hygiene~Q7v.Distinctive-Client_Secret-5mRw2Lk"
WRONG_SECRET = "hygiene~X3p.Wrong-Client_Secret-Tried-8dNe4Hs"
TENANT_KEY = "hygiene"
SELECTION_NAME = "configuration"
SELECTION = get_selection(SELECTION_NAME)
SIZES = {CATALOG: 60, "device_configurations": 30}
JWT = re.compile(r"eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+")
LOGGERS = ("inventory_pipelines", "httpx", "httpcore", "dagster")

SCENARIOS: tuple[tuple[str, list[dict[str, Any]], str, str], ...] = (
    # (name, simulator faults, client secret, expected sync status)
    ("clean", [], CLIENT_SECRET, "success"),
    (
        "401 mid-run, 429, 403, malformed JSON, persistent 401",
        [
            {"kind": "revoke_tokens", "policy_type": CATALOG, "skip": 1, "count": 1},
            {"kind": "throttle", "policy_type": "reusable_settings", "retry_after": 0},
            {"kind": "status", "policy_type": "administrative_templates", "status": 403},
            {"kind": "malformed_json", "policy_type": "device_configurations"},
            {"kind": "status", "policy_type": "endpoint_security_intents", "status": 401},
        ],
        CLIENT_SECRET,
        "partial",
    ),
    ("token error", [{"kind": "token_error"}], CLIENT_SECRET, "failed"),
    ("wrong secret", [], WRONG_SECRET, "failed"),
    ("recovery", [], CLIENT_SECRET, "success"),
)
PARTIAL_CODES = ["forbidden", "invalid_response", "throttled", "unauthorized"]
DAGSTER_SCENARIOS = tuple(s for s in SCENARIOS if s[0] not in ("clean", "token error"))
"""A materialization costs a second or two: the faults, the wrong secret and the recovery."""


@pytest.fixture(scope="module")
def hygiene_simulator() -> Iterator[SimulatorServer]:
    with SimulatorServer(client_secret=CLIENT_SECRET, identity_requests_per_second=0) as server:
        yield server


@pytest.fixture
def hsim(hygiene_simulator: SimulatorServer, engine: Engine) -> SimulatorServer:
    hygiene_simulator.control.reset()
    hygiene_simulator.control.configure_tenant(TENANT, seed=5, default_size=8, sizes=SIZES)
    add_tenant(engine, TENANT, "Hygiene Ltd", key=TENANT_KEY)
    return hygiene_simulator


@pytest.fixture
def captured(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def database_texts(engine: Engine) -> list[str]:
    """Every column of every row of every table, cast to text by the database itself."""
    reflected = MetaData()
    reflected.reflect(engine)
    texts: list[str] = []
    with engine.connect() as conn:
        for table in reflected.sorted_tables:
            # Binary columns (content_hash) read as bytes and decoded leniently: a digest is
            # not UTF-8 (CAST would fail on SQLite), but a secret stored as bytes still shows.
            columns = [
                column if isinstance(column.type, LargeBinary) else cast(column, Text)
                for column in table.columns
            ]
            for row in conn.execute(select(*columns)):
                texts.extend(
                    bytes(value).decode("utf-8", errors="replace")
                    if isinstance(value, bytes | memoryview)
                    else value
                    for value in row
                    if value is not None
                )
    return texts


def log_texts(caplog: pytest.LogCaptureFixture) -> list[str]:
    captured_from = {record.name.split(".")[0] for record in caplog.records}
    assert {"inventory_pipelines", "httpx", "httpcore"} <= captured_from  # DEBUG reached us
    texts = [caplog.text]
    for record in caplog.records:
        texts.append(record.getMessage())
        texts.append(repr(record.__dict__))
    return texts


def instance_texts(instance: dg.DagsterInstance) -> list[str]:
    """Runs, their snapshots and event logs, serialized; plus the instance's raw files."""
    texts: list[str] = []
    runs = instance.get_runs()
    assert runs
    for run in runs:
        texts.append(dg.serialize_value(run))
        if run.job_snapshot_id:
            texts.append(dg.serialize_value(instance.get_job_snapshot(run.job_snapshot_id)))
        if run.execution_plan_snapshot_id:
            plan = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
            texts.append(dg.serialize_value(plan))
        entries = instance.all_logs(run.run_id)
        assert entries
        texts.extend(dg.serialize_value(entry) for entry in entries)
    for path in Path(instance.root_directory).rglob("*"):
        if path.is_file():
            texts.append(path.read_bytes().decode("utf-8", errors="replace"))
    return texts


def assert_no_secrets(
    where: str, texts: list[str], tokens: set[str], *, jwt_free: bool = True
) -> None:
    needles = {"client secret": CLIENT_SECRET, "wrong secret": WRONG_SECRET}
    for number, token in enumerate(sorted(tokens)):
        # The signature is what makes a token unique: its ends catch a token cut short.
        signature = token.rsplit(".", 1)[-1]
        needles[f"access token #{number}"] = token
        needles[f"start of access token #{number}'s signature"] = signature[:24]
        needles[f"end of access token #{number}'s signature"] = signature[-24:]
    hits = [
        f"{label} in {where}: …{text[max(0, text.find(needle) - 80) : text.find(needle)]}"
        for text in texts
        for label, needle in needles.items()
        if needle in text
    ]
    if jwt_free:
        hits += [f"JWT-looking string in {where}: {m[:40]}…" for t in texts for m in JWT.findall(t)]
    assert hits == [], "\n".join(hits[:20])


def check_tokens_recorded(recorder: RecordingTransport, *, runs_with_tokens: int) -> None:
    # One token per run that got one, plus at least one refresh in the faulted run (two when
    # the revocation and the persistent 401 do not overlap); refused requests are recorded too.
    assert len(recorder.tokens) >= runs_with_tokens + 1
    assert recorder.token_responses > len(recorder.tokens)


def test_plain_sync_leaks_no_secret(
    hsim: SimulatorServer, engine: Engine, captured: pytest.LogCaptureFixture
) -> None:
    store = InventoryStore(engine)
    recorder = RecordingTransport()
    statuses = []
    for name, rules, secret, expected in SCENARIOS:
        hsim.control.set_faults(TENANT, rules)
        settings = simulator_settings(hsim, client_secret=secret)
        with GraphClient(
            settings, retry=FAST_RETRY, identity_requests_per_second=0, transport=recorder
        ) as client:
            summary = sync_partition(store, client, TENANT, SELECTION)
        hsim.control.clear_faults()
        compute_missing(engine, TENANT, SELECTION)
        statuses.append(summary.status)
        assert summary.status == expected, (name, summary.error_codes)
        if expected == "partial":
            assert summary.error_codes == PARTIAL_CODES
    check_tokens_recorded(recorder, runs_with_tokens=3)
    assert_no_secrets("the inventory database", database_texts(engine), recorder.tokens)
    assert_no_secrets("the logs", log_texts(captured), recorder.tokens)
    assert any("401" in r.getMessage() for r in captured.records)


def test_dagster_materialize_leaks_no_secret(
    hsim: SimulatorServer,
    engine: Engine,
    database_url: str,
    captured: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recorder = RecordingTransport()
    monkeypatch.setattr(
        resources_module, "GraphClient", functools.partial(GraphClient, transport=recorder)
    )
    # The credentials bound exactly as definitions.py binds them: a literal secret on the
    # resource would be persisted in the instance's job snapshot (as a config default), so
    # the client id is an EnvVar and the credential is read from the environment at run start.
    assert defs.resources is not None
    production = defs.resources["graph"]
    assert isinstance(production, GraphResource)
    client_id = production.client_id
    assert isinstance(client_id, dg.EnvVar)
    literal = (
        production.client_secret,
        production.certificate_path,
        production.federated_token_file,
    )
    assert literal == ("", "", "")
    monkeypatch.setenv(client_id.env_var_name, hsim.client_id)
    resources = {
        "inventory_db": InventoryDatabase(url=database_url),
        "graph": GraphResource(
            client_id=client_id,
            base_url=hsim.base_url,
            authority_url=hsim.base_url,
            retry_max_attempts=FAST_RETRY.max_attempts,
            retry_base_delay=FAST_RETRY.base_delay,
            retry_max_total_wait=FAST_RETRY.max_total_wait,
            identity_requests_per_second=0,
        ),
    }
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("tenant", [TENANT_KEY])
        instance.add_dynamic_partitions("selection", [SELECTION_NAME])
        for name, rules, secret, expected in DAGSTER_SCENARIOS:
            hsim.control.set_faults(TENANT, rules)
            monkeypatch.setenv("GRAPH_CLIENT_SECRET", secret)
            result = dg.materialize(
                [inventory_items, inventory_missing],
                partition_key=partition_key(TENANT_KEY, SELECTION_NAME),
                instance=instance,
                resources=resources,
                raise_on_error=False,
            )
            hsim.control.clear_faults()
            # Only a complete sync materializes and succeeds; the others are observed.
            assert result.success is (expected == "success"), name
            kind = (
                DagsterEventType.ASSET_MATERIALIZATION
                if expected == "success"
                else DagsterEventType.ASSET_OBSERVATION
            )
            [entry] = [
                e
                for e in instance.all_logs(result.run_id, of_type=kind)
                if e.dagster_event is not None
                and e.dagster_event.asset_key == dg.AssetKey("inventory_items")
            ]
            metadata = entry.asset_materialization or entry.asset_observation
            assert metadata is not None
            assert metadata.metadata["status"].value == expected, name
            if expected == "partial":
                assert metadata.metadata["error_codes"].value == PARTIAL_CODES
        check_tokens_recorded(recorder, runs_with_tokens=2)
        assert_no_secrets("the Dagster instance", instance_texts(instance), recorder.tokens)
    assert_no_secrets("the inventory database", database_texts(engine), recorder.tokens)
    assert_no_secrets("the logs", log_texts(captured), recorder.tokens)


class AssertionRecorder(RecordingTransport):
    """Also notes every client assertion posted to the token endpoint."""

    def __init__(self) -> None:
        super().__init__()
        self.assertions: set[str] = set()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path.endswith("/oauth2/v2.0/token"):
            form = parse_qs(request.content.decode())
            self.assertions.update(form.get("client_assertion", []))
        return super().handle_request(request)


def test_certificate_and_federated_credentials_leak_nothing(
    hsim: SimulatorServer, engine: Engine, captured: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """Private keys, the assertions signed with them and the federated token file's tokens
    stay out of the database, the logs (msal's included) and the errors, on success and on
    every kind of refusal."""
    captured.set_level(logging.DEBUG, logger="msal")
    app, issuer, stranger = new_key_pair(), new_key_pair(), new_key_pair()
    hsim.control.set_credentials(
        certificates=[app.certificate_pem], federated=[federated_registration(issuer)]
    )
    token_file = tmp_path / "token"
    federated = [federated_token(issuer, issued_at=0, lifetime=60), federated_token(issuer)]
    faults = SCENARIOS[1][1]
    runs: list[tuple[str, dict[str, str], list[dict[str, Any]], str]] = [
        ("certificate", {"certificate_path": str(app.write(tmp_path / "a.pem"))}, [], "success"),
        ("certificate, faults", {"certificate_path": str(tmp_path / "a.pem")}, faults, "partial"),
        (
            "unregistered",
            {"certificate_path": str(stranger.write(tmp_path / "s.pem"))},
            [],
            "failed",
        ),
        ("expired federated", {"federated_token_file": str(token_file)}, [], "failed"),
        ("federated", {"federated_token_file": str(token_file)}, faults, "partial"),
    ]
    store = InventoryStore(engine)
    recorder = AssertionRecorder()
    errors: list[str] = []
    for name, credential, rules, expected in runs:
        if "federated" in name:
            write_token_file(token_file, federated.pop(0))
        hsim.control.set_faults(TENANT, rules)
        settings = simulator_settings(hsim, client_secret="", **credential)
        with GraphClient(
            settings, retry=FAST_RETRY, identity_requests_per_second=0, transport=recorder
        ) as client:
            summary = sync_partition(store, client, TENANT, SELECTION)
            errors.append(json.dumps(summary_as_dict(summary), default=str))
            client.tokens.invalidate(TENANT)
            try:
                client.tokens.token(TENANT)
            except GraphError as exc:
                errors.extend([str(exc), repr(exc), json.dumps(exc.context())])
        hsim.control.clear_faults()
        assert summary.status == expected, (name, summary.error_codes)
    assert len(recorder.assertions) >= 4
    secrets = recorder.tokens | recorder.assertions | {app.key_pem, stranger.key_pem}
    secrets |= {line for keys in (app, stranger) for line in keys.key_pem.splitlines()[1:-1]}
    for where, texts in (
        ("the inventory database", database_texts(engine)),
        ("the logs", log_texts(captured)),
        ("the sync errors", errors),
    ):
        assert_no_secrets(where, texts, secrets)
        assert not [t for t in texts if "PRIVATE KEY" in t], where
