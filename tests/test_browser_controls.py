"""Controls that tell the truth: every provider switch recomputes every hint and range."""

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.browser import page_at, pick_provider
from zimage_ui.providers import PROVIDERS

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def page(plain_app: str) -> Iterator[Page]:
    with page_at(plain_app) as page:
        yield page


def set_steps(page: Page, value: int) -> None:
    box = page.locator("#steps input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def test_buttons_with_nothing_to_act_on_say_so(page: Page):
    """Runs first in this module: no image has been made on this page yet."""
    page.click("#reuse-seed")
    expect(page.locator(".toast-body").last).to_contain_text("No image yet: generate once")
    page.get_by_role("tab", name="Compare").click()
    page.click("#slider-left input")
    page.get_by_role("option", name="2").first.click()
    expect(page.locator(".toast-body").last).to_contain_text("Run a comparison first")
    page.get_by_role("tab", name="Generate").click()


def test_every_provider_switch_recomputes_hints_and_ranges(page: Page):
    order = [*PROVIDERS, "diffusers-tiny", "evolink", "diffusers-tiny"]  # and back again
    for provider_id in order:
        pick_provider(page, provider_id)
        caps = PROVIDERS[provider_id].capabilities
        steps = page.locator("#steps")
        if caps.steps_range:
            low, high = caps.steps_range
            expect(steps).to_contain_text(f"{low}..{high} on {provider_id}")
            expect(page.locator("#steps input[type=range]")).to_have_attribute("max", str(high))
            expect(page.locator("#steps input[type=number]")).to_be_enabled()
        else:
            expect(steps).to_contain_text(f"{provider_id} picks its own steps")
        expect(steps).not_to_contain_text("picks its own steps" if caps.steps_range else "..50 on")
        shift_hint = "scheduler shift" if caps.shift else f"not adjustable on {provider_id}"
        expect(page.locator("#shift")).to_contain_text(shift_hint)
        images_hint = f"up to {caps.max_images}" if caps.max_images > 1 else "one image per run"
        expect(page.locator("#num-images")).to_contain_text(images_hint)
        negative = page.locator("#negative-prompt")
        if not caps.negative_prompt:
            expect(negative).to_contain_text("takes no negative prompt")
        elif not caps.guidance:
            expect(negative).to_contain_text("applies it its own way")
            expect(negative.locator("textarea")).to_be_enabled()
        else:
            expect(negative).to_contain_text("Raise Guidance")
        if provider_id not in {"diffusers", "diffusers-tiny"}:
            expect(page.locator("#capabilities")).to_contain_text(f"{provider_id} is not usable here")


def test_steps_out_of_range_are_clamped_with_a_note(page: Page):
    pick_provider(page, "diffusers-tiny")
    set_steps(page, 20)
    pick_provider(page, "aimlapi")
    expect(page.locator("#steps input[type=number]")).to_have_value("8")
    expect(page.locator("#steps")).to_contain_text("set to 8: aimlapi takes 1..8 steps (was 20)")
    pick_provider(page, "diffusers-tiny")
    set_steps(page, 8)


def test_the_size_box_always_matches_width_and_height(page: Page):
    page.fill("#width input", "832")
    page.fill("#height input", "1248")
    page.locator("#height input").press("Tab")
    expect(page.locator("#size input")).to_have_value("832x1248 (2:3)")
    page.fill("#width input", "800")
    page.locator("#width input").press("Tab")
    expect(page.locator("#size input")).to_have_value("Custom")
    page.fill("#width input", "1024")
    page.fill("#height input", "1024")
    page.locator("#height input").press("Tab")
    expect(page.locator("#size input")).to_have_value("1024x1024 (1:1)")
    page.get_by_label("1280", exact=True).check()  # a family without 1024x1024: its first size
    expect(page.locator("#width input")).to_have_value("1280")
    expect(page.locator("#size input")).to_have_value("1280x1280 (1:1)")
    page.get_by_label("1024", exact=True).check()
    expect(page.locator("#width input")).to_have_value("1024")
    expect(page.locator("#size input")).to_have_value("1024x1024 (1:1)")


def test_a_width_of_13_is_said_in_words_naming_the_field_with_no_error_badge(page: Page):
    pick_provider(page, "diffusers-tiny")
    page.fill("#prompt textarea", "a red fox")
    page.fill("#width input", "13")
    page.locator("#width input").press("Tab")
    expect(page.locator("#size input")).to_have_value("Custom")
    page.click("#generate")
    status = page.locator("#status")
    expect(status).to_contain_text("width: 13 is outside 256..2048")
    expect(page.get_by_text("Error", exact=True)).to_have_count(0)  # no badge, no generic toast
    expect(page.get_by_text("minimum value")).to_have_count(0)
    page.fill("#width input", "256")
    page.fill("#height input", "256")
    page.locator("#height input").press("Tab")
    page.click("#generate")
    expect(status).to_contain_text("Done", timeout=60_000)  # the old message does not stay
    expect(status).not_to_contain_text("width: 13")
    page.fill("#width input", "1024")
    page.fill("#height input", "1024")
    page.locator("#height input").press("Tab")


def test_saving_a_preset_without_a_name_says_a_name_is_needed(page: Page):
    page.get_by_text("Presets and sharing").click()
    page.fill("#preset-name input", "")
    page.click("#save-preset")
    expect(page.locator("#preset-status")).to_contain_text("Give the preset a name first")


def test_export_of_an_invalid_form_says_why(page: Page):
    page.fill("#prompt textarea", "a kite")
    page.fill("#width input", "500")
    page.locator("#width input").press("Tab")
    page.click("#export-preset")
    expect(page.locator("#preset-status")).to_contain_text("multiple of 16")
    page.fill("#width input", "1024")
    page.locator("#width input").press("Tab")


def test_ctrl_enter_in_the_prompt_generates(page: Page):
    pick_provider(page, "diffusers-tiny")
    page.fill("#width input", "256")
    page.fill("#height input", "256")
    page.locator("#height input").press("Tab")
    prompt = page.locator("#prompt textarea")
    prompt.fill("a paper lantern")
    prompt.press("Control+Enter")
    expect(page.locator("#status")).to_contain_text("Done", timeout=60_000)
    assert prompt.input_value() == "a paper lantern"  # no newline added


def test_blind_mode_is_only_offered_for_two_sides(page: Page):
    page.get_by_role("tab", name="Compare").click()
    blind = page.locator("#blind input")
    page.locator("#sides input[type=number]").fill("3")
    page.locator("#sides input[type=number]").press("Enter")
    expect(blind).to_be_disabled()
    expect(page.locator("#blind")).to_contain_text("compares exactly 2 sides")
    page.locator("#sides input[type=number]").fill("2")
    page.locator("#sides input[type=number]").press("Enter")
    expect(blind).to_be_enabled()
    page.get_by_role("tab", name="Generate").click()


def test_a_sweep_value_out_of_range_is_said_before_running_naming_the_field(page: Page):
    page.get_by_role("tab", name="Sweep").click()
    page.fill("#prompt textarea", "a red fox")
    page.fill("#sweep-x-values textarea, #sweep-x-values input", "0, 4")
    expect(page.locator("#sweep-cells")).to_contain_text("0 steps is outside 1..50")  # as typed
    page.click("#sweep-run")
    expect(page.locator("#sweep-status")).to_contain_text("0 steps is outside 1..50", timeout=15_000)
    expect(page.locator("#sweep-status")).not_to_contain_text("Running")
    expect(page.get_by_text("Error", exact=True)).to_have_count(0)  # no bare badge
    page.fill("#sweep-x-values textarea, #sweep-x-values input", "4, 8")
    expect(page.locator("#sweep-cells")).to_contain_text("2 cells")
    page.get_by_role("tab", name="Generate").click()
