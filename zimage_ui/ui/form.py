"""The shared settings as one named form: read once into validated params, filled by a dict.

`Settings` names the ten shared controls; it is the only place their order is written.
Handlers take Gradio's input dict (`inputs={...}`) and return a dict of updates, so
nothing is ever padded with a counted `gr.skip()`: a control a handler leaves out of
its dict keeps its value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, TypeVar

import gradio as gr

from zimage_ui.compare import Side, read_side_fields
from zimage_ui.enhancer import Enhanced, EnhancerFailed, enhance_for_visitor, enhanced_params
from zimage_ui.errors import InvalidParams, PresetError
from zimage_ui.params import GenerationParams, ImageInputs, parse_params
from zimage_ui.presets import Preset, preset_from_params
from zimage_ui.providers import PROVIDERS
from zimage_ui.settings import TABLE, Setting
from zimage_ui.ui.common import shareable_params, user_error
from zimage_ui.ui.inputs_panel import InputsPanel, api_image_inputs, upload_folder
from zimage_ui.visitor_files import visitor_refs_allowed

F = TypeVar("F", bound=Callable[..., Any])
Block = gr.blocks.Block
Component = Block
Values = Mapping[Any, Any]  # Gradio's input dict: component -> value
Updates = dict[Any, Any]  # component -> new value or gr.update(...)
# "Change nothing": Gradio reads an empty dict as one value, not as no updates.
UNCHANGED: Updates = gr.skip()


@dataclass
class Settings:
    """The shared settings every tab uses, in the order the form is read."""

    prompt: gr.Textbox
    negative_prompt: gr.Textbox
    width: gr.Number
    height: gr.Number
    seed: gr.Textbox
    random_seed: gr.Checkbox
    steps: gr.Slider
    guidance: gr.Slider
    shift: gr.Slider
    num_images: gr.Slider
    variety: gr.Slider

    def components(self) -> list[Component]:
        return [getattr(self, name) for name in SETTING_NAMES]

    def named(self, data: Values) -> dict[str, Any]:
        """The settings' values by name, from Gradio's input dict."""
        return {name: data[getattr(self, name)] for name in SETTING_NAMES}

    def updates(self, values: Mapping[str, Any]) -> Updates:
        """Updates for the named settings given; the others keep their values."""
        return {getattr(self, name): value for name, value in values.items() if name in SETTING_NAMES}


SETTING_NAMES = tuple(field.name for field in fields(Settings))


def read_params(values: Mapping[str, Any]) -> GenerationParams:
    """Named form values -> validated params; raises gr.Error naming each wrong field."""
    try:
        return parse_params(
            prompt=values["prompt"] or "",
            negative_prompt=values["negative_prompt"] or "",
            width=_whole(values["width"], "width"),
            height=_whole(values["height"], "height"),
            seed=None if values["random_seed"] else _seed_text(values["seed"]),
            num_inference_steps=_whole(values["steps"], "steps"),
            guidance_scale=float(values["guidance"] or 0),
            shift=float(values["shift"] or 0),
            num_images=_whole(values["num_images"], "num_images"),
            variety=float(values["variety"] or 0),
        )
    except InvalidParams as exc:
        raise user_error(f"Check the form: {exc}", title="Invalid settings") from None


def api_params(arguments: Mapping[str, Any]) -> GenerationParams:
    """Params from an API endpoint's arguments, by the table's short names (`ui.endpoints`), taken
    as sent: a whole-number setting given 2.5 or "4" is refused naming it, never rounded; a seed
    given is the seed used (empty, null or "random": one is drawn). The image inputs
    (`API_INPUT_DOCS`) are read by the page's rules (uploads and https URLs only)."""
    problems: dict[str, str] = {}
    values = {setting.name: _api_value(setting, arguments.get(setting.short), problems) for setting in TABLE}
    try:
        if problems:
            raise InvalidParams(problems)
        params = parse_params(**values)
    except InvalidParams as exc:
        raise user_error(f"Check the settings: {exc}", title="Invalid settings") from None
    return with_visitor_inputs(
        params,
        lambda: api_image_inputs(
            arguments.get("image"),
            arguments.get("image_url") or "",
            arguments.get("strength"),
            arguments.get("loras") or "",
        ),
    )


