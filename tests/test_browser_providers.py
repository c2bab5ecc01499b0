"""The Providers tab in Chromium, on runs made against the hosted emulators, failures included."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser import chromium, pick_provider
from tests.emulators import Emulator
from tests.serving import running_app

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def site(emulator_servers: dict[str, Emulator], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {
        "ZIMAGE_POLL_INTERVAL_S": "0.05",
        "ZIMAGE_TIMEOUT_S": "10",
        "NO_PROXY": "127.0.0.1,localhost",
        "ZIMAGE_HISTORY_DB": str(tmp_path_factory.mktemp("team") / "runs.sqlite"),
    }
    for emulator in emulator_servers.values():
        env.update(emulator.env())
    with running_app(env) as url:
        yield url


def generate(page: Page, provider: str) -> None:
    pick_provider(page, provider)
    page.click("#generate")
    # The status still shows the previous run until this one ends: wait for this run itself (an
    # emulated job takes half a second at least, so the busy state is there to be seen).
    expect(page.locator("#generate")).to_be_disabled()
    expect(page.locator("#generate")).to_be_enabled(timeout=60_000)
    expect(page.locator("#status")).to_contain_text("Done" if provider != "evolink" else "Failed")


def test_the_providers_view_counts_successes_failures_and_times(
    site: str, emulator_servers: dict[str, Emulator], tmp_path_factory
):
    with chromium() as browser:
        page = opened(browser, site)
        try:
            generate(page, "runpod")
            generate(page, "runpod")
            emulator_servers["evolink"].reset()
            emulator_servers["evolink"].behaviour.fail_reason = "the prompt was refused"
            generate(page, "evolink")
            emulator_servers["evolink"].reset()
            page.get_by_role("tab", name="Providers").click()
            expect(page.locator("#providers-note")).to_contain_text("3 runs from the team's run log")
            table = page.locator("#providers-table")
            expect(table).to_contain_text("evolink")
            text = " ".join(table.inner_text().split())
            assert "runpod 2 2 (100%)" in text and "$0.0050 (as its runs reported)" in text, text
            assert "evolink 1 0 (0%)" in text and "job failed: 1" in text, text  # the failure, by kind
            for chart in ("#providers-latency", "#providers-success"):  # drawn, not empty
                expect(page.locator(f"{chart} canvas, {chart} svg").first).to_be_visible(timeout=15_000)
            page.screenshot(path=str(tmp_path_factory.mktemp("shots") / "providers.png"), full_page=True)
        finally:
            page.close()


def opened(browser: Browser, url: str) -> Page:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url)
    page.wait_for_selector("#prompt textarea")
    page.fill("#prompt textarea", "a lighthouse at dusk")
    page.fill("#width input", "512")
    page.fill("#height input", "512")
    page.locator("#height input").press("Tab")
    return page
