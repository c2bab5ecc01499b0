"""The Generate tab: one provider, live progress and a preview, the images with their seeds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from zimage_ui.codegen import copy_as_code
from zimage_ui.params import GenerationParams
from zimage_ui.providers import PROVIDERS, availability, default_provider_id, get_provider
from zimage_ui.providers.base import Capabilities, KeyRing, PreparedRequest, Progress, ProgressFn
from zimage_ui.runner import Outcome, generate_one
from zimage_ui.settings import TABLE
from zimage_ui.ui.common import (
    PRIVATE,
    PRIVATE_SAYING,
    Fresh,
    SessionState,
    follow_latest,
    on_run,
    outcome_status,
    owned_run,
    progress_reporter,
    run_buttons,
    run_label,
    save_run_files,
    stop_handler,
    user_error,
)
from zimage_ui.ui.endpoints import ApiArg, settings_endpoint
from zimage_ui.ui.form import UNCHANGED, Block, Form, Updates, Values, api_params
from zimage_ui.ui.settings_panel import NEGATIVE_PROMPT_OFF, SettingsPanel, provider_choices

TINY_NOTICE = (
    "**diffusers-tiny** runs the real Z-Image pipeline code with tiny *untrained* weights: "
    "its images are noise. It needs no download and no GPU; pick a hosted provider, or run "
    "with a GPU, for real images."
)
PREVIEW_EVERY_S = 0.25  # at most this often a preview reaches the page


def capabilities_text(caps: Capabilities) -> str:
    steps = f"{caps.steps_range[0]}..{caps.steps_range[1]}" if caps.steps_range else "chosen by the provider"
    parts = [f"Sizes: {caps.size_rule}", f"Steps: {steps}", f"Images per run: up to {caps.max_images}"]
    if caps.cost_reporting:
        parts.append("reports cost")
    return " · ".join(parts)


def negative_prompt_update(provider_id: str, guidance: float) -> Any:
    """The negative prompt follows each provider's rule: the local pipeline uses it only with
    guidance above 0; a hosted API that takes one (Scenario) applies it its own way."""
    caps = get_provider(provider_id).capabilities
    if not caps.negative_prompt:
        return gr.update(interactive=False, info=f"{provider_id} takes no negative prompt")
    if not caps.guidance:
        return gr.update(interactive=True, info=f"sent to {provider_id}, which applies it its own way")
    if not guidance:
        return gr.update(interactive=False, info=NEGATIVE_PROMPT_OFF)
    return gr.update(interactive=True, info="used because Guidance is above 0")


def images_update(max_images: int, current: int, provider_id: str) -> Any:
    """A slider's maximum must stay above its minimum (1): a one-image provider locks it instead."""
    if max_images <= 1:
        top = TABLE["num_images"].high  # the locked slider keeps its usual track
        return gr.update(value=1, maximum=top, interactive=False, info=f"one image per run on {provider_id}")
    value = min(max(current, 1), max_images)
    if value == current:  # left alone: a number typed since the switch must stay
        return gr.update(maximum=max_images, interactive=True, info=f"up to {max_images}")
    return gr.update(maximum=max_images, value=value, interactive=True, info=f"up to {max_images}")


def steps_update(provider_id: str, caps: Capabilities, steps: float) -> Any:
    """The provider's range; a value outside it is clamped with a note saying so."""
    if not caps.steps_range:
        return gr.update(interactive=False, info=f"{provider_id} picks its own steps")
    low, high = caps.steps_range
    value = min(max(int(steps), low), high)
    note = f"{low}..{high} on {provider_id}"
    if value == int(steps):  # the value is left alone: a number typed since the switch must stay
        return gr.update(interactive=True, minimum=low, maximum=high, info=note)
    note = f"set to {value}: {provider_id} takes {low}..{high} steps (was {int(steps)})"
    return gr.update(interactive=True, minimum=low, maximum=high, value=value, info=note)


SEED_CAPTION = "seed "  # a gallery image's caption when its own seed is known, then the seed


def gallery_items(outcome: Outcome, paths: list[Path]) -> list[tuple[str, str]]:
    """Each image with the seed it can be made again from (or the batch it came from)."""
    result = outcome.result
    items = []
    for index, path in enumerate(paths):
        seed = result.image_seed(index) if result else None
        caption = f"{SEED_CAPTION}{seed}" if seed is not None else f"image {index + 1} of the batch"
        items.append((str(path), caption))
    return items


def caption_seed(caption: object) -> int | None:
    """The seed a gallery caption names (`SEED_CAPTION`), if it names one."""
    digits = caption.removeprefix(SEED_CAPTION) if isinstance(caption, str) else ""
    return int(digits) if caption != digits and digits.isdigit() else None


