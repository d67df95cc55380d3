"""How fast the simulator serves pages over loopback, measured with a plain httpx loop.

    python -m inventory_pipelines.simulator.loopback_bench [--items 100000]

Benchmarks of the real client need to know the simulator is not their bottleneck.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import httpx

from inventory_pipelines.core.policy_types import get_policy_type
from inventory_pipelines.simulator.server import SimulatorServer
from inventory_pipelines.simulator.tokens import (
    GRAPH_SCOPE,
    SIMULATOR_CLIENT_ID,
    SIMULATOR_CLIENT_SECRET,
)

BENCH_TENANT = "b0b0b0b0-0000-4000-8000-000000000100"


@dataclass(frozen=True)
class Throughput:
    label: str
    pages: int
    items: int
    megabytes: float
    seconds: float

    def line(self) -> str:
        return (
            f"{self.label:<44} {self.pages:>6} pages {self.items:>7} items "
            f"{self.seconds:6.2f} s  {self.pages / self.seconds:8.0f} pages/s "
            f"{self.items / self.seconds:9.0f} items/s {self.megabytes / self.seconds:6.1f} MB/s"
        )


def _token(client: httpx.Client, base_url: str) -> str:
    response = client.post(
        f"{base_url}/{BENCH_TENANT}/oauth2/v2.0/token",
        data={
            "client_id": SIMULATOR_CLIENT_ID,
            "client_secret": SIMULATOR_CLIENT_SECRET,
            "scope": GRAPH_SCOPE,
            "grant_type": "client_credentials",
        },
    )
    response.raise_for_status()
    token: str = response.json()["access_token"]
    return token


def page_through(client: httpx.Client, url: str, label: str) -> Throughput:
    """Follow next links to the end, parsing every page as a client would."""
    pages = items = size = 0
    started = time.perf_counter()
    link: str | None = url
    while link:
        response = client.get(link)
        response.raise_for_status()
        body = response.json()
        pages += 1
        items += len(body["value"])
        size += len(response.content)
        link = body.get("@odata.nextLink")
    return Throughput(label, pages, items, size / 1e6, time.perf_counter() - started)


def run(items: int) -> list[str]:
    """Generate `items` per measured type in one tenant, then page through each."""
    catalog = get_policy_type("settings_catalog_policies")
    configs = get_policy_type("device_configurations")
    lines = []
    with SimulatorServer(identity_requests_per_second=0) as server:
        server.control.configure_tenant(
            BENCH_TENANT, sizes={catalog.key: items, configs.key: items}
        )
        for policy_type in (configs, catalog):
            started = time.perf_counter()
            server.control.item_count(BENCH_TENANT, policy_type.key)
            lines.append(
                f"generate {items} {policy_type.key}: {time.perf_counter() - started:.2f} s"
            )
        with httpx.Client(timeout=60) as client:
            client.headers["Authorization"] = f"Bearer {_token(client, server.base_url)}"
            base = server.base_url
            runs = [
                (f"{base}{configs.url_path()}?$top=999", f"{configs.key} $top=999 (cold cache)"),
                (f"{base}{configs.url_path()}?$top=999", f"{configs.key} $top=999 (warm)"),
                (f"{base}{configs.url_path()}?$top=100", f"{configs.key} $top=100"),
                (f"{base}{catalog.url_path()}", f"{catalog.key} (25 per page)"),
            ]
            lines += [page_through(client, url, label).line() for url, label in runs]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--items", type=int, default=100_000)
    for line in run(parser.parse_args().items):
        print(line)


if __name__ == "__main__":
    main()
