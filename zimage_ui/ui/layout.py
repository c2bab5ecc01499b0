"""Layout builders for the Generate tab: each `build_*` makes one panel and returns its handles."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from zimage_ui.params import MAX_SEED, TURBO_SHIFT, TURBO_STEPS
from zimage_ui.providers import PROVIDERS, availability, choice_label
from zimage_ui.providers.base import KeyRing
from zimage_ui.sizes import SIZE_FAMILIES, size_choices

NEGATIVE_PROMPT_OFF = (
    "Turbo runs without guidance (0), so a negative prompt has no effect. Raise Guidance to use it."
)
TINY_NOTICE = (
    "**diffusers-tiny** runs the real Z-Image pipeline code with tiny *untrained* weights: "
    "its images are noise. It needs no download and no GPU; pick a hosted provider, or run "
    "with a GPU, for real images."
)


def provider_choices(keys: KeyRing) -> list[tuple[str, str]]:
    statuses = availability(keys)
    return [(choice_label(PROVIDERS[pid], status), pid) for pid, status in statuses.items()]


def all_key_names() -> list[str]:
    names: list[str] = []
    for provider in PROVIDERS.values():
        names.extend(name for name in provider.key_names if name not in names)
    return names


@dataclass
class PromptPanel:
    prompt: gr.Textbox
    negative_prompt: gr.Textbox


def build_prompt_panel() -> PromptPanel:
    prompt = gr.Textbox(
        label="Prompt",
        lines=3,
        max_lines=12,
        placeholder="a red fox in fresh snow, morning light",
        elem_id="prompt",
    )
    negative_prompt = gr.Textbox(
        label="Negative prompt",
        lines=1,
        interactive=False,
        info=NEGATIVE_PROMPT_OFF,
        elem_id="negative-prompt",
    )
    return PromptPanel(prompt, negative_prompt)


@dataclass
class ProviderPicker:
    provider: gr.Dropdown
    tiny_notice: gr.Markdown


def build_provider_picker(default_provider: str) -> ProviderPicker:
    provider = gr.Dropdown(
        label="Provider",
        choices=provider_choices(KeyRing.for_visitor()),
        value=default_provider,
        info="Where the image is made. Entries say why they can't be used here.",
        elem_id="provider",
    )
    tiny_notice = gr.Markdown(TINY_NOTICE, visible=default_provider == "diffusers-tiny")
    return ProviderPicker(provider, tiny_notice)


@dataclass
class SettingsPanel:
    size_family: gr.Radio
    size: gr.Dropdown
    width: gr.Number
    height: gr.Number
    seed: gr.Textbox
    random_seed: gr.Checkbox
    reuse_seed: gr.Button
    steps: gr.Slider
    guidance: gr.Slider
    shift: gr.Slider
    num_images: gr.Slider
    capabilities: gr.Markdown


def build_settings_panel() -> SettingsPanel:
    with gr.Group():
        with gr.Row():
            size_family = gr.Radio(label="Size family", choices=list(SIZE_FAMILIES), value="1024", scale=1)
            size = gr.Dropdown(
                label="Size", choices=size_choices("1024"), value="1024x1024", scale=2, elem_id="size"
            )
        with gr.Row():
            width = gr.Number(
                label="Width", value=1024, precision=0, step=16, minimum=256, maximum=2048, elem_id="width"
            )
            height = gr.Number(
                label="Height", value=1024, precision=0, step=16, minimum=256, maximum=2048, elem_id="height"
            )
    with gr.Group(), gr.Row(equal_height=True):
        # A textbox, not gr.Number: a number box can't be empty and would show a misleading 0.
        seed = gr.Textbox(
            label="Seed",
            value="",
            max_lines=1,
            scale=3,
            interactive=False,
            placeholder=f"random: a new seed each run (or 0..{MAX_SEED})",
            elem_id="seed",
        )
        random_seed = gr.Checkbox(label="Random seed", value=True, scale=1, elem_id="random-seed")
        reuse_seed = gr.Button("Reuse last seed", scale=1, size="sm", elem_id="reuse-seed")
    with gr.Row():
        steps = gr.Slider(label="Steps", minimum=1, maximum=50, step=1, value=TURBO_STEPS, elem_id="steps")
        shift = gr.Slider(
            label="Shift", minimum=1.0, maximum=10.0, step=0.1, value=TURBO_SHIFT, elem_id="shift"
        )
    with gr.Row():
        guidance = gr.Slider(
            label="Guidance", minimum=0.0, maximum=10.0, step=0.5, value=0.0, info="Turbo: 0"
        )
        num_images = gr.Slider(
            label="Number of images", minimum=1, maximum=4, step=1, value=1, elem_id="num-images"
        )
    capabilities = gr.Markdown(elem_id="capabilities")
    return SettingsPanel(
        size_family,
        size,
        width,
        height,
        seed,
        random_seed,
        reuse_seed,
        steps,
        guidance,
        shift,
        num_images,
        capabilities,
    )


@dataclass
class KeysPanel:
    boxes: dict[str, gr.Textbox]


def build_keys_panel() -> KeysPanel:
    names = all_key_names()
    boxes: dict[str, gr.Textbox] = {}
    with gr.Accordion("API keys (kept for this browser session only)", open=False, visible=bool(names)):
        gr.Markdown(
            "Keys set in the server's environment are used automatically. A key typed here is "
            "held for this browser session only and is never shown, logged or saved."
        )
        for name in names:
            boxes[name] = gr.Textbox(label=name, type="password", max_lines=1)
    return KeysPanel(boxes)


@dataclass
class OutputPanel:
    gallery: gr.Gallery
    seed_used: gr.Textbox
    status: gr.Markdown
    sent: gr.JSON
    curl: gr.Code
    python: gr.Code


def build_output_panel() -> OutputPanel:
    gallery = gr.Gallery(
        label="Images",
        format="png",
        columns=2,
        height=560,
        object_fit="contain",
        elem_id="gallery",
        interactive=False,
    )
    seed_used = gr.Textbox(label="Seed used", interactive=False, elem_id="seed-used")
    status = gr.Markdown("Ready.", elem_id="status")
    with gr.Accordion("What was sent", open=False):
        sent = gr.JSON(label="Prepared request (keys redacted)", elem_id="sent")
        with gr.Tab("cURL"):
            curl = gr.Code(
                language="shell", label="Copy as cURL (keys as variable names)", elem_id="code-curl"
            )
        with gr.Tab("Python"):
            python = gr.Code(language="python", label="Copy as Python (httpx)", elem_id="code-python")
    return OutputPanel(gallery, seed_used, status, sent, curl, python)