@dataclass
class GenerateTab:
    provider: gr.Dropdown
    tiny_notice: gr.Markdown
    run: gr.Button
    stop: gr.Button
    input_chip: gr.Button
    status: gr.Markdown
    preview: gr.Image
    gallery: gr.Gallery
    seed_used: gr.Textbox
    use_as_input: gr.Button
    sent: gr.JSON
    curl: gr.Code
    python: gr.Code
    last_prepared: gr.State = field(default_factory=lambda: gr.State(None))
    selected: gr.State = field(default_factory=lambda: gr.State(None))  # the gallery image picked

    def wire(
        self,
        demo: gr.Blocks,
        form: Form,
        panel: SettingsPanel,
        state: SessionState,
    ) -> None:
        s = panel.settings
        self._form, self._panel, self._state = form, panel, state
        hint_outputs = [
            self.tiny_notice,
            s.steps,
            s.shift,
            s.guidance,
            s.negative_prompt,
            s.num_images,
            s.variety,
            panel.capabilities,
        ]
        if form.image_inputs is not None:
            hint_outputs += form.image_inputs.hints()
        hint_inputs: set[Block] = {self.provider, s.guidance, s.steps, s.num_images, state.keys}
        # Keys typed on the page change what is usable: the summary is said again then too.
        for trigger in (self.provider.change, state.keys.change, demo.load):
            trigger(self.on_provider, hint_inputs, hint_outputs, **PRIVATE)
        s.guidance.change(self.on_guidance, {self.provider, s.guidance}, [s.negative_prompt], **PRIVATE)

        # The page's run: previews while it runs, then the images. Hosted calls are I/O and must
        # not queue behind one another (no concurrency limit); local runs wait in the device's line.
        on_run(
            self.run,
            self.stop,
            self.on_generate,
            {self.provider, *form.read_inputs(), state.keys},
            [
                self.preview,
                self.gallery,
                self.seed_used,
                self.status,
                self.sent,
                state.last_seed,
                self.last_prepared,
                state.fresh,
            ],
            api_visibility="private",
            concurrency_limit=None,
            show_progress_on=[self.status],
        ).then(self.show_code, {self.last_prepared, state.keys}, [self.curl, self.python], **PRIVATE)
        self.stop.click(stop_handler("generate"), None, self.status, **PRIVATE)
        self.gallery.select(self.on_select, None, [self.selected, self.seed_used, state.last_seed], **PRIVATE)
        self.gallery.change(lambda: None, None, [self.selected], **PRIVATE)  # new images: none picked
        if form.image_inputs is not None:
            inputs = form.image_inputs
            self.use_as_input.click(
                self.on_use_as_input,
                {self.gallery, self.selected},
                [inputs.image, inputs.image_url, inputs.control_image, inputs.accordion],
                **PRIVATE_SAYING,
            )

    def on_provider(self, data: Values) -> Updates:
        """Every hint and range recomputed from the chosen provider's capabilities.

        Each update names its `info` explicitly (Gradio keeps the old hint when an update leaves it
        out), and a value outside the new range is clamped with a note saying so.
        """
        s, provider_id = self._panel.settings, data[self.provider]
        provider = get_provider(provider_id)
        caps = provider.capabilities
        status = provider.availability(KeyRing.for_visitor(data[self._state.keys]))
        summary = capabilities_text(caps)
        if provider.details():
            summary += f"\n\n{provider.details()}"
        if not status.usable:
            summary = f"**{provider_id} is not usable here:** {status.reason}.\n\n{summary}"
        inputs = self._form.image_inputs
        return {
            **(inputs.for_provider(provider_id) if inputs else {}),
            self.tiny_notice: gr.update(visible=provider_id == "diffusers-tiny"),
            s.steps: steps_update(provider_id, caps, data[s.steps]),
            s.shift: gr.update(
                interactive=caps.shift,
                info="scheduler shift (Turbo: 3)" if caps.shift else f"not adjustable on {provider_id}",
            ),
            s.guidance: gr.update(
                interactive=caps.guidance, info="Turbo: 0" if caps.guidance else f"fixed by {provider_id}"
            ),
            s.negative_prompt: negative_prompt_update(provider_id, data[s.guidance]),
            s.num_images: images_update(caps.max_images, int(data[s.num_images]), provider_id),
            s.variety: gr.update(
                interactive=caps.variety,
                info="different seeds differ more (0: the usual image)"
                if caps.variety
                else f"the local model's: {provider_id} takes none",
            ),
            self._panel.capabilities: summary,
        }

    def on_select(self, event: gr.SelectData) -> Updates:
        """The picked image; its own seed (from its caption) becomes the seed shown and the one
        "Reuse last seed" takes. A batch image whose seed the provider did not say keeps the run's."""
        updates: Updates = {self.selected: event.index}
        seed = caption_seed(event.value.get("caption") if isinstance(event.value, dict) else None)
        if seed is not None:
            updates |= {self.seed_used: str(seed), self._state.last_seed: seed}
        return updates

    def on_use_as_input(self, data: Values) -> Updates:
        """The gallery's picked image (else its first) becomes the input image."""
        images, index = data[self.gallery] or [], data[self.selected]
        if not images:
            gr.Info("No image yet: generate once, then use one as the input image.")
            return UNCHANGED
        item = images[index if isinstance(index, int) and 0 <= index < len(images) else 0]
        path = item[0] if isinstance(item, (tuple, list)) else item
        return use_as_input_updates(self._form, str(path))

    def on_guidance(self, data: Values) -> Updates:
        s = self._panel.settings
        return {s.negative_prompt: negative_prompt_update(data[self.provider], data[s.guidance])}

    async def on_generate(
        self,
        data: Values,
        request: gr.Request,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - Gradio's way of asking for progress
    ) -> AsyncIterator[Updates]:
        """Generate from the page: the outcome (or the problem) is said in the status line, never
        as red error badges; a local model shows a preview while it runs."""
        try:
            params = (await self._form.read_for_run(data)).with_concrete_seed()
        except gr.Error as exc:
            yield {self.status: f"**{exc.title}.** {exc.message}"}  # one "Check the form", not two
            return
        provider_id, state = data[self.provider], self._state
        keys = KeyRing.for_visitor(data[state.keys])
        yield {self.status: ""}  # the progress bar says what is happening
        previews: asyncio.Queue[Image.Image] = asyncio.Queue()
        report = progress_reporter(progress, run_label(provider_id, params))

        def on_progress(update: Progress) -> None:
            report(update)
            if update.preview is not None:
                previews.put_nowait(update.preview)

        try:
            task = asyncio.create_task(make_images(provider_id, params, keys, on_progress, request))
            async for image in follow_latest(task, previews, PREVIEW_EVERY_S):
                yield {self.preview: gr.update(value=image, visible=True)}
            outcome, paths = task.result()
        except gr.Error as exc:  # the server is busy
            yield {self.status: f"**{exc.title}.** {exc.message}"}
            return
        updates: Updates = {
            self.preview: gr.update(value=None, visible=False),
            self.status: outcome_status(outcome),
            self.sent: outcome.prepared.display() if outcome.prepared else None,
            self.last_prepared: outcome.prepared,
            state.fresh: fresh_from(outcome, paths, keys),
        }
        if outcome.ok:  # a failure keeps the last images and their seed: the status says what went wrong
            shown = {self.seed_used: str(outcome.seed), state.last_seed: outcome.seed}
            updates |= {self.gallery: gr.Gallery(gallery_items(outcome, paths), selected_index=0), **shown}
        yield updates

    def show_code(self, data: Values) -> Updates:
        """ "Copy as code": the request as cURL and as Python, keys only as variable names."""
        prepared: PreparedRequest | None = data[self.last_prepared]
        if prepared is None:
            return {self.curl: "", self.python: ""}
        curl, python = copy_as_code(prepared, secrets=KeyRing(data[self._state.keys]).secrets())
        return {self.curl: curl, self.python: python}


