"""Screenshots of what the Dagster UI shows for the demo tenants, for docs/ui.md.

Run against a live `make demo` (in another shell), after its story has played out (about four
minutes: deletions at Contoso, Litware's consent revoked, the 2-minute refresh; eight for the
coverage check to find stale pairs):

    make screenshots            # or: .venv/bin/python docs/screenshots.py [http://127.0.0.1:3000]

Drives Debian's Chromium (`apt-get install chromium`) through Playwright (`.[docs]` extra);
loopback only. Each page is given time to load its live data, and Dagster's one-time
newsletter dialog is dismissed first.
"""

from __future__ import annotations

import sys
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

from inventory_pipelines.devstack import graphql

OUT = Path(__file__).with_name("img")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SETTLE_MS = 6000
LATEST_SYNC_OF = """
query($key: String!) {
  runsOrError(
    filter: {tags: [{key: "inventory/tenant_key", value: $key}], statuses: [SUCCESS]}
    limit: 20
  ) {
    ... on Runs { results { runId assetSelection { path } } }
  }
}
"""


def _latest_sync_run(base_url: str, tenant_key: str) -> str:
    """The newest successful sync run of a tenant (not a missing-items run)."""
    runs = graphql(base_url, LATEST_SYNC_OF, {"key": tenant_key})["runsOrError"]["results"]
    syncs = [r for r in runs if {"path": ["inventory_missing"]} not in (r["assetSelection"] or [])]
    if not syncs:
        raise SystemExit(f"no successful sync of {tenant_key} yet; is the demo running?")
    return str(syncs[0]["runId"])


def _open(page: Page, url: str) -> None:
    page.goto(url)
    page.wait_for_timeout(SETTLE_MS)
    skip = page.get_by_role("button", name="Skip")
    if skip.count():
        skip.first.click()
        page.wait_for_timeout(500)


def _shoot(page: Page, name: str) -> None:
    path = OUT / f"{name}.png"
    page.screenshot(path=str(path))
    print(f"wrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")


def _pick(page: Page, selection: str, tenant: str) -> None:
    """Select one tenant × selection partition in a two-column partition list."""
    for label in (selection, tenant):
        page.get_by_text(label, exact=True).first.click()
        page.wait_for_timeout(SETTLE_MS // 3)


def _shoot_check_partitions(page: Page, base_url: str, asset: str, detail: tuple[str, str]) -> None:
    """The asset's check, one status per tenant × selection partition, one of them opened."""
    _open(page, f"{base_url}/assets/{asset}?view=checks")
    page.get_by_role("tab", name="Partitions").last.click()
    page.wait_for_timeout(SETTLE_MS // 2)
    _pick(page, *detail)
    _shoot(page, f"{asset}_check_partitions")


def take(base_url: str) -> None:
    OUT.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        _open(page, f"{base_url}/assets/inventory_items")
        _shoot(page, "inventory_items_overview")

        # The sync check per tenant × selection partition: clean, partial, failed at a glance.
        _shoot_check_partitions(page, base_url, "inventory_items", ("all", "northwind"))

        _open(page, f"{base_url}/assets/inventory_items?view=partitions")
        _shoot(page, "inventory_items_partitions")

        # Real deletions (high confidence) and a failed tenant (low), side by side in docs.
        for tenant in ("contoso", "litware"):
            _open(page, f"{base_url}/assets/inventory_missing?view=partitions")
            _pick(page, "all", tenant)
            _shoot(page, f"inventory_missing_{tenant}")

        _shoot_check_partitions(page, base_url, "inventory_missing", ("all", "contoso"))

        # Coverage: the tenant × type table and matrix, and the freshness check naming the
        # stale pairs.
        _open(page, f"{base_url}/assets/inventory_coverage")
        _shoot(page, "inventory_coverage_overview")
        _open(page, f"{base_url}/assets/inventory_coverage?view=checks")
        _shoot(page, "inventory_coverage_check")

        # The change feed's counts per event kind, charted per partition over time.
        _open(page, f"{base_url}/assets/inventory_items")
        page.get_by_placeholder("Filter metadata keys").fill("changes_")
        page.get_by_role("button", name="Plots").first.click()
        page.wait_for_timeout(SETTLE_MS // 2)
        page.get_by_text("Metadata", exact=True).first.scroll_into_view_if_needed()
        _shoot(page, "inventory_items_plots")

        _open(page, f"{base_url}/runs")
        _shoot(page, "runs")

        # A throttled tenant's run: the client's waits and retries in the run's own log.
        _open(page, f"{base_url}/runs/{_latest_sync_run(base_url, 'fabrikam')}")
        page.get_by_placeholder("Filter…").fill("Retry-After")
        page.wait_for_timeout(SETTLE_MS // 3)
        _shoot(page, "run_log_throttled")
        browser.close()


if __name__ == "__main__":
    take(sys.argv[1].rstrip("/") if len(sys.argv) > 1 else "http://127.0.0.1:3000")