def with_visitor_inputs(params: GenerationParams, read: Callable[[], ImageInputs | None]) -> GenerationParams:
    """The params with a page or API visitor's image inputs, read by `read`: each reference an
    upload, an https URL or a model id, never a server path (one gr.Error naming what is wrong)."""
    try:
        inputs = read()
        if inputs is None:
            return params
        visitor_refs_allowed(inputs, [upload_folder()])  # the one last check: never a server path
        return parse_params(**{**params.model_dump(), "inputs": inputs.model_dump()})
    except InvalidParams as exc:
        raise user_error(f"Check the image input: {exc}", title="Invalid settings") from None


def _api_value(setting: Setting, value: Any, problems: dict[str, str]) -> Any:
    """One API argument as the params take it; a wrong type goes to `problems` by its name. The
    seed goes on as sent ("random": none) for the params' own seed rule: a number or its digits."""
    name = setting.short
    if value is None or (isinstance(value, str) and not value.strip() and setting.kind is not str):
        if setting.default is None and setting.control != "seed":
            problems[name] = "missing: give a value"
        return setting.default
    if setting.control == "seed":
        return None if isinstance(value, str) and value.strip().lower() == "random" else value
    if setting.kind is str:
        if not isinstance(value, str):
            problems[name] = f"{_shown(value)} is not text"
        return value
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if setting.kind is int and not (is_number and float(value).is_integer()):
        problems[name] = f"{_shown(value)} is not a whole number: give one, like {setting.default}"
        return setting.default
    if not is_number:
        problems[name] = f"{_shown(value)} is not a number: give one, like {setting.default}"
        return setting.default
    return int(value) if setting.kind is int else float(value)


def _shown(value: Any) -> str:
    """A wrong value as a message quotes it: its first 40 characters, never a whole structure."""
    return repr(str(value)[:40]) if isinstance(value, (str, int, float)) else f"a {type(value).__name__}"


def _whole(value: float | None, name: str) -> int:
    if value is None or value == "":
        raise InvalidParams({name: "empty: enter a number"})
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):  # NaN, infinity, text
        raise InvalidParams({name: f"{str(value)[:40]!r} is not a whole number: enter one"}) from None


def _seed_text(value: str | float | None) -> str:
    text = str(value if value is not None else "").strip()
    if not text:
        raise InvalidParams({"seed": "empty: enter a seed or tick Random seed"})
    return text


def setting_values(preset: Preset) -> dict[str, Any]:
    """A preset's settings as the form shows them, by the table's short names (a random seed: an
    empty box, Random ticked)."""
    values = {setting.short: getattr(preset, setting.name) for setting in TABLE if setting.control != "seed"}
    return {
        **values,
        "seed": "" if preset.seed is None else str(preset.seed),
        "random_seed": preset.seed is None,
    }


@dataclass
class SideControls:
    """One comparison side's controls: a provider and overrides (blank keeps the shared value)."""

    row: gr.Row
    provider: gr.Dropdown
    steps: gr.Textbox
    shift: gr.Textbox
    size: gr.Textbox
    strength: gr.Textbox
    lora_scale: gr.Textbox

    def inputs(self) -> list[Component]:
        return [self.provider, self.steps, self.shift, self.size, self.strength, self.lora_scale]


