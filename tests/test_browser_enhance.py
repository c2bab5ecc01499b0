"""Enhance in Chromium: the rewrite fills the prompt box, Undo brings the person's prompt back, a
run draws the rewrite and its PNG keeps both; an enhancer that is down is named, nothing lost."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser import chromium, pick_provider
from tests.chat_server import KEY, REWRITE, ChatServer, chat_server
from tests.serving import running_app
from zimage_ui.metadata import read_text_chunks

pytestmark = pytest.mark.browser
OWN = "a cat on a windowsill"


@pytest.fixture(scope="module")
def site() -> Iterator[tuple[Page, ChatServer]]:
    with chat_server() as chat:
        env = {
            "ZIMAGE_ENHANCER_BASE_URL": chat.url,
            "ZIMAGE_ENHANCER_MODEL": "qwen-plus",
            "ZIMAGE_ENHANCER_API_KEY": KEY,
        }
        with running_app(env) as url, chromium() as browser:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            page.wait_for_selector("#prompt textarea")
            yield page, chat


def test_enhance_fills_the_prompt_undo_restores_it_and_a_run_keeps_both(
    site: tuple[Page, ChatServer], tmp_path_factory: pytest.TempPathFactory
):
    page, chat = site
    box = page.locator("#prompt textarea")
    box.fill(OWN)
    page.click("#enhance")
    expect(box).to_have_value(REWRITE, timeout=15_000)
    expect(page.locator("#enhance-note")).to_contain_text("qwen-plus")
    assert chat.requests[-1]["body"]["messages"][1]["content"] == OWN
    page.click("#enhance-undo")
    expect(box).to_have_value(OWN)
    expect(page.locator("#enhance-undo")).to_be_disabled()

    page.click("#enhance")
    expect(box).to_have_value(REWRITE, timeout=15_000)
    pick_provider(page, "diffusers-tiny")
    page.fill("#width input", "256")
    page.fill("#height input", "256")
    page.locator("#height input").press("Tab")
    page.click("#generate")
    expect(page.locator("#status")).to_contain_text("Done", timeout=60_000)
    page.get_by_text("What was sent").click()
    expect(page.locator("#sent")).to_contain_text("NAP TIME")  # the rewrite was drawn
    src = page.locator("#gallery [data-testid=detailed-image]").get_attribute("src") or ""
    chunks = read_text_chunks(httpx.get(src, timeout=10).content)
    assert chunks["parameters"].startswith(REWRITE)
    assert json.loads(chunks["zimage"])["params"]["enhanced"] == {"original": OWN, "model": "qwen-plus"}
    assert KEY not in page.content()

    # PNG info offers either prompt: the drawn rewrite, or yours.
    png = tmp_path_factory.mktemp("png") / "enhanced.png"
    png.write_bytes(httpx.get(src, timeout=10).content)
    page.get_by_role("tab", name="PNG info").click()
    page.locator("#png-info-file input[type=file]").set_input_files(str(png))
    expect(page.locator("#png-info-message")).to_contain_text("qwen-plus's rewrite of", timeout=15_000)
    box.fill("something else")
    page.click("#png-info-use")
    expect(box).to_have_value(REWRITE)
    page.check("#png-info-own input")
    page.click("#png-info-use")
    expect(box).to_have_value(OWN)


def test_an_enhancer_that_is_down_is_named_and_the_prompt_kept(site: tuple[Page, ChatServer]):
    page, chat = site
    box = page.locator("#prompt textarea")
    box.fill("a lighthouse")
    chat.status = 503
    try:
        page.click("#enhance")
        note = page.locator("#enhance-note")
        expect(note).to_contain_text("Not enhanced", timeout=30_000)
        expect(note).to_contain_text("prompt enhancer (qwen-plus at 127.0.0.1)")
        expect(box).to_have_value("a lighthouse")  # nothing lost
        assert KEY not in page.content()
    finally:
        chat.status = 200


def test_an_example_fills_the_prompt_in_one_click(site: tuple[Page, ChatServer]):
    page, _chat = site
    page.get_by_role("tab", name="Generate").click()
    page.get_by_text("OPEN 24 HOURS", exact=False).first.click()
    expect(page.locator("#prompt textarea")).to_have_value(
        'A neon sign that reads "OPEN 24 HOURS" above a small noodle bar on a rainy street at night, '
        "red and blue reflections on the wet asphalt, a cyclist passing in the background"
    )


def test_enhance_each_run_draws_one_rewrite_for_every_side_and_says_so(site: tuple[Page, ChatServer]):
    page, chat = site
    page.get_by_role("tab", name="Generate").click()
    page.locator("#prompt textarea").fill("a red kite")
    page.check("#enhance-each-run input")
    try:
        before = len(chat.requests)
        page.click("#generate")
        # The status still holds the first test's run, which drew a rewrite too: wait for this run.
        expect(page.locator("#generate")).to_be_disabled()
        expect(page.locator("#generate")).to_be_enabled(timeout=60_000)
        expect(page.locator("#status")).to_contain_text("drew qwen-plus's rewrite")
        expect(page.locator("#status")).to_contain_text("NAP TIME")  # the drawn prompt, in the details
        expect(page.locator("#prompt textarea")).to_have_value("a red kite")  # the box keeps yours
        assert len(chat.requests) == before + 1
        page.get_by_role("tab", name="Compare").click()
        page.click("#compare-run")
        expect(page.locator("#compare-summary")).to_contain_text("2 of 2 sides done", timeout=90_000)
        assert len(chat.requests) == before + 2  # one rewrite for both sides
        for side in ("#side-1-status", "#side-2-status"):
            expect(page.locator(side)).to_contain_text("drew qwen-plus's rewrite")
    finally:
        page.uncheck("#enhance-each-run input")


def test_with_no_endpoint_the_local_text_encoder_enhances_and_says_its_words_are_noise(
    site: tuple[Page, ChatServer],
):
    browser = site[0].context.browser  # one Playwright per process: the module's
    assert browser is not None
    with running_app({"ZIMAGE_ENHANCER_LOCAL": "tiny"}) as url:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        expect(page.locator("#enhance-note")).to_contain_text("its words are noise", timeout=30_000)
        box = page.locator("#prompt textarea")
        box.fill(OWN)
        page.click("#enhance")
        expect(page.locator("#enhance-undo")).to_be_enabled(timeout=60_000)
        expect(page.locator("#enhance-note")).to_contain_text("Rewritten by diffusers-tiny's text encoder")
        assert box.input_value() not in ("", OWN)  # the encoder's noise, in the box for editing
        page.click("#enhance-undo")
        expect(box).to_have_value(OWN)
