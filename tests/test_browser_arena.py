"""The arena in Chromium: nothing the browser receives names a side before the vote; the vote
names both in place and counts; a team's browsers share one leaderboard, a Space's each its own;
and Gradio's run history (which would keep a battle's sides and typed keys) is off."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, Response, expect

from tests.browser import chromium
from tests.serving import running_app

pytestmark = pytest.mark.browser

SIDE_NAMES = ("diffusers-tiny", "steps=4", "steps=8", "steps 4", "steps 8")  # the tiny model at 4 and 8 steps


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as opened:
        yield opened


@pytest.fixture(scope="module")
def team_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("team")
    env = {"ZIMAGE_HISTORY_DB": str(root / "team.sqlite"), "ZIMAGE_SERVER_KEYS": "none"}
    with running_app(env) as url:
        yield url


# Gradio reads its event stream with fetch, and Chromium keeps no copy of a streamed body for
# Playwright: the page's fetch is wrapped to keep one (`window.streamed`).
TAP_STREAMS = """(() => {
    window.streamed = [];
    const fetchFirst = window.fetch;
    window.fetch = async function (...args) {
        const response = await fetchFirst.apply(this, args);
        const url = String(args[0] && args[0].url ? args[0].url : args[0]);
        if (!url.includes("/queue/data") || !response.body) { return response; }
        const [mine, theirs] = response.body.tee();
        (async () => {
            const reader = mine.getReader(), text = new TextDecoder();
            for (;;) {
                const { done, value } = await reader.read();
                if (done) { break; }
                window.streamed.push(text.decode(value, { stream: true }));
            }
        })();
        const { status, statusText, headers } = response;
        return new Response(theirs, { status, statusText, headers });
    };
})();"""


def arena_page(browser: Browser, url: str, prompt: str, received: list[Response] | None = None) -> Page:
    """The arena with `prompt`; the responses the page gets go into `received`, and what its event
    stream carries into `window.streamed`."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    if received is not None:
        page.add_init_script(script=TAP_STREAMS)
        page.on("response", lambda response: received.append(response))
    page.goto(url)
    page.wait_for_selector("#prompt textarea")
    page.fill("#prompt textarea", prompt)
    page.fill("#width input", "256")
    page.fill("#height input", "256")
    page.locator("#height input").press("Tab")
    page.get_by_role("tab", name="Arena").click()
    expect(page.locator("#arena-board-note")).to_contain_text("vote", timeout=15_000)
    return page


def battle(page: Page) -> None:
    page.click("#arena-run")
    expect(page.locator("#arena-status")).to_contain_text("Which is better", timeout=90_000)


def test_a_battle_names_no_side_before_the_vote_and_both_after(plain_app: str, browser: Browser):
    received: list[Response] = []
    page = arena_page(browser, plain_app, "a brass owl on a shelf", received)
    try:
        # What came before the battle is left out: the page itself lists every provider.
        page.wait_for_function("!document.querySelector('.pending')")
        received.clear()
        page.evaluate("window.streamed.length = 0")
        battle(page)
        area = " ".join(
            page.locator(sel).inner_text()
            for sel in ("#arena-status", "#arena-a-title", "#arena-b-title", "#arena-a-note", "#arena-b-note")
        )
        assert not any(name in area for name in SIDE_NAMES), area
        streamed = page.evaluate("window.streamed.join('')").encode()
        assert b"Which is better" in streamed, "the battle's own stream was not read"
        bodies = [streamed]
        for response in received:
            if "/queue/data" not in response.url:  # read above, from the page
                bodies.append(response.body())
        for body in bodies:
            assert not any(name.encode() in body for name in SIDE_NAMES), body[:300]
            assert b"tEXt" not in body and b"iTXt" not in body  # no PNG text chunk (the record)
        images = [r for r in received if "/file=" in r.url and r.url.endswith(".png")]
        assert len(images) == 2 and all("side" not in Path(r.url).name for r in images)

        page.click("#arena-vote-a")
        expect(page.locator("#arena-status")).to_contain_text("A was", timeout=10_000)
        titles = page.locator("#arena-a-title").inner_text() + page.locator("#arena-b-title").inner_text()
        assert "steps=4" in titles and "steps=8" in titles  # revealed in place
        expect(page.locator("#arena-board")).to_contain_text("diffusers-tiny:steps=4")
        expect(page.locator("#arena-board-note")).to_contain_text("1 vote counted")
        expect(page.locator("#arena-vote-a")).to_be_hidden()  # one vote per battle
    finally:
        page.close()


def test_a_teams_browsers_share_one_leaderboard_and_a_spaces_each_keep_their_own(
    team_app: str, plain_app: str, browser: Browser
):
    for url, shared in ((team_app, True), (plain_app, False)):
        # Each page is a browser of its own (Browser.new_page opens a fresh context: its own storage).
        pages = [arena_page(browser, url, prompt) for prompt in ("a red kite", "a blue boat")]
        try:
            for page in pages:  # both battles at once
                page.click("#arena-run")
            for page in pages:
                expect(page.locator("#arena-status")).to_contain_text("Which is better", timeout=90_000)
            for page in pages:
                page.click("#arena-vote-tie")
            for page in pages:
                expect(page.locator("#arena-status")).to_contain_text("A was", timeout=10_000)
            page = pages[0]
            page.get_by_role("tab", name="Generate").click()
            page.get_by_role("tab", name="Arena").click()  # shown afresh
            page.wait_for_timeout(1000)
            note = page.locator("#arena-board-note").inner_text()
            if shared:
                assert "2 votes counted (the team's votes" in note, note
            else:
                assert "1 vote counted (this browser's votes" in note, note
        finally:
            for page in pages:
                page.close()


def test_gradio_keeps_no_run_history_in_the_browser(plain_app: str):
    config = httpx.get(f"{plain_app}config", timeout=10).json()
    assert config.get("run_history") is False
    assert httpx.get(f"{plain_app}gradio_api/runs", timeout=10).status_code == 404
