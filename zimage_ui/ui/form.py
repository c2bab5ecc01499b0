"""The settings form as one unit: read it into a preset, fill it from one (whole, or not at all)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gradio as gr

from zimage_ui.compare import MAX_SIDES, Side
from zimage_ui.presets import Preset, PresetError, preset_from_params
from zimage_ui.ui.handlers import read_params, user_error


@dataclass
class Form:
    """Every component a preset touches, in a fixed order."""

    shared: Sequence[gr.components.Component]  # prompt .. num_images, as read_params takes them
    provider: gr.Dropdown
    side_count: gr.Slider
    sides: Sequence[gr.components.Component]  # provider, steps, shift, size for each of MAX_SIDES
    tabs: gr.Tabs

    @property
    def outputs(self) -> list[Any]:
        return [*self.shared, self.provider, self.side_count, *self.sides, self.tabs]


def _text(value: float | int | None) -> str:
    return "" if value is None else f"{value:g}"


def fill_values(preset: Preset) -> list[Any]:
    """Updates for `Form.outputs` that show this preset; comparison presets open the Compare tab."""
    shared = [
        preset.prompt,
        preset.negative_prompt,
        preset.width,
        preset.height,
        "" if preset.seed is None else str(preset.seed),
        preset.seed is None,
        preset.num_inference_steps,
        preset.guidance_scale,
        preset.shift,
        preset.num_images,
    ]
    if not preset.sides:
        return [
            *shared,
            preset.provider,
            gr.skip(),
            *([gr.skip()] * 4 * MAX_SIDES),
            gr.Tabs(selected="generate"),
        ]
    sides: list[Any] = []
    for index in range(MAX_SIDES):
        if index >= len(preset.sides):
            sides += [gr.skip()] * 4
            continue
        side = preset.sides[index]
        size = (
            f"{side.width or preset.width}x{side.height or preset.height}"
            if side.width or side.height
            else ""
        )
        sides += [side.provider, _text(side.num_inference_steps), _text(side.shift), size]
    return [*shared, preset.provider, len(preset.sides), *sides, gr.Tabs(selected="compare")]


def current_preset(values: list[Any], provider: str, sides: list[Side] | None, name: str = "") -> Preset:
    """The form as a preset; a random seed stays random. Raises gr.Error naming wrong fields."""
    params = read_params(*values)
    try:
        return preset_from_params(params, provider, sides, name=name.strip())
    except PresetError as exc:
        raise user_error(f"Can't make a preset: {exc}", title="Invalid settings") from None
