"""Serving engines on the page, in Chromium: two OpenAI-style endpoints side by side in Compare, and
ComfyUI's websocket steps in the progress bar, with Stop interrupting the prompt."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.browser import app_page, pick_provider
from tests.emulators.comfyui import ComfyUIEmulator
from tests.emulators.openai_images import OpenAIImagesEmulator

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def engines() -> Iterator[dict[str, object]]:
    started = {
        "sglang": OpenAIImagesEmulator("sglang", "ZIMAGE_OPENAI_SGLANG").start(),
        "vllm": OpenAIImagesEmulator("vllm-omni", "ZIMAGE_OPENAI_VLLM").start(),
        "comfyui": ComfyUIEmulator().start(),
    }
    yield started
    for emulator in started.values():
        emulator.stop()  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def page(engines: dict) -> Iterator[Page]:
    env = {"ZIMAGE_SERVER_KEYS": "all", "NO_PROXY": "127.0.0.1,localhost", "ZIMAGE_TIMEOUT_S": "60"}
    for emulator in engines.values():
        env |= emulator.env()
    with app_page(env) as page:
        yield page


def test_two_engines_side_by_side_in_compare(page: Page, engines: dict):
    page.fill("#prompt textarea", "a tram in the rain")
    page.fill("#width input", "512")
    page.fill("#height input", "512")
    page.get_by_role("tab", name="Compare").click()
    for side, provider in ((1, "openai-sglang"), (2, "openai-vllm")):
        page.click(f"#side-{side}-provider input")
        page.get_by_role("option", name=f"{provider}:").first.click()
    page.click("#compare-run")
    expect(page.locator("#compare-summary")).to_contain_text("2 of 2 sides done", timeout=60_000)
    for side in (1, 2):
        expect(page.locator(f"#side-{side}-image img")).to_be_visible()
        expect(page.locator(f"#side-{side}-status")).to_contain_text("Done")
    for name in ("sglang", "vllm"):
        (call,) = engines[name].calls("POST", "/images/generations")
        assert call.body["size"] == "512x512" and call.body["num_inference_steps"] == 8
    assert engines["sglang"].calls("POST")[0].body["seed"] == engines["vllm"].calls("POST")[0].body["seed"]


def test_comfyui_steps_show_in_the_progress_bar_and_stop_interrupts(page: Page, engines: dict):
    comfyui = engines["comfyui"]
    comfyui.behaviour.job_delay_s = 20  # 8 steps, 2.5 s each
    page.get_by_role("tab", name="Generate").click()
    pick_provider(page, "comfyui")
    page.click("#generate")
    bar = page.locator("#status [role=progressbar]")
    expect(bar).to_have_attribute("aria-valuetext", re.compile(r"step [1-8]/8"), timeout=30_000)
    page.click("#stop")
    expect(page.locator("#status")).to_contain_text("Stopped", timeout=15_000)
    assert comfyui.calls("POST", "/interrupt"), "Stop reached ComfyUI as an interrupt"
