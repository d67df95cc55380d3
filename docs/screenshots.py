"""Screenshots of what the Dagster UI shows for the demo tenants, for docs/ui.md.

Run against a live `make demo` (in another shell), after its story has played out (about four
minutes: deletions at Contoso, Litware's consent revoked, the 2-minute refresh):

    make screenshots            # or: .venv/bin/python docs/screenshots.py [http://127.0.0.1:3000]

Drives Debian's Chromium (`apt-get install chromium`) through Playwright (`.[docs]` extra);
loopback only. Each page is given time to load its live data, and Dagster's one-time
newsletter dialog is dismissed first.
"""

from __future__ import annotations

import sys
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

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


def take(base_url: str) -> None:
    OUT.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        _open(page, f"{base_url}/assets/inventory_items")
        _shoot(page, "inventory_items_overview")

        # The sync check per tenant × selection partition: clean, partial, failed at a glance.
        _open(page, f"{base_url}/assets/inventory_items?view=checks")
        page.get_by_role("tab", name="Partitions").last.click()
        page.wait_for_timeout(SETTLE_MS // 2)
        _shoot(page, "inventory_items_check_partitions")

        _open(page, f"{base_url}/assets/inventory_items?view=partitions")
        _shoot(page, "inventory_items_partitions")

        _open(page, f"{base_url}/assets/inventory_missing?view=partitions")
        _shoot(page, "inventory_missing_partitions")

        _open(page, f"{base_url}/assets/inventory_missing?view=checks")
        page.get_by_role("tab", name="Partitions").last.click()
        page.wait_for_timeout(SETTLE_MS // 2)
        _shoot(page, "inventory_missing_check_partitions")

        _open(page, f"{base_url}/runs")
        _shoot(page, "runs")
        browser.close()


if __name__ == "__main__":
    take(sys.argv[1].rstrip("/") if len(sys.argv) > 1 else "http://127.0.0.1:3000")
