"""The page as axe-core (the npm package, injected into the page) sees it: no serious or critical
violation at a laptop's and a phone's width, in the light and the dark theme, on the page as it
opens and after a run; status lines a screen reader announces; and the API's own page likewise."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser import chromium, pick_provider

pytestmark = pytest.mark.browser

AXE = Path(os.environ.get("TEST_AXE_DIR") or "/tmp/zimage-ui-axe") / "node_modules/axe-core/axe.min.js"
SIZES = {"laptop": (1400, 1000), "phone": (390, 844)}
SERIOUS = """async () => (await axe.run(document, {resultTypes: ["violations"]})).violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id}: ${v.nodes.map((n) => n.html.slice(0, 120)).join(" | ")}`)"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert AXE.is_file(), f"{AXE} is missing: scripts/test.sh installs axe-core with npm"
    with chromium() as opened:
        yield opened


def serious_violations(page: Page) -> list[str]:
    """axe-core's serious and critical findings, once no output is waiting on an event (Gradio draws
    a waiting output at 20% opacity, which no text passes)."""
    page.wait_for_function("!document.querySelector('.pending')")
    page.add_script_tag(content=AXE.read_text())
    return page.evaluate(SERIOUS)


def opened(browser: Browser, url: str, size: str) -> Page:
    width, height = SIZES[size]
    page = browser.new_page(viewport={"width": width, "height": height})
    page.goto(url)
    return page


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("theme", ["light", "dark"])
def test_the_page_has_no_serious_violation_as_it_opens_and_after_a_run(
    plain_app: str, browser: Browser, size: str, theme: str
) -> None:
    page = opened(browser, f"{plain_app}?__theme={theme}", size)
    try:
        page.wait_for_selector("#prompt textarea")
        page.wait_for_timeout(1000)  # the load events (provider hints) have run
        assert serious_violations(page) == [], (size, theme)
        expect(page.locator("#status")).to_have_attribute("aria-live", "polite")  # messages are said
        pick_provider(page, "diffusers-tiny")
        page.fill("#prompt textarea", "a paper lantern")
        page.fill("#width input", "256")
        page.fill("#height input", "256")
        page.locator("#height input").press("Tab")
        page.click("#generate")
        expect(page.locator("#status")).to_contain_text("Done", timeout=60_000)
        expect(page.locator("#generate")).to_be_enabled()  # the run is over: Generate is back
        page.wait_for_timeout(500)  # its colours have finished changing
        assert serious_violations(page) == [], (size, theme, "after a run")
        page.get_by_role("tab", name="Sweep").click()  # a tab's status line, once it is drawn
        expect(page.locator("#sweep-status")).to_have_attribute("aria-live", "polite")
    finally:
        page.close()


@pytest.mark.parametrize("size", list(SIZES))
def test_the_api_page_has_no_serious_violation(plain_app: str, browser: Browser, size: str) -> None:
    page = opened(browser, f"{plain_app}api/", size)
    try:
        expect(page.get_by_text("This address serves the playground's API")).to_be_visible(timeout=30_000)
        assert serious_violations(page) == [], size
    finally:
        page.close()
