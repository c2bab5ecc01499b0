"""The Gradio page: `build_demo()` assembles the panels and wires their events."""

from __future__ import annotations

import gradio as gr

from zimage_ui.providers import default_provider_id
from zimage_ui.ui import handlers
from zimage_ui.ui.layout import (
    build_keys_panel,
    build_output_panel,
    build_prompt_panel,
    build_settings_panel,
)

TITLE = "Z-Image-Turbo playground"


def build_demo() -> gr.Blocks:
    default_provider = default_provider_id()
    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown(f"# {TITLE}\nOne prompt, any provider: your own GPU or a hosted API.")
        session_keys = gr.State({})
        last_seed = gr.State(None)
        with gr.Tab("Generate"), gr.Row():
            with gr.Column(scale=5):
                prompt_panel = build_prompt_panel(default_provider)
                settings = build_settings_panel()
                with gr.Row():
                    generate_button = gr.Button("Generate", variant="primary", elem_id="generate")
                    stop_button = gr.Button("Stop", variant="stop", elem_id="stop")
                keys = build_keys_panel()
            with gr.Column(scale=6):
                output = build_output_panel()

        provider_outputs = [
            prompt_panel.tiny_notice,
            settings.steps,
            settings.shift,
            settings.guidance,
            prompt_panel.negative_prompt,
            settings.num_images,
            settings.capabilities,
        ]
        prompt_panel.provider.change(
            handlers.on_provider_change,
            [prompt_panel.provider, settings.guidance],
            provider_outputs,
            queue=False,
            api_visibility="private",
        )
        demo.load(
            handlers.on_provider_change,
            [prompt_panel.provider, settings.guidance],
            provider_outputs,
            queue=False,
            api_visibility="private",
        )
        settings.guidance.change(
            handlers.negative_prompt_update,
            [prompt_panel.provider, settings.guidance],
            prompt_panel.negative_prompt,
            queue=False,
            api_visibility="private",
        )
        settings.size_family.change(
            handlers.on_family_change,
            settings.size_family,
            settings.size,
            queue=False,
            api_visibility="private",
        )
        settings.size.change(
            handlers.on_size_change,
            settings.size,
            [settings.width, settings.height],
            queue=False,
            api_visibility="private",
        )
        settings.random_seed.change(
            handlers.on_random_toggle,
            settings.random_seed,
            settings.seed,
            queue=False,
            api_visibility="private",
        )
        settings.reuse_seed.click(
            handlers.on_reuse_seed,
            last_seed,
            [settings.seed, settings.random_seed],
            queue=False,
            api_visibility="private",
        )
        for box in keys.boxes.values():
            box.change(
                handlers.on_keys_change,
                list(keys.boxes.values()),
                [session_keys, prompt_panel.provider],
                queue=False,
                api_visibility="private",
            )

        generate_inputs = [
            prompt_panel.provider,
            prompt_panel.prompt,
            prompt_panel.negative_prompt,
            settings.width,
            settings.height,
            settings.seed,
            settings.random_seed,
            settings.steps,
            settings.guidance,
            settings.shift,
            settings.num_images,
            session_keys,
        ]
        generate_outputs = [output.gallery, output.seed_used, output.status, output.sent, last_seed]
        # Hosted calls are I/O and must not queue behind one another: no concurrency limit here.
        # Local GPU generations are serialised by the provider itself (one device, one run).
        gr.on(
            [generate_button.click, prompt_panel.prompt.submit],
            handlers.generate,
            generate_inputs,
            generate_outputs,
            api_name="generate",
            concurrency_limit=None,
        )
        stop_button.click(handlers.stop, None, output.status, queue=False, api_visibility="private")
    return demo
