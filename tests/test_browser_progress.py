"""Live progress on the page: a bar with the step count and time left, a preview while a local model
runs, and every outcome (done, failed, stopped) said in the status line, not as red badges."""

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser import page_at, pick_provider

pytestmark = pytest.mark.browser
ARTIFACTS = Path(__file__).resolve().parent.parent / ".pytest_cache" / "screenshots"


@pytest.fixture(scope="module")
def page(plain_app: str) -> Iterator[Page]:
    with page_at(plain_app) as page:
        yield page


def long_local_run(page: Page, steps: int) -> None:
    page.fill("#prompt textarea", "a lighthouse in a storm")
    pick_provider(page, "diffusers-tiny")
    page.fill("#width input", "1024")
    page.fill("#height input", "1024")
    box = page.locator("#steps input[type=number]")
    box.fill(str(steps))
    box.press("Enter")
    page.click("#generate")


def test_a_local_run_shows_a_progress_bar_and_a_preview(page: Page):
    long_local_run(page, 24)
    bar = page.locator("#status [role=progressbar]")
    expect(bar).to_be_visible(timeout=60_000)
    # the bar first says "loading the model (first use in this process)": a cold start takes seconds
    expect(bar).to_have_attribute("aria-valuetext", re.compile(r"step \d+/24.*/ 24 steps"), timeout=60_000)
    expect(page.locator("#preview img")).to_be_visible(timeout=60_000)
    expect(page.locator("#status")).to_contain_text("steps", timeout=10_000)
    expect(page.locator("#status")).to_contain_text("s left", timeout=10_000)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "progress.png"))
    expect(page.locator("#status")).to_contain_text("Done", timeout=90_000)
    expect(page.locator("#preview")).to_be_hidden()  # shown only while running
    expect(page.locator("#gallery img").first).to_be_visible()


def test_stop_ends_a_local_run_and_says_stopped(page: Page):
    long_local_run(page, 50)
    expect(page.locator("#status [role=progressbar]")).to_be_visible(timeout=60_000)
    page.click("#stop")
    expect(page.locator("#status")).to_contain_text("Stopped.", timeout=60_000)
    assert page.locator(".toast-body.error").count() == 0  # a user's own Stop is no error


def test_an_unavailable_provider_says_why_in_the_status_without_red_badges(page: Page):
    page.fill("#width input", "256")
    page.fill("#height input", "256")
    pick_provider(page, "evolink")
    page.click("#generate")
    status = page.locator("#status")
    expect(status).to_contain_text("Failed.", timeout=30_000)
    expect(status).to_contain_text("evolink: not usable here")
    for output in ("#gallery", "#seed-used", "#status"):
        assert page.locator(f"{output} [data-testid=status-tracker].error").count() == 0, output
    pick_provider(page, "diffusers-tiny")