def build_generate_tab(default_provider: str) -> GenerateTab:
    with gr.Row(equal_height=True, elem_classes=["run-row"]):
        provider = gr.Dropdown(
            label="Provider",
            choices=provider_choices(KeyRing.for_visitor()),
            value=default_provider,
            info="Where the image is made (each entry says why it can't be used, if not)",
            scale=3,
            min_width=220,
            elem_id="provider",
        )
        run, stop, input_chip = run_buttons("Generate", "generate", "stop")
    # Progress (a bar with the step count and time, place in line, decoding) shows over the status.
    status = gr.Markdown("Ready.", label="Status", elem_id="status", min_height=48, container=True)
    preview = gr.Image(
        label="Preview (while running)",
        type="pil",
        format="jpeg",
        interactive=False,
        visible=False,
        height=256,
        elem_id="preview",
    )
    # Preview mode shows the picked image whole (at its aspect, inside the gallery's height) with
    # its caption, and the run's other images as thumbnails; a small image keeps its natural size
    # (`serve.CSS`).
    gallery = gr.Gallery(
        label="Images",
        format="png",
        columns=4,
        height=540,
        object_fit="contain",
        preview=True,
        elem_id="gallery",
        interactive=False,
    )
    tiny_notice = gr.Markdown(TINY_NOTICE, visible=default_provider == "diffusers-tiny")
    with gr.Row(equal_height=True):
        seed_used = gr.Textbox(label="Seed used", interactive=False, elem_id="seed-used", scale=4)
        use_as_input = gr.Button("Use as input", size="sm", scale=1, elem_id="use-as-input")
    with gr.Accordion("What was sent", open=False):
        sent = gr.JSON(label="Prepared request (keys redacted)", elem_id="sent")
        with gr.Tab("cURL"):
            curl = gr.Code(
                language="shell", label="Copy as cURL (keys as variable names)", elem_id="code-curl"
            )
        with gr.Tab("Python"):
            python = gr.Code(language="python", label="Copy as Python (httpx)", elem_id="code-python")
    return GenerateTab(
        provider,
        tiny_notice,
        run,
        stop,
        input_chip,
        status,
        preview,
        gallery,
        seed_used,
        use_as_input,
        sent,
        curl,
        python,
    )


