"""The Gradio page: `build_demo()` lays the page out and asks each tab to wire itself.

The prompt heads the page; the tabs under it use it with the shared settings beside them
(size, seed, steps...; below the tabs on a phone), read and filled as one named form
(`form.py`): Generate on one provider, Compare several sides, Sweep a grid, read settings
back from a PNG, and browse the History. Each tab module owns its layout, its wiring and its
handlers. The public API is a Blocks of its own (`api.py`), served beside the page with the MCP
tools (`serve.py`).
"""

from __future__ import annotations

import gradio as gr

from zimage_ui.providers import default_provider_id
from zimage_ui.runs import cache_schedule
from zimage_ui.ui.api import API_PATH
from zimage_ui.ui.arena_tab import build_arena_tab
from zimage_ui.ui.common import SessionState
from zimage_ui.ui.compare_tab import build_compare_tab
from zimage_ui.ui.enhance_row import build_enhance_row
from zimage_ui.ui.form import Form
from zimage_ui.ui.generate_tab import build_generate_tab
from zimage_ui.ui.history_tab import build_history_tab
from zimage_ui.ui.info_tab import build_info_tab
from zimage_ui.ui.inputs_panel import build_inputs_panel
from zimage_ui.ui.presets_panel import build_presets_panel
from zimage_ui.ui.providers_tab import build_providers_tab
from zimage_ui.ui.settings_panel import build_keys_panel, build_prompt, build_settings_panel
from zimage_ui.ui.sweep_tab import build_sweep_tab

TITLE = "Z-Image-Turbo playground"
API_LINK = f"{API_PATH.lstrip('/')}/"  # relative: right behind a proxy or on a Space
# What the model can do, for a newcomer: long, concrete prompts, in English and Chinese, and text
# drawn in the image (Z-Image-Turbo writes both scripts).
EXAMPLES = [
    ["A red fox standing in fresh snow at dawn, its breath visible in the cold air, low golden "
     "sunlight through birch trees, shallow depth of field, wildlife photograph"],
    ['A neon sign that reads "OPEN 24 HOURS" above a small noodle bar on a rainy street at night, '
     "red and blue reflections on the wet asphalt, a cyclist passing in the background"],
    ["一只橘猫趴在江南老宅的木窗台上晒太阳，窗外是白墙黛瓦和小河，午后柔和的阳光，胶片质感"],
    ["一张复古电影海报，标题用金色毛笔字写着“长安夜宴”，画面是灯火通明的唐代城楼和夜空中的烟花"],
    ["A ceramic teapot and two small cups on a walnut table, steam rising, studio product photo "
     "with soft window light from the left and a plain beige background"],
]  # fmt: skip
# Ctrl+Enter (Cmd+Enter on a Mac) in the prompt runs the tab in view: Generate, Compare or Sweep.
PAGE_JS = """() => {
    const LIVE = "#status, #compare-summary, #sweep-status, #arena-status, #preset-status";
    document.addEventListener("keydown", (event) => {
        if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey)) { return; }
        if (!event.target.closest || !event.target.closest("#prompt")) { return; }
        const run = [...document.querySelectorAll("#generate, #compare-run, #sweep-run, #arena-run")]
            .find((button) => button.offsetParent !== null);
        if (run) { event.preventDefault(); run.click(); }
    });
    // Two of Gradio's labels that axe-core refuses, mended as they appear: an empty image or
    // gallery is a plain div with an aria-label, which ARIA forbids (as an image it may have one);
    // a gallery thumbnail is named "Thumbnail 1 of 2" over its visible caption "seed 7", so a
    // voice user saying what they see misses it (the name now starts with the caption).
    const mendLabels = () => {
        // Status lines change without a page load: a screen reader says each new message.
        document.querySelectorAll(LIVE).forEach((line) => line.setAttribute("aria-live", "polite"));
        document.querySelectorAll("div.empty[aria-label]:not([role])")
            .forEach((empty) => empty.setAttribute("role", "img"));
        // An output image is wrapped in a button (for select events) with no name of its own.
        document.querySelectorAll("div.image-container > button:not([aria-label])").forEach((button) => {
            const label = button.closest(".block")?.querySelector("[data-testid=block-label]")?.textContent;
            button.setAttribute("aria-label", `${label?.trim() || "Result"}: image`);
        });
        document.querySelectorAll("button.thumbnail-item[aria-label]").forEach((thumbnail) => {
            const caption = thumbnail.querySelector(".caption-label")?.textContent?.trim();
            const name = thumbnail.getAttribute("aria-label");
            if (caption && !name.startsWith(caption)) {
                thumbnail.setAttribute("aria-label", `${caption}, ${name.toLowerCase()}`);
            }
        });
    };
    // A gallery opening a new run's first image focuses its thumbnail, and the browser scrolled
    // the page to it, away from the prompt and Generate: that focus no longer scrolls.
    const focus = HTMLElement.prototype.focus;
    HTMLElement.prototype.focus = function (options) {
        const thumbnail = this.matches && this.matches("button.thumbnail-item");
        return focus.call(this, thumbnail ? { ...options, preventScroll: true } : options);
    };
    mendLabels();
    new MutationObserver(mendLabels).observe(document.body, { childList: true, subtree: true });
}"""


