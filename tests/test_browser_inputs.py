"""The Image input panel in a real browser: upload, strength, generate on the tiny model, see the
strength in the notes; a text-only provider greys the input image out and says why."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser import page_at, pick_provider

pytestmark = pytest.mark.browser
SCREENSHOT = Path("/tmp/inputs.png")


@pytest.fixture(scope="module")
def page(plain_app: str) -> Iterator[Page]:
    with page_at(plain_app) as page:
        yield page


def open_panel(page: Page) -> None:
    if not page.locator("#input-strength").is_visible():
        page.locator("#image-input").get_by_text("Image input", exact=True).first.click()
    expect(page.locator("#input-strength")).to_be_visible()


def test_an_uploaded_image_and_its_strength_reach_the_tiny_model(page: Page, photo: Path):
    page.fill("#prompt textarea", "a red fox in fresh snow")
    pick_provider(page, "diffusers-tiny")
    page.fill("#width input", "256")
    page.fill("#height input", "256")
    open_panel(page)
    expect(page.locator("#inputs-note")).to_contain_text("diffusers-tiny takes every input here")
    page.locator("#input-image input[type=file]").set_input_files(str(photo))
    expect(page.locator("#input-image img").first).to_be_visible(timeout=15_000)
    # the upload becomes the mask editor's background, to paint on
    expect(page.locator("#input-mask canvas").first).to_be_visible(timeout=15_000)
    strength = page.locator("#input-strength input[type=number]")
    strength.fill("0.35")
    strength.press("Enter")
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    page.click("#generate")
    expect(page.locator("#gallery img").first).to_be_visible(timeout=90_000)
    status = page.locator("#status")
    expect(status).to_contain_text("Done", timeout=30_000)
    expect(status).to_contain_text("strength 0.35: 3 of 8 steps run")
    page.get_by_text("What was sent", exact=True).first.click()
    expect(page.locator("#sent")).to_contain_text("strength 0.35")


def test_a_mask_painted_with_the_brush_reaches_the_tiny_model(page: Page):
    open_panel(page)
    canvas = page.locator("#input-mask canvas").first
    canvas.scroll_into_view_if_needed()
    page.locator("#input-mask button[aria-label*='Brush' i]").first.click()
    box = canvas.bounding_box()
    assert box is not None
    x0, y0 = box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.3
    page.mouse.move(x0, y0)
    page.mouse.down()
    for i in range(1, 20):
        page.mouse.move(x0 + i * 4, y0 + i * 3, steps=2)
    page.mouse.up()
    page.click("#generate")
    status = page.locator("#status")
    expect(status).to_contain_text("Done", timeout=90_000)
    sent = page.locator("#sent")
    if not sent.is_visible():
        page.get_by_text("What was sent", exact=True).first.click()
    expect(sent).to_contain_text("ZImageInpaintPipeline")  # a mask: the inpainting pipeline ran
    expect(sent).to_contain_text("the mask '")  # the painted mask, by its file name
    expect(sent).not_to_contain_text("zimage-masks")  # never the server's folder


def test_use_as_input_puts_the_result_in_the_input_image(page: Page):
    before = page.locator("#input-image img").first.get_attribute("src")
    page.click("#use-as-input")
    expect(page.locator("#input-image img").first).not_to_have_attribute("src", before or "", timeout=15_000)


def test_a_text_only_provider_greys_out_the_image_input_and_says_why(page: Page):
    open_panel(page)
    pick_provider(page, "aimlapi")
    reason = "aimlapi takes no input image: text-to-image only"
    expect(page.locator("#inputs-note")).to_contain_text(reason)
    expect(page.locator("#input-image")).to_contain_text("Input image (not on aimlapi)")
    expect(page.locator("#input-image input[type=file]")).to_have_count(0)
    expect(page.locator("#input-strength")).to_contain_text("not on aimlapi (see above)")  # said once
    expect(page.locator("#image-input").get_by_text(reason)).to_have_count(1)
    expect(page.locator("#input-strength input[type=number]")).to_be_disabled()
    expect(page.locator("#input-image-url textarea, #input-image-url input").first).to_be_disabled()
    expect(page.locator("#input-mask-off")).to_contain_text("Mask: not on aimlapi (see above)")
    expect(page.locator("#input-mask")).to_be_hidden()
    for section in ("ControlNet", "LoRA"):
        page.locator("#image-input").get_by_text(section, exact=True).first.click()
    expect(page.locator("#lora-1-ref")).to_contain_text("not on aimlapi (see above)")
    expect(page.locator("#inputs-note")).to_contain_text("aimlapi takes no LoRA")
    expect(page.locator("#lora-1-scale input[type=number]")).to_be_disabled()
    page.screenshot(path=str(SCREENSHOT.with_name("inputs-greyed.png")), full_page=True)
    expect(page.get_by_text("Error", exact=True)).to_have_count(0)  # every update applied
    pick_provider(page, "diffusers-tiny")
    expect(page.locator("#input-strength input[type=number]")).to_be_enabled()
    expect(page.locator("#input-mask")).to_be_visible()
    expect(page.get_by_text("Error", exact=True)).to_have_count(0)
    expect(page.locator("#inputs-note")).to_contain_text("diffusers-tiny takes every input here")
