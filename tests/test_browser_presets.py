"""Presets, share links, PNG info, history and copy-as-code in a real browser."""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser import chromium, pick_provider
from tests.serving import running_app
from tests.test_browser import ARTIFACTS

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[tuple[Page, str, Path]]:
    root = tmp_path_factory.mktemp("site")
    env = {
        "ZIMAGE_OUTPUT_DIR": str(root / "out"),
        "ZIMAGE_PRESETS_DIR": str(root / "team"),
        "ZIMAGE_HISTORY_DB": str(root / "runs.sqlite"),
        "ZIMAGE_BROWSER_SECRET": "test-secret",
    }
    with running_app(env) as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1100}, accept_downloads=True)
        page.goto(url)
        page.wait_for_selector("#prompt textarea")
        yield page, url, root


def fill_form(page: Page, prompt: str, width: str, height: str, seed: str) -> None:
    page.fill("#prompt textarea", prompt)
    page.fill("#width input", width)
    page.fill("#height input", height)
    if page.locator("#random-seed input").is_checked():
        page.uncheck("#random-seed input")
    page.fill("#seed input, #seed textarea", seed)


def import_file(page: Page, path: Path) -> None:
    with page.expect_file_chooser() as chooser:
        page.click("#import-preset")
    chooser.value.set_files(str(path))


def open_presets(page: Page) -> None:
    if not page.locator("#export-preset").is_visible():
        page.get_by_text("Presets and sharing").click()


def test_export_change_import_gives_the_settings_back(site):
    page, _url, root = site
    fill_form(page, "a red fox, at dawn: soft light", "320", "256", "4242")
    open_presets(page)
    page.fill("#preset-name textarea, #preset-name input", "Fox at dawn")
    page.click("#export-preset")
    link = page.locator("#exported-preset a").first
    expect(link).to_be_visible(timeout=15_000)
    with page.expect_download() as download_info:
        link.click()
    exported = root / "fox.json"
    download_info.value.save_as(exported)
    preset = json.loads(exported.read_text())
    assert (preset["prompt"], preset["width"], preset["seed"], preset["schema_version"]) == (
        "a red fox, at dawn: soft light",
        320,
        4242,
        1,
    )

    fill_form(page, "something else", "512", "512", "1")
    import_file(page, exported)
    expect(page.locator("#preset-status")).to_contain_text("Loaded preset", timeout=15_000)
    expect(page.locator("#prompt textarea")).to_have_value("a red fox, at dawn: soft light")
    expect(page.locator("#width input")).to_have_value("320")
    expect(page.locator("#seed input, #seed textarea").first).to_have_value("4242")


def test_a_bad_preset_is_refused_whole_and_the_form_stays(site):
    page, _url, root = site
    bad = root / "bad.json"
    bad.write_text(
        json.dumps({"prompt": "changed", "width": 1000, "api_key": "sk-123", "provider": "runpod"})
    )
    before = page.input_value("#prompt textarea")
    import_file(page, bad)
    expect(page.locator("#preset-status")).to_contain_text("refused", timeout=15_000)
    expect(page.locator("#preset-status")).to_contain_text("width")
    expect(page.locator("#preset-status")).to_contain_text("api_key")
    assert page.input_value("#prompt textarea") == before


def test_share_link_fills_the_form_when_opened(site):
    page, _url, _root = site
    fill_form(page, "a lighthouse in fog", "512", "384", "77")
    open_presets(page)
    page.click("#copy-link")
    link = page.locator("#share-link textarea, #share-link input").first
    page.wait_for_function(
        "document.querySelector('#share-link textarea, #share-link input').value.includes('seed=77')",
        timeout=15_000,
    )
    url = link.input_value()
    assert "prompt=a+lighthouse+in+fog" in url or "prompt=a%20lighthouse%20in%20fog" in url
    other = page.context.browser.new_page()
    other.goto(url)
    expect(other.locator("#prompt textarea")).to_have_value("a lighthouse in fog", timeout=15_000)
    expect(other.locator("#height input")).to_have_value("384")
    expect(other.locator("#seed input, #seed textarea").first).to_have_value("77")
    other.close()


