"""PNG info (settings read back from an image) and History (this session, and the team run log)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from zimage_ui.history import history_from_env
from zimage_ui.infotext import read_png_settings
from zimage_ui.params import TURBO_STEPS
from zimage_ui.presets import PresetError, import_preset, preset_from_params
from zimage_ui.providers import PROVIDERS
from zimage_ui.providers.base import KeyRing
from zimage_ui.runs import scratch_folder
from zimage_ui.sweep import AXIS_LABELS, Axis, SweepSpec, read_grid_spec
from zimage_ui.ui.form import fill_values
from zimage_ui.ui.handlers import user_error
from zimage_ui.ui.presets_panel import NO_CHANGE_COUNT, applied, refused
from zimage_ui.ui.sweep_tab import NO_AXIS

MAX_IMAGE_BYTES = 50 * 2**20
# Form.outputs order: the 10 shared values first, then the provider.
SHARED_ORDER = (
    "prompt",
    "negative_prompt",
    "width",
    "height",
    "seed",
    "random_seed",
    "num_inference_steps",
    "guidance_scale",
    "shift",
    "num_images",
)


@dataclass
class InfoTab:
    file: gr.File
    message: gr.Markdown
    read: gr.JSON
    ignored: gr.JSON
    theirs: gr.Checkbox
    use: gr.Button
    again: gr.Button
    readback: gr.State


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
    use = gr.Button("Use these settings", variant="primary", interactive=False, elem_id="png-info-use")
    again = gr.Button("Set up this sweep again", visible=False, elem_id="png-info-sweep")
    return InfoTab(file, message, read, ignored, theirs, use, again, gr.State(None))


def on_png(path: str | None) -> tuple[Any, ...]:
    """Outputs: message, what was read, what was ignored, Use, Set up this sweep again, state."""
    hidden = gr.update(visible=False)
    if not path:
        return "", None, None, gr.update(interactive=False), hidden, None
    if Path(path).stat().st_size > MAX_IMAGE_BYTES:  # checked before a byte is read
        return "That file is over 50 MB: not read.", None, None, gr.update(interactive=False), hidden, None
    data = Path(path).read_bytes()
    spec = read_grid_spec(data)
    if spec is not None:
        message = (
            f"A sweep grid: {spec.cell_count} cells of {spec.provider}, "
            f"{' by '.join(AXIS_LABELS[a.kind] for a in (spec.x, spec.y) if a)}. "
            "“Set up this sweep again” fills the form and the Sweep tab with it."
        )
        grid: dict[str, Any] = {"grid": spec.model_dump_json()}
        return message, None, None, gr.update(interactive=False), gr.update(visible=True), grid
    result = read_png_settings(data)
    read = dict(result.params)
    if result.provider:
        read["provider"] = result.provider
    # Made here (our record, or our infotext naming one of our providers): its steps suit Turbo.
    state = {"params": read, "turbo": result.source == "zimage" or result.provider is not None}
    use = gr.update(interactive=bool(read))
    return result.message, read or None, result.ignored or None, use, hidden, state


def axis_text(axis: Axis) -> str:
    """An axis's values as the Sweep tab takes them (CSV where a text value may hold a comma)."""
    if axis.kind in ("seed", "steps", "shift"):
        return ", ".join(str(value) for value in axis.values)
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(axis.values)
    return buffer.getvalue()


def sweep_again(state: dict[str, Any] | None) -> list[Any]:
    """The grid's sweep back on the page: its settings in the form, its axes in the Sweep tab.
    Outputs: the presets status, `Form.outputs`, the Sweep tab's provider and axes, the message."""
    raw = (state or {}).get("grid")
    if not raw:
        nothing = "Drop a sweep grid PNG first."
        return [nothing, *([gr.skip()] * (NO_CHANGE_COUNT - 1)), *([gr.skip()] * 5), nothing]
    spec = SweepSpec.model_validate_json(raw)
    filled = fill_values(preset_from_params(spec.params, spec.provider))
    y_kind, y_text = (spec.y.kind, axis_text(spec.y)) if spec.y else (NO_AXIS, "")
    message = "The sweep is set up again on the Sweep tab: press Run sweep."
    return [
        message,
        *filled[:-1],
        gr.Tabs(selected="sweep"),
        spec.provider,
        spec.x.kind,
        axis_text(spec.x),
        y_kind,
        y_text,
        message,
    ]


TURBO_TUNED = {"num_inference_steps": ("Steps", TURBO_STEPS), "guidance_scale": ("CFG scale", 0.0)}


