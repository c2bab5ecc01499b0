"""Debian's Chromium driven by Playwright. A missing browser is a failure, never a skip."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

from playwright.sync_api import Browser, Page, sync_playwright

from tests.serving import running_app

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def chromium() -> Iterator[Browser]:
    if not shutil.which(CHROMIUM):
        raise RuntimeError(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def page_at(url: str) -> Iterator[Page]:
    """The app at `url` open in Chromium, once its prompt box is on screen."""
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(url)
        page.wait_for_selector("#prompt textarea")
        yield page


@contextmanager
def app_page(env: dict[str, str] | None = None) -> Iterator[Page]:
    """The real app started with `env`, open in Chromium, once its prompt box is on screen."""
    with running_app(env or {}) as url, page_at(url) as page:
        yield page


def pick_provider(page: Page, provider_id: str) -> None:
    page.click("#provider input")
    page.get_by_role("option", name=f"{provider_id}:").first.click()