def test_generate_then_png_info_history_and_copy_as_code(site):
    page, _url, root = site
    page.get_by_role("tab", name="Generate").click()
    pick_provider(page, "diffusers-tiny")
    fill_form(page, "a paper crane", "256", "256", "5150")
    page.click("#generate")
    expect(page.locator("#status")).to_contain_text("Done", timeout=60_000)
    page.get_by_text("What was sent").click()
    expect(page.locator("#code-curl")).to_contain_text("no HTTP request", timeout=10_000)
    page.get_by_role("tab", name="Python").click()
    expect(page.locator("#code-python")).to_contain_text("ZImagePipeline", timeout=10_000)
    expect(page.locator("#code-python")).to_contain_text("5150")

    image = next((root / "out").glob("*/diffusers-tiny-5150-0.png"))
    page.get_by_role("tab", name="PNG info").click()
    page.locator("#png-info-file input[type=file]").set_input_files(str(image))
    expect(page.locator("#png-info-read")).to_contain_text("a paper crane", timeout=15_000)
    fill_form(page, "changed", "512", "512", "1")
    page.click("#png-info-use")
    expect(page.locator("#prompt textarea")).to_have_value("a paper crane")
    expect(page.locator("#seed input, #seed textarea").first).to_have_value("5150")

    page.get_by_role("tab", name="History").click()
    page.locator("#history-gallery img").first.click()
    fill_form(page, "changed again", "512", "512", "2")
    page.click("#history-restore")
    expect(page.locator("#prompt textarea")).to_have_value("a paper crane", timeout=10_000)
    page.get_by_role("tab", name="History").click()  # restoring went back to Generate
    page.fill("#history-search textarea, #history-search input", "crane")
    expect(page.locator("#history-gallery .caption-label").first).to_contain_text("seed 5150", timeout=10_000)
    page.fill("#history-search textarea, #history-search input", "no such prompt")
    expect(page.locator("#history-note")).to_contain_text("No image matches", timeout=10_000)
    page.get_by_text("Team run log").click()
    page.fill("#history-table-search textarea, #history-table-search input", "crane")
    expect(page.locator("#history-table")).to_contain_text("a paper crane", timeout=10_000)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "history.png"), full_page=True)


def test_named_preset_saved_in_the_browser_survives_a_reload(site):
    page, url, _root = site
    fill_form(page, "a teapot", "256", "256", "9")
    open_presets(page)
    page.fill("#preset-name textarea, #preset-name input", "Teapot")
    page.click("#save-preset")
    expect(page.locator("#preset-status")).to_contain_text("Saved")
    page.goto(url)
    page.wait_for_selector("#prompt textarea")
    open_presets(page)
    page.click("#saved-presets input")
    page.get_by_role("option", name="Teapot").click()
    page.click("#load-preset")
    expect(page.locator("#prompt textarea")).to_have_value("a teapot", timeout=10_000)


def test_a_team_preset_saved_in_one_browser_is_listed_in_another_without_a_restart(site):
    page, url, root = site
    fill_form(page, "a team lighthouse", "256", "256", "41")
    open_presets(page)
    page.fill("#preset-name textarea, #preset-name input", "Team lighthouse")
    page.click("#team-save")
    expect(page.locator("#preset-status")).to_contain_text("Team lighthouse", timeout=10_000)
    assert list((root / "team").glob("*.json"))
    expect(page.locator("#presets")).not_to_contain_text(str(root / "team"))  # no server path shown
    other = page.context.browser.new_page(viewport={"width": 1400, "height": 1100})  # another browser
    try:
        other.goto(url)
        other.wait_for_selector("#prompt textarea")
        open_presets(other)
        other.click("#team-presets input")
        other.get_by_role("option", name="Team lighthouse").click()
        other.click("#team-load")
        expect(other.locator("#prompt textarea")).to_have_value("a team lighthouse", timeout=10_000)
    finally:
        other.close()
