"""The Gradio page: `build_demo()` assembles the panels and wires their events.

Shared settings (prompt, size, seed, steps...) sit on the left; the tabs on the right
use them: Generate on one provider, Compare several sides, Sweep a grid, read settings
back from a PNG, and browse the History.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from zimage_ui.providers import default_provider_id
from zimage_ui.runs import cache_ttl_s
from zimage_ui.ui import compare_tab, handlers, info_tab, presets_panel, sweep_tab
from zimage_ui.ui.form import Form
from zimage_ui.ui.layout import (
    build_keys_panel,
    build_output_panel,
    build_prompt_panel,
    build_provider_picker,
    build_settings_panel,
)

TITLE = "Z-Image-Turbo playground"
# Ctrl+Enter (Cmd+Enter on a Mac) in the prompt runs the tab in view: Generate, Compare or Sweep.
RUN_FROM_KEYBOARD_JS = """() => {
    document.addEventListener("keydown", (event) => {
        if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey)) { return; }
        if (!event.target.closest || !event.target.closest("#prompt")) { return; }
        const run = [...document.querySelectorAll("#generate, #compare-run, #sweep-run")]
            .find((button) => button.offsetParent !== null);
        if (run) { event.preventDefault(); run.click(); }
    });
}"""
PRIVATE: dict[str, Any] = {"queue": False, "api_visibility": "private"}


def build_demo() -> gr.Blocks:
    default_provider = default_provider_id()
    ttl = int(cache_ttl_s())
    # Gradio's cache holds every file the page hands out; files older than the TTL are deleted.
    with gr.Blocks(title=TITLE, delete_cache=(max(60, min(ttl // 4, 900)), ttl)) as demo:
        gr.Markdown(f"# {TITLE}\nOne prompt, any provider: your own GPU or a hosted API, side by side.")
        session_keys = gr.State({})
        last_seed = gr.State(None)
        last_prepared = gr.State(None)
        history = gr.State([])
        with gr.Row():
            with gr.Column(scale=4, min_width=360):
                prompt_panel = build_prompt_panel()
                settings = build_settings_panel()
                presets = presets_panel.build_presets_panel()
                keys = build_keys_panel()
            with gr.Column(scale=7), gr.Tabs() as tabs:
                with gr.Tab("Generate", id="generate"):
                    picker = build_provider_picker(default_provider)
                    with gr.Row():
                        generate_button = gr.Button("Generate", variant="primary", elem_id="generate")
                        stop_button = gr.Button("Stop", variant="stop", elem_id="stop")
                    output = build_output_panel()
                with gr.Tab("Compare", id="compare"):
                    compare = compare_tab.build_compare_tab(default_provider)
                with gr.Tab("Sweep", id="sweep"):
                    sweep = sweep_tab.build_sweep_tab(default_provider)
                with gr.Tab("PNG info", id="png-info"):
                    info = info_tab.build_info_tab()
                with gr.Tab("History", id="history"):
                    past = info_tab.build_history_tab()

        shared = [
            prompt_panel.prompt, prompt_panel.negative_prompt, settings.width, settings.height,
            settings.seed, settings.random_seed, settings.steps, settings.guidance, settings.shift,
            settings.num_images,
        ]  # fmt: skip
        side_inputs = [
            c for side in compare.sides for c in (side.provider, side.steps, side.shift, side.size)
        ]
        form = Form(shared, picker.provider, compare.count, side_inputs, tabs)
        provider_dropdowns = [picker.provider, sweep.provider, *(side.provider for side in compare.sides)]

        # Settings follow what the chosen provider can do.
        provider_outputs = [
            picker.tiny_notice, settings.steps, settings.shift, settings.guidance,
            prompt_panel.negative_prompt, settings.num_images, settings.capabilities,
        ]  # fmt: skip
        for trigger in (picker.provider.change, demo.load):
            trigger(
                handlers.on_provider_change,
                [picker.provider, settings.guidance, settings.steps, settings.num_images],
                provider_outputs,
                **PRIVATE,
            )
        settings.guidance.change(
            handlers.negative_prompt_update,
            [picker.provider, settings.guidance],
            prompt_panel.negative_prompt,
            **PRIVATE,
        )
        # No loop: the Size box writes width and height only when a person picks a size (.input);
        # width and height, however set, write the Size box back (.change).
        settings.size_family.input(
            handlers.on_family_change,
            [settings.size_family, settings.width, settings.height],
            [settings.size, settings.width, settings.height],
            **PRIVATE,
        )
        settings.size.input(
            handlers.on_size_change, settings.size, [settings.width, settings.height], **PRIVATE
        )
        # .change, not .input: a preset, a share link or PNG info setting the size counts too.
        gr.on(
            [settings.width.change, settings.height.change],
            handlers.on_custom_size,
            [settings.width, settings.height, settings.size_family],
            settings.size,
            **PRIVATE,
        )
        settings.random_seed.change(handlers.on_random_toggle, settings.random_seed, settings.seed, **PRIVATE)
        settings.reuse_seed.click(
            handlers.on_reuse_seed, last_seed, [settings.seed, settings.random_seed], **PRIVATE
        )
        for box in keys.boxes.values():
            box.change(
                handlers.keys_changed(len(provider_dropdowns)),
                list(keys.boxes.values()),
                [session_keys, *provider_dropdowns],
                **PRIVATE,
            )

        # Generate. Hosted calls are I/O and must not queue behind one another, so no concurrency
        # limit here; local generations are serialised by the provider itself (one device, one run).
        gr.on(
            [generate_button.click, prompt_panel.prompt.submit],
            handlers.generate,
            [picker.provider, *shared, session_keys, history],
            [output.gallery, output.seed_used, output.status, output.sent, last_seed, last_prepared, history],
            api_name="generate",
            concurrency_limit=None,
            show_progress_on=output.gallery,
        ).then(handlers.show_code, [last_prepared, session_keys], [output.curl, output.python], **PRIVATE)
        stop_button.click(handlers.stop_handler("generate"), None, output.status, **PRIVATE)

        # Compare.
        compare.count.change(
            compare_tab.on_count_change,
            compare.count,
            [*(side.row for side in compare.sides), *(r.column for r in compare.results), compare.blind],
            **PRIVATE,
        )
        result_outputs = [c for r in compare.results for c in (r.title, r.image, r.status, r.sent)]
        compare.run.click(
            compare_tab.run_compare,
            [*shared, session_keys, compare.count, compare.blind, *side_inputs, history],
            [
                *result_outputs,
                compare.summary,
                compare.images,
                compare.left,
                compare.right,
                compare.slider,
                compare.blind_state,
                compare.vote_row,
                history,
            ],
            api_name="compare",
            concurrency_limit=None,
        )
        compare.stop.click(handlers.stop_handler("compare"), None, compare.summary, **PRIVATE)
        for picker_box in (compare.left, compare.right):
            picker_box.change(
                compare_tab.on_slider_pick,
                [compare.images, compare.left, compare.right],
                compare.slider,
                **PRIVATE,
            )
        for verdict, button in compare.vote_buttons.items():
            button.click(
                compare_tab.vote_handler(verdict),
                compare.blind_state,
                [
                    compare.results[0].title,
                    compare.results[1].title,
                    compare.summary,
                    compare.blind_state,
                    compare.vote_row,
                    compare.leaderboard,
                ],
                **PRIVATE,
            )

        # Sweep.
        gr.on(
            [
                sweep.x_kind.change,
                sweep.x_values.change,
                sweep.y_kind.change,
                sweep.y_values.change,
                prompt_panel.prompt.change,
            ],
            sweep_tab.cell_count_text,
            [sweep.x_kind, sweep.x_values, sweep.y_kind, sweep.y_values, prompt_panel.prompt],
            sweep.cells,
            **PRIVATE,
        )
        sweep.run.click(
            sweep_tab.run_sweep_ui,
            [
                *shared,
                session_keys,
                sweep.provider,
                sweep.x_kind,
                sweep.x_values,
                sweep.y_kind,
                sweep.y_values,
            ],
            [sweep.status, sweep.grid, sweep.gallery, sweep.grid_file],
            api_name="sweep",
            concurrency_limit=None,
        )
        sweep.stop.click(handlers.stop_handler("sweep"), None, sweep.status, **PRIVATE)

        # Presets and sharing: every change to the form goes through Form.outputs, whole or not at all.
        fill = [presets.status, *form.outputs]
        preset_inputs = [
            *shared,
            picker.provider,
            presets.include_sides,
            compare.count,
            *side_inputs,
            presets.name,
        ]
        presets.export.click(
            presets_panel.export_file, preset_inputs, [presets.exported, presets.status], **PRIVATE
        )
        presets.upload.upload(presets_panel.import_file, [presets.upload, session_keys], fill, **PRIVATE)
        presets.save.click(
            presets_panel.save_in_browser,
            [presets.store, *preset_inputs],
            [presets.store, presets.saved, presets.status],
            **PRIVATE,
        )
        presets.load.click(
            presets_panel.load_from_browser, [presets.saved, presets.store, session_keys], fill, **PRIVATE
        )
        presets.delete.click(
            presets_panel.delete_from_browser,
            [presets.saved, presets.store],
            [presets.store, presets.saved, presets.status],
            **PRIVATE,
        )
        presets.team_load.click(presets_panel.load_from_team, [presets.team, session_keys], fill, **PRIVATE)
        presets.team_save.click(
            presets_panel.save_to_team, preset_inputs, [presets.team, presets.status], **PRIVATE
        )
        presets.link_button.click(
            presets_panel.share_link_query, preset_inputs, [presets.query, presets.status], **PRIVATE
        ).then(None, presets.query, presets.link, js=presets_panel.SHARE_LINK_JS)
        demo.load(None, None, None, js=RUN_FROM_KEYBOARD_JS)
        demo.load(presets_panel.refresh_saved, presets.store, presets.saved, **PRIVATE)
        demo.load(presets_panel.fill_from_link, None, fill, **PRIVATE)

        # PNG info and history.
        info.file.change(
            info_tab.on_png,
            info.file,
            [info.message, info.read, info.ignored, info.use, info.again, info.readback],
            **PRIVATE,
        )
        # The outcome shows where the person is (the PNG info tab) as well as in the presets status.
        info.use.click(info_tab.use_readback, [info.readback, info.theirs], [*fill, info.message], **PRIVATE)
        sweep_fields = [sweep.provider, sweep.x_kind, sweep.x_values, sweep.y_kind, sweep.y_values]
        info.again.click(info_tab.sweep_again, info.readback, [*fill, *sweep_fields, info.message], **PRIVATE)
        history.change(info_tab.history_gallery, history, past.gallery, **PRIVATE)
        past.gallery.select(info_tab.on_history_select, None, [past.selected, past.restore], **PRIVATE)
        past.restore.click(
            info_tab.restore_from_history, [past.selected, history, session_keys], fill, **PRIVATE
        )
        past.search.change(info_tab.search_runs, past.search, past.table, **PRIVATE)
        demo.load(info_tab.search_runs, past.search, past.table, **PRIVATE)
        past.export.click(info_tab.export_runs, None, past.csv, **PRIVATE)
    return demo
