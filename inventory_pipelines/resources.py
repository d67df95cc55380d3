"""Resources: thin adapters from settings to the core store and the Graph client."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import dagster as dg
from pydantic import PrivateAttr
from sqlalchemy import Engine

from inventory_pipelines.core.database import create_inventory_engine, database_url_from_env
from inventory_pipelines.core.store import DEFAULT_LEASE, InventoryStore
from inventory_pipelines.graph.client import DEFAULT_IDENTITY_REQUESTS_PER_SECOND, GraphClient
from inventory_pipelines.graph.retry import RetryPolicy
from inventory_pipelines.graph.settings import (
    DEFAULT_AUTHORITY_URL,
    DEFAULT_BASE_URL,
    ENV_AUTHORITY_URL,
    ENV_BASE_URL,
    ENV_BATCHING,
    CredentialSettings,
    GraphSettings,
    credential_settings_from_env,
    parse_switch,
)
from inventory_pipelines.graph.sync import DEFAULT_TYPE_CONCURRENCY, SyncOptions


class InventoryDatabase(dg.ConfigurableResource):
    """The inventory database. Empty `url` means INVENTORY_DATABASE_URL or the local default."""

    url: str = ""
    lease_seconds: int = int(DEFAULT_LEASE.total_seconds())

    _engine: Engine | None = PrivateAttr(default=None)

    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = create_inventory_engine(self.url or database_url_from_env())
        return self._engine

    def store(self) -> InventoryStore:
        return InventoryStore(self.engine(), lease=timedelta(seconds=self.lease_seconds))

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


class GraphResource(dg.ConfigurableResource):
    """Microsoft Graph access. Empty URLs mean GRAPH_BASE_URL / GRAPH_AUTHORITY_URL or the
    public cloud defaults; the client id comes through EnvVar in definitions.py. Unset
    `batching` means GRAPH_BATCHING (on/off), else on.

    With all three credential fields empty, the credential is read from GRAPH_CLIENT_SECRET,
    GRAPH_CLIENT_CERTIFICATE_PATH or GRAPH_FEDERATED_TOKEN_FILE when the run starts: like an
    EnvVar it never reaches the instance, but an unset variable is no error, since a
    workload-identity deployment has no secret at all."""

    client_id: str
    client_secret: str = ""
    certificate_path: str = ""
    federated_token_file: str = ""
    base_url: str = ""
    authority_url: str = ""
    type_concurrency: int = DEFAULT_TYPE_CONCURRENCY
    identity_requests_per_second: float = DEFAULT_IDENTITY_REQUESTS_PER_SECOND
    retry_max_attempts: int = RetryPolicy.max_attempts
    retry_base_delay: float = RetryPolicy.base_delay
    retry_max_total_wait: float = RetryPolicy.max_total_wait
    batching: bool | None = None

    def settings(self) -> GraphSettings:
        explicit: CredentialSettings = {
            "client_secret": self.client_secret,
            "certificate_path": self.certificate_path,
            "federated_token_file": self.federated_token_file,
        }
        given = any(explicit.values())
        credential = explicit if given else credential_settings_from_env(os.environ)
        return GraphSettings(
            client_id=self.client_id,
            **credential,
            base_url=self.base_url or os.environ.get(ENV_BASE_URL, "") or DEFAULT_BASE_URL,
            authority_url=self.authority_url
            or os.environ.get(ENV_AUTHORITY_URL, "")
            or DEFAULT_AUTHORITY_URL,
            batching=self.batching
            if self.batching is not None
            else parse_switch(os.environ.get(ENV_BATCHING, "") or "on", ENV_BATCHING),
        )

    def sync_options(self) -> SyncOptions:
        return SyncOptions(type_concurrency=self.type_concurrency)

    @contextmanager
    def client(self) -> Iterator[GraphClient]:
        """One client (one connection pool) per run."""
        retry = RetryPolicy(
            max_attempts=self.retry_max_attempts,
            base_delay=self.retry_base_delay,
            max_total_wait=self.retry_max_total_wait,
        )
        with GraphClient(
            self.settings(),
            retry=retry,
            max_connections=self.type_concurrency,
            identity_requests_per_second=self.identity_requests_per_second,
        ) as client:
            yield client
