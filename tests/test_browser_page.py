"""The page as a person meets it, in Chromium at a laptop's and a phone's size: the job first
(prompt, Generate, the result), results shown whole, buttons that say whether a run is in flight,
every tab in reach, and a History that keeps every image across a reload."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser import chromium, pick_provider

pytestmark = pytest.mark.browser

SIZES = {"laptop": (1400, 1000), "phone": (390, 844)}
TABS = ["Generate", "Compare", "Sweep", "PNG info", "History"]
# The shown image's box, the gallery's, the caption's, and how the image is fitted.
RESULT = """() => {
    const box = (el) => { const r = el.getBoundingClientRect(); return [r.top, r.bottom, r.left, r.right]; };
    const img = document.querySelector("#gallery [data-testid=detailed-image]");
    const caption = document.querySelector("#gallery .preview .caption");
    return {
        image: box(img), gallery: box(document.querySelector("#gallery")), caption: box(caption),
        caption_text: caption.textContent, fit: getComputedStyle(img).objectFit,
        natural: [img.naturalWidth, img.naturalHeight],
    };
}"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as opened:
        yield opened


def opened(browser: Browser, url: str, size: str) -> Page:
    width, height = SIZES[size]
    page = browser.new_page(viewport={"width": width, "height": height})
    page.goto(url)
    page.wait_for_selector("#prompt textarea")
    return page


def inside(inner: list[float], outer: list[float]) -> bool:
    top, bottom, left, right = inner
    return top >= outer[0] - 1 and bottom <= outer[1] + 1 and left >= outer[2] - 1 and right <= outer[3] + 1


@pytest.mark.parametrize("size", list(SIZES))
def test_the_job_comes_first_and_every_tab_is_in_reach(plain_app: str, browser: Browser, size: str):
    page = opened(browser, plain_app, size)
    try:
        height = SIZES[size][1]
        for element in ("#prompt textarea", "#generate"):
            box = page.locator(element).bounding_box()
            assert box and box["y"] >= 0 and box["y"] + box["height"] <= height, (size, element, box)
        for name in TABS:  # no tab behind a "..." menu
            expect(page.get_by_role("tab", name=name, exact=True)).to_be_visible()
        expect(page.locator("#stop")).to_be_disabled()  # nothing runs yet
    finally:
        page.close()


@pytest.mark.parametrize("size", list(SIZES))
def test_a_square_result_is_shown_whole_with_its_caption(plain_app: str, browser: Browser, size: str):
    page = opened(browser, plain_app, size)
    try:
        pick_provider(page, "diffusers-tiny")
        page.fill("#prompt textarea", "a red fox in fresh snow")  # the 1024x1024 default size
        page.click("#generate")
        expect(page.locator("#generate")).to_be_disabled()  # no second run by a double click
        expect(page.locator("#stop")).to_be_enabled()
        expect(page.locator("#status")).to_contain_text("Done", timeout=90_000)
        expect(page.locator("#generate")).to_be_enabled()
        expect(page.locator("#stop")).to_be_disabled()
        page.locator("#gallery [data-testid=detailed-image]").wait_for()
        page.wait_for_function(
            "document.querySelector('#gallery [data-testid=detailed-image]').naturalWidth > 0"
        )
        shown = page.evaluate(RESULT)
        assert shown["natural"] == [1024, 1024] and shown["fit"] == "scale-down"
        assert inside(shown["image"], shown["gallery"]) and inside(shown["caption"], shown["gallery"]), shown
        seed = page.locator("#seed-used input, #seed-used textarea").first.input_value()
        assert shown["caption_text"].strip() == f"seed {seed}"
        if size == "laptop":  # on a laptop the whole result is on the first screen, with the prompt
            viewport = [0, SIZES[size][1], 0, SIZES[size][0]]
            assert inside(shown["image"], viewport) and inside(shown["caption"], viewport), shown
            assert page.locator("#prompt textarea").bounding_box()["y"] >= 0  # type: ignore[index]
    finally:
        page.close()


def test_quick_sizes_for_drafts(plain_app: str, browser: Browser):
    page = opened(browser, plain_app, "laptop")
    try:
        page.locator("#size-family").get_by_label("512", exact=True).check()
        expect(page.locator("#width input")).to_have_value("512")
        expect(page.locator("#height input")).to_have_value("512")
        page.fill("#width input", "768")
        page.fill("#height input", "768")
        page.locator("#height input").press("Tab")  # typed sizes find their family
        expect(page.locator("#size-family").get_by_label("768", exact=True)).to_be_checked()
        expect(page.locator("#size input")).to_have_value("768x768 (1:1)")
    finally:
        page.close()


