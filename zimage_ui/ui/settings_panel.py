"""The prompt, the shared settings beside the tabs, and the API keys box, with their own wiring."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from zimage_ui.params import MAX_SEED
from zimage_ui.providers import PROVIDERS, availability, choice_label
from zimage_ui.providers.base import KeyRing
from zimage_ui.redaction import key_problem
from zimage_ui.settings import TABLE, Setting
from zimage_ui.sizes import CUSTOM_SIZE, SIZE_FAMILIES, family_choices, family_of, parse_size, size_choices
from zimage_ui.ui.common import PRIVATE, PRIVATE_SAYING
from zimage_ui.ui.form import UNCHANGED, Settings, Updates, Values

NEGATIVE_PROMPT_OFF = (
    "Turbo runs without guidance (0), so a negative prompt has no effect. Raise Guidance to use it."
)


def provider_choices(keys: KeyRing) -> list[tuple[str, str]]:
    """The provider dropdown's entries, the usable ones first (in registry order each): a person
    typing "tiny" filters to every entry that mentions it, and Enter takes the first, which must be
    one that can run, not `diffusers` whose reason names diffusers-tiny."""
    statuses = availability(keys)
    ordered = sorted(statuses.items(), key=lambda item: not item[1].usable)
    return [(choice_label(PROVIDERS[pid], status), pid) for pid, status in ordered]


def all_key_names() -> list[str]:
    names: list[str] = []
    for provider in PROVIDERS.values():
        names.extend(name for name in provider.key_names if name not in names)
    return names


@dataclass
class SettingsPanel:
    """The shared settings and the controls that only help set them."""

    settings: Settings
    size_family: gr.Radio
    size: gr.Dropdown
    reuse_seed: gr.Button
    capabilities: gr.Markdown

    def wire(self, last_seed: gr.State) -> None:
        s = self.settings
        # No loop: the Size box writes width and height only when a person picks a size (.input);
        # width and height, however set (typed, a preset, a link, PNG info), write it back (.change).
        self.size_family.input(
            self.on_family, {self.size_family, s.width, s.height}, [self.size, s.width, s.height], **PRIVATE
        )
        self.size.input(self.on_size, {self.size}, [s.width, s.height], **PRIVATE)
        gr.on(
            [s.width.change, s.height.change],
            self.on_width_height,
            {s.width, s.height, self.size_family},
            [self.size_family, self.size],
            **PRIVATE,
        )
        s.random_seed.change(self.on_random_toggle, {s.random_seed}, [s.seed], **PRIVATE)
        self.reuse_seed.click(self.on_reuse_seed, {last_seed}, [s.seed, s.random_seed], **PRIVATE_SAYING)
        self._last_seed = last_seed

    def on_family(self, data: Values) -> Updates:
        """The sizes of a family; the current size stays when it is one of them, else the first."""
        family, s = data[self.size_family], self.settings
        sizes = family_choices(family)
        current = f"{int(data[s.width] or 0)}x{int(data[s.height] or 0)}"
        if current in {size for _label, size in sizes}:
            return {self.size: gr.update(choices=size_choices(family), value=current)}
        width, height = parse_size(sizes[0][1])
        return {
            self.size: gr.update(choices=size_choices(family), value=sizes[0][1]),
            s.width: width,
            s.height: height,
        }

    def on_size(self, data: Values) -> Updates:
        size = data[self.size]
        if not size or size == CUSTOM_SIZE:
            return UNCHANGED
        width, height = parse_size(size)
        return {self.settings.width: width, self.settings.height: height}

    def on_width_height(self, data: Values) -> Updates:
        """The matching size (in the family shown, else in the family that lists it), or "Custom":
        the Size box never shows a size not in use."""
        value = f"{_whole_or_zero(data[self.settings.width])}x{_whole_or_zero(data[self.settings.height])}"
        shown = data[self.size_family]
        family = family_of(value, shown)
        if family is None:
            return {self.size: gr.update(value=CUSTOM_SIZE)}
        if family == shown:
            return {self.size: gr.update(value=value)}
        return {self.size_family: family, self.size: gr.update(choices=size_choices(family), value=value)}

    def on_random_toggle(self, data: Values) -> Updates:
        if data[self.settings.random_seed]:
            return {self.settings.seed: gr.update(interactive=False, value="")}
        return {self.settings.seed: gr.update(interactive=True)}

    def on_reuse_seed(self, data: Values) -> Updates:
        last_seed = data[self._last_seed]
        if last_seed is None:
            gr.Info("No image yet: generate once, then reuse its seed.")
            return UNCHANGED
        s = self.settings
        return {s.seed: gr.update(value=str(last_seed), interactive=True), s.random_seed: False}


def _whole_or_zero(value: object) -> int:
    """A width or height box's value as a whole number; 0 for an empty or broken box (the params
    name the field when the run is asked for)."""
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        return 0


def control_options(setting: Setting) -> dict[str, Any]:
    """A number box's or slider's label, range, step, default and element id, from the table."""
    return {
        "label": setting.label,
        "minimum": setting.low,
        "maximum": setting.high,
        "step": setting.step,
        "value": setting.default,
        "elem_id": setting.short.replace("_", "-"),
    }


def box_options(setting: Setting) -> dict[str, Any]:
    """A number box's options without Gradio's own range check: that check runs before any handler
    and answers a width of 13 with a toast naming no field and an "Error" badge on the outputs of
    whatever was listening. The params check the range instead, naming the field."""
    return {k: v for k, v in control_options(setting).items() if k not in ("minimum", "maximum")}


def build_prompt() -> gr.Textbox:
    """The prompt, built apart from the other settings: it heads the page, above the tabs and
    their Run buttons, while the settings sit beside them (below them on a phone)."""
    return gr.Textbox(
        label="Prompt",
        lines=2,
        max_lines=12,
        placeholder="a red fox in fresh snow, morning light",
        info="Ctrl+Enter (Cmd+Enter) runs the tab in view",
        elem_id="prompt",
    )


def build_settings_panel(prompt: gr.Textbox | None = None) -> SettingsPanel:
    """The shared settings; the prompt is built here too unless the page placed it already."""
    prompt = prompt or build_prompt()
    negative_prompt = gr.Textbox(
        value="",  # a value makes it optional in the API
        label="Negative prompt",
        lines=1,
        interactive=False,
        info=NEGATIVE_PROMPT_OFF,
        elem_id="negative-prompt",
    )
    with gr.Group():
        size_family = gr.Radio(
            label="Size family",
            choices=list(SIZE_FAMILIES),
            value="1024",
            info="512 and 768: quick drafts",
            elem_id="size-family",
        )
        size = gr.Dropdown(label="Size", choices=size_choices("1024"), value="1024x1024", elem_id="size")
        with gr.Row():
            width = gr.Number(**box_options(TABLE["width"]), precision=0)
            height = gr.Number(**box_options(TABLE["height"]), precision=0)
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
        steps = gr.Slider(**control_options(TABLE["steps"]))
        shift = gr.Slider(**control_options(TABLE["shift"]))
    with gr.Row():
        guidance = gr.Slider(**control_options(TABLE["guidance"]), info="Turbo: 0")
        num_images = gr.Slider(**control_options(TABLE["num_images"]))
    variety = gr.Slider(**control_options(TABLE["variety"]), info="local model: different seeds differ more")
    capabilities = gr.Markdown(elem_id="capabilities")
    settings = Settings(
        prompt=prompt,
        negative_prompt=negative_prompt,
        width=width,
        height=height,
        seed=seed,
        random_seed=random_seed,
        steps=steps,
        guidance=guidance,
        shift=shift,
        num_images=num_images,
        variety=variety,
    )
    return SettingsPanel(settings, size_family, size, reuse_seed, capabilities)


@dataclass
class KeysPanel:
    """Keys typed for this browser session only; they relabel every provider dropdown."""

    boxes: dict[str, gr.Textbox]

    def wire(self, session_keys: gr.State, dropdowns: list[gr.Dropdown]) -> None:
        self._dropdowns = dropdowns
        for box in self.boxes.values():
            box.change(self.on_keys, set(self.boxes.values()), [session_keys, *dropdowns], **PRIVATE_SAYING)
        self._session_keys = session_keys

    def on_keys(self, data: Values) -> Updates:
        keys: dict[str, str] = {}
        for name, box in self.boxes.items():
            value = data[box]
            if not value:
                continue
            problem = key_problem(value)
            if problem:  # never kept, never echoed: the message names the field only
                gr.Warning(f"{name} is malformed: {problem}. Paste the key again.")
                continue
            keys[name] = value
        choices = provider_choices(KeyRing.for_visitor(keys))
        updates: dict[Any, Any] = {dropdown: gr.update(choices=choices) for dropdown in self._dropdowns}
        return {self._session_keys: keys, **updates}


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
