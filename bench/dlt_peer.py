"""The dlt peer: what a data engineer builds with the generic tool, measured like our sync.

A plain dlt `rest_api_source` over every collection of the project's policy-type registry
(path and API version per type), into PostgreSQL, one resource (and one table, plus dlt's
child tables for nested lists) per policy type:

- `$top=999` on every collection. A collection that rejects it with 400 ("The limit of 'N'
  for Top query has been exceeded") gets `$top=N`, the cap its error names: what a data
  engineer configures after seeing the error once. The bench finds those caps with one
  untimed request per collection (`bench/peer.py:top_values`) and passes them in `tops`.
- `@odata.nextLink` followed as given (`JSONLinkPaginator`), records from `value`.
- OAuth2 client credentials against the tenant's token endpoint (`OAuth2ClientCredentials`).
- Write disposition `merge` on primary key `id`, with dlt's default merge strategy
  (`delete-insert` through a staging dataset), so an unchanged re-sync is an upsert.
- dlt's defaults for everything else: resources are extracted in one thread (round-robin
  between the resource generators, one HTTP request at a time), normalized by one worker and
  loaded by up to 20 load jobs in parallel. Retries are dlt's: 429 and 5xx with exponential
  backoff (1, 2, 4… s) when there is no `Retry-After`, which is how Entra's identity throttle
  (1 request/s per tenant, no header) is met.

dlt is an optional dependency (`pip install -e '.[bench]'`); only this module imports it, and
only the measured child process (`bench/measure.py`, job kind `dlt`) imports this module.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import dlt
from dlt.sources.helpers.rest_client.auth import OAuth2ClientCredentials
from dlt.sources.helpers.rest_client.paginators import JSONLinkPaginator
from dlt.sources.rest_api import rest_api_source
from dlt.sources.rest_api.typing import RESTAPIConfig
from sqlalchemy.engine import make_url

from inventory_pipelines.core.policy_types import POLICY_TYPES

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
NEXT_LINK_PATH = "'@odata.nextLink'"
"""JSONPath of the next link: the quoted name, since `@` and `.` are JSONPath syntax."""
DEFAULT_TOP = 999
DATASET = "intune"


@dataclass(frozen=True)
class PeerJob:
    """Everything one measured dlt run needs (from the bench's job JSON)."""

    base_url: str
    tenant_id: str
    client_id: str
    client_secret: str
    database_url: str
    pipelines_dir: str
    tops: Mapping[str, int | None]

    @classmethod
    def from_job(cls, job: Mapping[str, Any]) -> PeerJob:
        return cls(
            base_url=job["base_url"].rstrip("/"),
            tenant_id=job["tenant_id"],
            client_id=job["client_id"],
            client_secret=job["client_secret"],
            database_url=job["database_url"],
            pipelines_dir=job["pipelines_dir"],
            tops=dict(job.get("tops") or {}),
        )


def postgres_credentials(database_url: str) -> str:
    """dlt wants a plain `postgresql://` URL (no SQLAlchemy driver suffix) and insists on a
    password; a server that trusts loopback connections ignores the placeholder."""
    url = make_url(database_url).set(drivername="postgresql")
    if not url.password:
        url = url.set(password="unused")
    return url.render_as_string(hide_password=False)


def source_config(job: PeerJob) -> dict[str, Any]:
    """The `rest_api_source` configuration: one resource per registry type."""
    auth = OAuth2ClientCredentials(
        access_token_url=f"{job.base_url}/{job.tenant_id}/oauth2/v2.0/token",
        client_id=job.client_id,
        client_secret=job.client_secret,
        access_token_request_data={"scope": GRAPH_SCOPE},
    )
    resources: list[Any] = []
    for policy_type in POLICY_TYPES:
        top = job.tops.get(policy_type.key, DEFAULT_TOP)
        params = {"$top": top} if top is not None else {}
        resources.append(
            {
                "name": policy_type.key,
                "endpoint": {"path": policy_type.url_path().lstrip("/"), "params": params},
            }
        )
    return {
        "client": {
            "base_url": f"{job.base_url}/",
            "auth": auth,
            "paginator": JSONLinkPaginator(next_url_path=NEXT_LINK_PATH),
        },
        "resource_defaults": {
            "primary_key": "id",
            "write_disposition": "merge",
            "endpoint": {"data_selector": "value"},
        },
        "resources": resources,
    }


def prepare(job: PeerJob) -> tuple[Any, Any]:
    """The pipeline and the source, built before the clock starts."""
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    os.environ.setdefault("RUNTIME__LOG_LEVEL", "ERROR")
    pipeline = dlt.pipeline(
        pipeline_name=f"intune_{job.tenant_id.replace('-', '')[:12]}",
        pipelines_dir=job.pipelines_dir,
        destination=dlt.destinations.postgres(credentials=postgres_credentials(job.database_url)),
        dataset_name=DATASET,
    )
    config = cast(RESTAPIConfig, source_config(job))
    return pipeline, rest_api_source(config, name="intune")


def run(pipeline: Any, source: Any) -> dict[str, Any]:
    """One sync: extract, normalize and load; returns the items per policy type."""
    pipeline.run(source)
    trace = pipeline.last_trace
    row_counts: dict[str, int] = dict(trace.last_normalize_info.row_counts)
    keys = {p.key for p in POLICY_TYPES}
    by_type = {table: rows for table, rows in row_counts.items() if table in keys}
    return {
        "items": sum(by_type.values()),
        "items_by_type": by_type,
        "rows_all_tables": sum(row_counts.values()),
        "tables": len(row_counts),
    }