def fresh_from(outcome: Outcome, paths: list[Path], keys: KeyRing) -> dict[str, Any]:
    """What one Generate run adds to the browser's lists."""
    fresh = Fresh()
    fresh.add(outcome, paths, keys)
    return fresh.value()


def use_as_input_updates(form: Form, path: str) -> Updates:
    """A result (a path in Gradio's cache, given by Gradio) as the input image; the panel opens."""
    inputs = form.image_inputs
    if inputs is None:
        return UNCHANGED
    return {
        inputs.image: path,
        inputs.image_url: "",
        inputs.control_image: None,  # a control image and an input image don't go together
        inputs.accordion: gr.Accordion(open=True),
    }


async def make_images(
    provider_id: str,
    params: GenerationParams,
    keys: KeyRing,
    progress: ProgressFn,
    request: gr.Request | None,
) -> tuple[Outcome, list[Path]]:
    """One Generate run, owned by the browser session: the outcome and its saved PNGs."""
    with owned_run("generate", request) as run:
        outcome = await generate_one(
            provider_id, params, keys=keys, progress=progress, cancel=run.token, hosted_gate=run.hosted_gate
        )
        return outcome, await save_run_files(run, outcome)


@settings_endpoint(
    "Make images of a prompt with Z-Image-Turbo on one provider: the local model or a hosted API. "
    "Progress (steps, place in line) arrives as Gradio progress. A failure is raised as an error "
    "that says what happened and what to do.",
    before=[
        ApiArg("provider", str, "Where to make it: an id from the providers tool (blank: the default).", "")
    ],
    returns="The images (each PNG records its settings and its own seed), the seed used, a status "
    "line (time, size, steps, notes on anything adjusted) and the request as sent, keys redacted.",
    progress=True,
)
async def generate(
    provider: str, request: gr.Request, progress: gr.Progress, **values: Any
) -> tuple[list[tuple[str, str]], str, str, dict[str, Any] | None]:
    params = api_params(values).with_concrete_seed()
    provider = provider or default_provider_id()
    label = run_label(provider, params)
    outcome, paths = await make_images(
        provider, params, KeyRing.for_visitor(), progress_reporter(progress, label), request
    )
    if not outcome.ok:
        raise user_error(outcome_status(outcome), title=f"{provider} failed")
    sent = outcome.prepared.display() if outcome.prepared else None
    return gallery_items(outcome, paths), str(outcome.seed), outcome_status(outcome), sent


def providers() -> list[dict[str, Any]]:
    """List where images can be made: the local model and each hosted API, whether each is usable
    here (and why not), and what it can do.

    Returns:
        One entry per provider: id, label, usable, reason, sizes, steps (the [low, high] range,
        or null where the provider picks its own), max_images, negative_prompt and default.
    """
    default = default_provider_id()
    entries = []
    for provider_id, status in availability(KeyRing.for_visitor()).items():
        caps = PROVIDERS[provider_id].capabilities
        entries.append(
            {
                "id": provider_id,
                "label": PROVIDERS[provider_id].label,
                "usable": status.usable,
                "reason": status.reason,
                "sizes": caps.size_rule,
                "steps": list(caps.steps_range) if caps.steps_range else None,
                "max_images": caps.max_images,
                "negative_prompt": caps.negative_prompt,
                "default": provider_id == default,
            }
        )
    return entries
