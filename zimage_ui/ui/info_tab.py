"""The PNG info tab: settings read back from an image (ours, A1111, Forge, Civitai), or a sweep grid."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from zimage_ui.infotext import read_png_settings
from zimage_ui.metadata import CFG_KEY, cfg_scale
from zimage_ui.presets import preset_from_params
from zimage_ui.settings import TABLE
from zimage_ui.sweep import AXIS_LABELS, SweepSpec, read_grid_spec
from zimage_ui.ui.common import PRIVATE
from zimage_ui.ui.form import Form, Updates, Values
from zimage_ui.ui.presets_panel import PresetsPanel
from zimage_ui.ui.sweep_tab import NO_AXIS, SweepTab

MAX_IMAGE_BYTES = 50 * 2**20


# Settings whose value from another model would not suit Turbo: (infotext key, form name, Turbo's value).
TURBO_TUNED = {
    setting.name: (setting.infotext or setting.label, setting.short, setting.turbo)
    for setting in TABLE
    if setting.turbo is not None
}
FORM_NAMES = TABLE.name_to_short()  # what the reader gives (canonical names) -> the form's names


def read_image(path: str | None) -> tuple[str, dict[str, Any] | None, dict[str, Any] | None]:
    """What a dropped PNG holds: a message, what was read (or the grid), what was ignored.

    The state is `{"grid": spec json}` for a sweep grid, or `{"params": ..., "turbo": bool}`:
    `turbo` when it was made here, so its steps suit a Turbo model.
    """
    if not path:
        return "", None, None
    if Path(path).stat().st_size > MAX_IMAGE_BYTES:  # checked before a byte is read
        return "That file is over 50 MB: not read.", None, None
    data = Path(path).read_bytes()
    spec = read_grid_spec(data)
    if spec is not None:
        message = (
            f"A sweep grid: {spec.cell_count} cells of {spec.provider}, "
            f"{' by '.join(AXIS_LABELS[a.kind] for a in (spec.x, spec.y) if a)}. "
            "“Set up this sweep again” fills the form and the Sweep tab with it."
        )
        return message, {"grid": spec.model_dump_json()}, None
    result = read_png_settings(data)
    read = dict(result.params)
    if result.provider:
        read["provider"] = result.provider
    state = {"params": read, "turbo": result.turbo}
    return result.message, (state if read else None), result.ignored or None


def readback_values(state: dict[str, Any], theirs: bool, own: bool = False) -> tuple[dict[str, Any], str]:
    """The form's named settings from what was read, and the message saying what was kept.

    An image made with another model keeps Turbo's steps and guidance unless `theirs`: its
    28 steps and CFG 7 suit that model, not a Turbo model. `own`: an enhanced image's prompt as
    the person wrote it, instead of the rewrite that was drawn.
    """
    read = state["params"]
    values = {FORM_NAMES[name]: value for name, value in read.items() if name in FORM_NAMES}
    enhanced = read.get("enhanced")
    if own and isinstance(enhanced, dict) and enhanced.get("original"):
        values["prompt"] = enhanced["original"]
    kept = []
    if not state.get("turbo") and not theirs:
        for name, (label, form_name, turbo) in TURBO_TUNED.items():
            if name in read and read[name] != turbo:
                shown = cfg_scale(read[name]) if label == CFG_KEY else read[name]  # as the image says
                kept.append(f"{label} {shown:g}")
                values[form_name] = turbo
    if "seed" in values:
        values["random_seed"] = False
        values["seed"] = str(values["seed"])
    message = "Settings filled from the image."
    if kept:
        message += (
            f" Kept Turbo's 8 steps and guidance 0 instead of its {' and '.join(kept)}, which suit"
            " the model that made it: tick “Also use its steps and CFG scale” to take them."
        )
    return values, message


@dataclass
class InfoTab:
    file: gr.File
    message: gr.Markdown
    read: gr.JSON
    ignored: gr.JSON
    theirs: gr.Checkbox
    own: gr.Checkbox  # shown for an enhanced image: your own prompt instead of the drawn rewrite
    use: gr.Button
    again: gr.Button
    readback: gr.State

    def wire(self, form: Form, presets: PresetsPanel, sweep: SweepTab) -> None:
        self._form, self._presets, self._sweep = form, presets, sweep
        shown = [self.message, self.read, self.ignored, self.own, self.use, self.again, self.readback]
        self.file.change(self.on_png, {self.file}, shown, **PRIVATE)
        # The outcome shows where the person is (the PNG info tab) as well as in the presets status.
        fill = [presets.status, *form.outputs(), self.message]
        self.use.click(self.on_use, {self.readback, self.theirs, self.own}, fill, **PRIVATE)
        sweep_fields = [sweep.provider, sweep.x_kind, sweep.x_values, sweep.y_kind, sweep.y_values]
        self.again.click(self.on_sweep_again, {self.readback}, [*fill, *sweep_fields], **PRIVATE)

    def on_png(self, data: Values) -> Updates:
        message, state, ignored = read_image(data[self.file])
        grid = bool(state and "grid" in state)
        return {
            self.message: message,
            self.read: None if grid or not state else state["params"],
            self.ignored: ignored,
            self.own: gr.update(visible=bool(state and state.get("params", {}).get("enhanced")), value=False),
            self.use: gr.update(interactive=bool(state) and not grid),
            self.again: gr.update(visible=grid),
            self.readback: state,
        }

    def on_use(self, data: Values) -> Updates:
        """Fill the form with what was read; fields the image did not give keep their values."""
        state = data[self.readback]
        if not state or "params" not in state:
            nothing = "Nothing to use: drop an image first."
            return {self._presets.status: nothing, self.message: nothing}
        own = bool(data[self.own])
        values, message = readback_values(state, bool(data[self.theirs]), own)
        filled = self._form.fill_values(values, state["params"].get("provider"))
        enhanced = state["params"].get("enhanced")
        if self._form.rewrite is not None:  # the drawn rewrite keeps saying whose it is on a re-run
            drawn = state["params"].get("prompt")
            keep = isinstance(enhanced, dict) and not own
            filled[self._form.rewrite] = {"prompt": drawn, **enhanced} if keep else None
        return {**filled, self._presets.status: message, self.message: message}

    def on_sweep_again(self, data: Values) -> Updates:
        """The grid's sweep back on the page: its settings in the form, its axes in the Sweep tab."""
        raw = (data[self.readback] or {}).get("grid")
        if not raw:
            nothing = "Drop a sweep grid PNG first."
            return {self._presets.status: nothing, self.message: nothing}
        spec = SweepSpec.model_validate_json(raw)
        filled = self._form.fill(preset_from_params(spec.params, spec.provider))
        y_kind, y_text = (spec.y.kind, spec.y.text()) if spec.y else (NO_AXIS, "")
        message = "The sweep is set up again on the Sweep tab: press Run sweep."
        sweep = self._sweep
        return {
            **filled,
            self._form.tabs: gr.Tabs(selected="sweep"),
            sweep.provider: spec.provider,
            sweep.x_kind: spec.x.kind,
            sweep.x_values: spec.x.text(),
            sweep.y_kind: y_kind,
            sweep.y_values: y_text,
            self._presets.status: message,
            self.message: message,
        }


def build_info_tab() -> InfoTab:
    gr.Markdown("Drop a PNG made here, or by AUTOMATIC1111, Forge or Civitai: its settings are read back.")
    file = gr.File(label="Image", file_types=["image"], type="filepath", elem_id="png-info-file")
    message = gr.Markdown(elem_id="png-info-message")
    with gr.Row():
        read = gr.JSON(label="Read", elem_id="png-info-read")
        ignored = gr.JSON(label="Ignored")
    theirs = gr.Checkbox(
        label="Also use its steps and CFG scale",
        info="Off: an image made with another model keeps Turbo's 8 steps and guidance 0",
        elem_id="png-info-theirs",
    )
    own = gr.Checkbox(
        label="Use my own prompt",
        info="this image drew a prompt enhancer's rewrite; tick to take the prompt as you wrote it",
        visible=False,
        elem_id="png-info-own",
    )
    use = gr.Button("Use these settings", variant="primary", interactive=False, elem_id="png-info-use")
    again = gr.Button("Set up this sweep again", visible=False, elem_id="png-info-sweep")
    return InfoTab(file, message, read, ignored, theirs, own, use, again, gr.State(None))