def use_readback(state: dict[str, Any] | None, theirs: bool) -> list[Any]:
    """Fill the form with what was read; fields the image did not give keep their values.
    Outputs: the presets status, `Form.outputs`, then the PNG info message (the same text).

    An image made with another model keeps Turbo's steps and guidance unless `theirs`: its
    28 steps and CFG 7 suit that model, not a Turbo model; the message says what was kept.
    """
    state = state or {}
    read = state.get("params")
    if not read:
        nothing = "Nothing to use: drop an image first."
        return [nothing, *([gr.skip()] * (NO_CHANGE_COUNT - 1)), nothing]
    values: dict[str, Any] = {**read}
    kept = []
    if not state.get("turbo") and not theirs:
        for name, (label, turbo) in TURBO_TUNED.items():
            if name in values and values[name] != turbo:
                kept.append(f"{label} {values.pop(name):g}")
                values[name] = turbo
    if "seed" in values:
        values["random_seed"] = False
        values["seed"] = str(values["seed"])
    shared = [values.get(name, gr.skip()) for name in SHARED_ORDER]
    provider = read.get("provider")
    provider_update = provider if provider in PROVIDERS else gr.skip()
    rest = [gr.skip()] * (NO_CHANGE_COUNT - 1 - len(shared) - 1)
    message = "Settings filled from the image."
    if kept:
        message += (
            f" Kept Turbo's 8 steps and guidance 0 instead of its {' and '.join(kept)}, which suit"
            " the model that made it: tick “Also use its steps and CFG scale” to take them."
        )
    return [message, *shared, provider_update, *rest, message]


@dataclass
class HistoryTab:
    gallery: gr.Gallery
    restore: gr.Button
    selected: gr.State
    search: gr.Textbox
    table: gr.Dataframe
    export: gr.Button
    csv: gr.File


def build_history_tab() -> HistoryTab:
    gr.Markdown(
        "Every image made in this browser session, newest first. Pick one, then restore its settings."
    )
    gallery = gr.Gallery(
        label="This session",
        columns=6,
        height=300,
        format="png",
        interactive=False,
        allow_preview=False,
        preview=False,
        fit_columns=False,
        object_fit="contain",
        elem_id="history-gallery",
    )
    restore = gr.Button("Restore settings", interactive=False, elem_id="history-restore")
    team = history_from_env() is not None
    with gr.Accordion("Team run log", open=True, visible=team):
        search = gr.Textbox(label="Search prompts", max_lines=1, elem_id="history-search")
        table = gr.Dataframe(interactive=False, elem_id="history-table")
        export = gr.Button("Export CSV", size="sm")
        csv = gr.File(label="Run log", visible=False, interactive=False)
    return HistoryTab(gallery, restore, gr.State(None), search, table, export, csv)


def history_gallery(history: list[dict[str, str]] | None) -> list[tuple[str, str]]:
    return [(entry["path"], entry["caption"]) for entry in history or [] if Path(entry["path"]).exists()]


def on_history_select(event: gr.SelectData) -> tuple[int, Any]:
    return event.index, gr.update(interactive=True)


def restore_from_history(
    index: int | None, history: list[dict[str, str]] | None, session_keys: dict[str, str] | None
) -> list[Any]:
    entries = [entry for entry in history or [] if Path(entry["path"]).exists()]
    if index is None or not 0 <= index < len(entries):
        return ["Pick an image in the history first.", *([gr.skip()] * (NO_CHANGE_COUNT - 1))]
    try:
        preset = import_preset(entries[index]["preset"], secrets=KeyRing(session_keys).secrets())
    except PresetError as exc:
        return refused(exc)
    return applied(preset, "the history")


TABLE_COLUMNS = ["When", "Provider", "Prompt", "Seed", "Size", "Steps", "Time s", "Cost", "Error"]


def search_runs(text: str) -> Any:
    store = history_from_env()
    if store is None:
        return gr.skip()
    rows = []
    for row in store.search(text or ""):
        params = row.generation_params()
        rows.append(
            [
                row.created_at[:16].replace("T", " "),
                row.provider,
                row.prompt[:80],
                row.seed,
                params.size,
                params.num_inference_steps,
                round(row.elapsed_s, 2),
                row.cost or "",
                row.error or "",
            ]
        )
    return {"headers": TABLE_COLUMNS, "data": rows or [["", "", "no runs match", "", "", "", "", "", ""]]}


def export_runs() -> Any:
    store = history_from_env()
    if store is None:
        raise user_error("No team run log is configured: set ZIMAGE_HISTORY_DB.")
    path = scratch_folder("history") / "zimage-runs.csv"
    path.write_text(store.export_csv(), encoding="utf-8")
    return gr.update(value=str(path), visible=True)