def test_a_batch_and_a_sweep_are_in_the_history_after_a_reload(plain_app: str, browser: Browser):
    page = opened(browser, plain_app, "laptop")
    try:
        pick_provider(page, "diffusers-tiny")
        page.fill("#prompt textarea", "a paper crane on a desk")
        page.fill("#width input", "256")
        page.fill("#height input", "256")
        page.locator("#num-images input[type=number]").fill("2")
        page.locator("#num-images input[type=number]").press("Enter")
        page.click("#generate")
        expect(page.locator("#status")).to_contain_text("Done", timeout=60_000)
        page.get_by_role("tab", name="Sweep").click()
        page.locator("#num-images input[type=number]").fill("1")
        page.locator("#num-images input[type=number]").press("Enter")
        page.fill("#sweep-x-values textarea, #sweep-x-values input", "2, 3")
        page.locator("#sweep-y-kind input").click()
        page.get_by_role("option", name="Seed", exact=True).click()
        page.fill("#sweep-y-values textarea, #sweep-y-values input", "1, 2")
        expect(page.locator("#sweep-cells")).to_contain_text("4 cells")
        page.click("#sweep-run")
        expect(page.locator("#sweep-status")).to_contain_text("Done", timeout=90_000)
        page.wait_for_timeout(500)  # the new entries reach the browser's storage

        page.reload()
        page.wait_for_selector("#prompt textarea")
        page.get_by_role("tab", name="History").click()
        expect(page.locator("#history-note")).to_contain_text("6 images from this browser", timeout=15_000)
        captions = page.locator("#history-gallery .caption-label").all_inner_texts()
        assert sum("Steps:" in caption for caption in captions) == 4, captions
        batch = [caption for caption in captions if "Steps:" not in caption]
        assert len(batch) == 2 and len(set(batch)) == 2, captions  # each image with its own seed

        page.locator("#history-gallery .thumbnail-item").last.click()  # the batch's first image
        page.click("#history-restore")
        expect(page.locator("#prompt textarea")).to_have_value("a paper crane on a desk")
        expect(page.locator("#seed input, #seed textarea").first).to_have_value(batch[-1].split()[1])
    finally:
        page.close()


def test_two_browsers_keep_their_own_histories(plain_app: str, browser: Browser):
    first, second = browser.new_context(), browser.new_context()
    try:
        pages = [context.new_page() for context in (first, second)]
        for page, prompt in zip(pages, ["a green kettle", "a violet moth"], strict=True):
            page.set_viewport_size({"width": 1400, "height": 1000})
            page.goto(plain_app)
            page.wait_for_selector("#prompt textarea")
            pick_provider(page, "diffusers-tiny")
            page.fill("#prompt textarea", prompt)
            page.fill("#width input", "256")
            page.fill("#height input", "256")
            page.locator("#height input").press("Tab")
            if page.locator("#random-seed input").is_checked():
                page.uncheck("#random-seed input")
            page.fill("#seed input, #seed textarea", "7")  # one seed for both
        for page in pages:
            page.click("#generate")
        for page, prompt in zip(pages, ["a green kettle", "a violet moth"], strict=True):
            expect(page.locator("#status")).to_contain_text("Done", timeout=60_000)
            page.wait_for_timeout(500)
            page.get_by_role("tab", name="History").click()
            expect(page.locator("#history-note")).to_contain_text("1 image from this browser")
            page.fill("#history-search textarea, #history-search input", prompt.split()[-1])
            expect(page.locator("#history-note")).to_contain_text("1 image from")
            other = "moth" if "kettle" in prompt else "kettle"
            page.fill("#history-search textarea, #history-search input", other)
            expect(page.locator("#history-note")).to_contain_text("No image matches")
    finally:
        first.close()
        second.close()


def test_an_input_image_in_use_shows_by_every_run_button_and_clears_in_one_click(
    plain_app: str, browser: Browser
):
    page = opened(browser, plain_app, "laptop")
    try:
        chips = page.locator(".input-chip")
        expect(chips.filter(visible=True)).to_have_count(0)
        pick_provider(page, "diffusers-tiny")
        page.fill("#prompt textarea", "a tin robot")
        page.fill("#width input", "256")
        page.fill("#height input", "256")
        page.click("#generate")
        expect(page.locator("#status")).to_contain_text("Done", timeout=60_000)
        page.click("#use-as-input")
        expect(chips.filter(visible=True)).to_have_count(1)  # by Generate
        canvas = page.locator("#input-mask canvas").first.bounding_box()
        panel = page.locator("#image-input").bounding_box()
        assert canvas and panel and canvas["width"] >= 0.9 * panel["width"] - 40, (canvas, panel)  # paintable
        assert canvas["height"] >= 400
        page.get_by_role("tab", name="Sweep").click()
        visible = chips.filter(visible=True)
        expect(visible).to_have_count(1)  # by Run sweep: a sweep would start from it too
        visible.click()
        expect(chips.filter(visible=True)).to_have_count(0)
        page.get_by_role("tab", name="Generate").click()
        expect(chips.filter(visible=True)).to_have_count(0)
        expect(page.locator("#input-image img")).to_have_count(0)  # the image is gone from the panel
    finally:
        page.close()


FOCUSED = """() => {
    const e = document.activeElement, s = getComputedStyle(e);
    const ring = (s.outlineStyle !== "none" && parseFloat(s.outlineWidth) > 0) || s.boxShadow !== "none";
    return {id: e.id || (e.closest("[id]") || {}).id || e.tagName, ring};
}"""


def test_the_keyboard_reaches_generate_early_and_always_shows_where_it_is(plain_app: str, browser: Browser):
    page = opened(browser, plain_app, "laptop")
    try:
        page.wait_for_function("!document.querySelector('.pending')")
        stops = []
        for _ in range(36):  # the prompt, the tabs, the Generate row, then the settings
            page.keyboard.press("Tab")
            stops.append(page.evaluate(FOCUSED))
        ids = [stop["id"] for stop in stops]
        assert "generate" in ids[:12], ids
        assert ids.index("prompt") < ids.index("generate")
        unseen = [stop["id"] for stop in stops if not stop["ring"]]
        assert unseen == [], unseen  # checkboxes, radios, sliders and dropdowns included
        assert "negative-prompt" not in ids and "seed" not in ids  # greyed: guidance 0, random seed
    finally:
        page.close()