def _text(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


@dataclass
class Form:
    """Everything a preset reads or fills: the settings, the Generate provider, the sides, the tab,
    and the image inputs panel (input image, mask, control image, LoRAs) where the page has one."""

    settings: Settings
    provider: gr.Dropdown
    side_count: gr.Slider
    sides: Sequence[SideControls]
    tabs: gr.Tabs
    image_inputs: InputsPanel | None = None
    rewrite: gr.State | None = None  # the enhancer's rewrite in the prompt box (`EnhanceRow.rewrite`)
    each_run: gr.Checkbox | None = None  # "Enhance each run" (`EnhanceRow.each_run`)

    def _input_components(self) -> list[Component]:
        extra = [c for c in (self.rewrite, self.each_run) if c is not None]
        return [*(self.image_inputs.components() if self.image_inputs else []), *extra]

    def inputs(self) -> set[Component]:
        """What `read`, `read_sides` and `preset` need from Gradio's input dict."""
        return {
            *self.settings.components(),
            self.provider,
            self.side_count,
            *(c for side in self.sides for c in side.inputs()),
            *self._input_components(),
        }

    def read_inputs(self) -> set[Component]:
        """What `read` needs: the shared settings and the image inputs."""
        return {*self.settings.components(), *self._input_components()}

    def outputs(self) -> list[Component]:
        """Every control `fill` may update."""
        return [
            *self.settings.components(),
            self.provider,
            self.side_count,
            *(c for side in self.sides for c in side.inputs()),
            self.tabs,
            *([self.image_inputs.accordion, *self._input_components()] if self.image_inputs else []),
        ]

    def read(self, data: Values) -> GenerationParams:
        """The shared settings and the image inputs as validated params; raises gr.Error. A prompt
        that is still the enhancer's rewrite carries the person's own prompt and the model."""
        params = read_params(self.settings.named(data))
        rewrite = data.get(self.rewrite) if self.rewrite is not None else None
        if isinstance(rewrite, dict) and rewrite.get("prompt") == params.prompt:
            params = enhanced_params(params, Enhanced(params.prompt, rewrite["original"], rewrite["model"]))
        panel = self.image_inputs
        return params if panel is None else with_visitor_inputs(params, lambda: panel.read(data))

    async def read_for_run(self, data: Values) -> GenerationParams:
        """`read`, and with "Enhance each run" ticked the enhancer's rewrite of the prompt (one for
        every side and cell of the run). An enhancer that fails stops the run: gr.Error naming it."""
        params = self.read(data)
        if self.each_run is None or not data.get(self.each_run) or params.enhanced is not None:
            return params
        try:
            return enhanced_params(params, await enhance_for_visitor(params.prompt))
        except EnhancerFailed as exc:
            raise user_error(
                f"{exc}. Nothing was drawn: untick Enhance each run to draw your own prompt.",
                title="Not enhanced",
            ) from None
        except InvalidParams as exc:
            raise user_error(f"The rewrite can't be drawn: {exc}", title="Not enhanced") from None

    def read_sides(self, data: Values) -> list[Side]:
        """The shown sides; every bad override is named in one gr.Error."""
        sides, problems = [], {}
        for index, side in enumerate(self.sides[: int(data[self.side_count])]):
            try:
                sides.append(
                    read_side_fields(
                        index,
                        data[side.provider],
                        data[side.steps],
                        data[side.shift],
                        data[side.size],
                        data[side.strength],
                        data[side.lora_scale],
                    )
                )
            except InvalidParams as exc:
                problems.update(exc.fields)
        if problems:
            raise user_error(f"Check the sides: {InvalidParams(problems)}", title="Invalid comparison")
        return sides

    def preset(self, data: Values, *, include_sides: bool = False, name: str = "") -> Preset:
        """The form as a preset; a random seed stays random; uploads (files on this server) are left
        out, URLs and model ids kept. Raises gr.Error naming wrong fields."""
        params = shareable_params(self.read(data))
        sides = self.read_sides(data) if include_sides else None
        try:
            return preset_from_params(params, data[self.provider], sides, name=name.strip())
        except PresetError as exc:
            raise user_error(f"Can't make a preset: {exc}", title="Invalid settings") from None

    def fill(self, preset: Preset) -> Updates:
        """Updates that show this preset; a comparison preset opens the Compare tab."""
        updates = {**self.settings.updates(setting_values(preset)), self.provider: preset.provider}
        if self.image_inputs is not None:  # a preset without inputs leaves the panel as it is
            updates |= self.image_inputs.fill(getattr(preset, "inputs", None))
        if not preset.sides:
            return {**updates, self.tabs: gr.Tabs(selected="generate")}
        updates[self.side_count] = len(preset.sides)
        for side, controls in zip(preset.sides, self.sides, strict=False):
            size = f"{side.width or preset.width}x{side.height or preset.height}"
            updates |= {
                controls.provider: side.provider,
                controls.steps: _text(side.num_inference_steps),
                controls.shift: _text(side.shift),
                controls.size: size if side.width or side.height else "",
                controls.strength: _text(side.strength),
                controls.lora_scale: _text(side.lora_scale),
            }
        return {**updates, self.tabs: gr.Tabs(selected="compare")}

    def fill_values(self, values: Mapping[str, Any], provider: str | None = None) -> Updates:
        """A partial fill: only the named settings given (and a known provider) change."""
        updates = self.settings.updates(values)
        if provider in PROVIDERS:
            updates[self.provider] = provider
        return updates