def build_demo() -> gr.Blocks:
    default_provider = default_provider_id()
    # Gradio's cache holds every file the page hands out; files older than the TTL are deleted.
    with gr.Blocks(title=TITLE, delete_cache=cache_schedule()) as demo:
        gr.Markdown(
            f"# {TITLE}\nOne prompt, any provider: your own GPU or a hosted API, side by side. "
            f"[Use via API]({API_LINK})",
            elem_id="header",
        )
        state = SessionState()
        # The job comes first: the prompt, then the tabs with their Run buttons and results; the
        # settings stand beside them, and under them where the page is too narrow for both (a
        # phone), so that the prompt, Generate and the result share the first screen.
        with gr.Row(elem_id="page"):
            with gr.Column(scale=7, min_width=320, elem_id="work"):
                prompt = build_prompt()
                enhance_row = build_enhance_row()
                with gr.Tabs(overflow_behavior="wrap", elem_id="tabs") as tabs:  # no tab behind a menu
                    with gr.Tab("Generate", id="generate"):
                        generate = build_generate_tab(default_provider)
                        gr.Examples(EXAMPLES, [prompt], label="Examples: one click puts it in the prompt")
                    with gr.Tab("Compare", id="compare"):
                        compare = build_compare_tab(default_provider)
                    with gr.Tab("Sweep", id="sweep"):
                        sweep = build_sweep_tab(default_provider)
                    with gr.Tab("Arena", id="arena") as arena_tab:
                        arena = build_arena_tab()
                    with gr.Tab("Providers", id="providers") as providers_tab:
                        report = build_providers_tab()
                    with gr.Tab("PNG info", id="png-info"):
                        info = build_info_tab()
                    with gr.Tab("History", id="history") as history_tab:
                        past = build_history_tab()
            with gr.Column(scale=4, min_width=320, elem_id="side-panel"):
                with gr.Accordion("Settings", open=True, elem_id="settings"):
                    panel = build_settings_panel(prompt)
                image_inputs = build_inputs_panel()
                presets = build_presets_panel()
                keys = build_keys_panel()

        form = Form(
            panel.settings,
            generate.provider,
            compare.count,
            compare.sides,
            tabs,
            image_inputs,
            enhance_row.rewrite,
            enhance_row.each_run,
        )
        enhance_row.wire(prompt)
        panel.wire(state.last_seed)
        image_inputs.wire()
        image_inputs.show_chips([generate.input_chip, compare.input_chip, sweep.input_chip, arena.input_chip])
        keys.wire(state.keys, [generate.provider, sweep.provider, *(side.provider for side in compare.sides)])
        generate.wire(demo, form, panel, state)
        compare.wire(form, state)
        sweep.wire(form, state)
        arena.wire(arena_tab, form, state)
        report.wire(providers_tab, state)
        presets.wire(demo, form, state.keys)
        info.wire(form, presets, sweep)
        past.wire(demo, history_tab, form, presets, state)
        state.keep_fresh()
        demo.load(None, None, None, js=PAGE_JS)
    return demo
