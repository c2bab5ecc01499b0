"""Presets on the page: export/import files, named presets in the browser, a team folder, links."""

from __future__ import annotations

import os
import secrets as token_source
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from zimage_ui.compare import MAX_SIDES
from zimage_ui.preset_sharing import (
    list_team_presets,
    preset_from_query,
    safe_stem,
    save_team_preset,
    share_query,
)
from zimage_ui.presets import Preset, PresetError, export_preset, import_preset, read_preset_file
from zimage_ui.providers.base import KeyRing
from zimage_ui.runs import scratch_folder
from zimage_ui.ui.compare_tab import read_sides
from zimage_ui.ui.form import current_preset, fill_values

STORAGE_KEY_DEFAULT = "zimage-ui-presets"
NO_CHANGE_COUNT = 1 + 10 + 1 + 1 + 4 * MAX_SIDES + 1  # status + Form.outputs


def browser_secret() -> str:
    """From ZIMAGE_BROWSER_SECRET, else one made once and kept in the user data folder, so
    presets saved in the browser survive a restart of the app."""
    configured = os.environ.get("ZIMAGE_BROWSER_SECRET", "").strip()
    if configured:
        return configured
    from platformdirs import user_data_dir

    path = Path(user_data_dir("zimage-ui", appauthor=False)) / "browser-secret"
    try:
        if path.exists():
            return path.read_text().strip()
        path.parent.mkdir(parents=True, exist_ok=True)
        value = token_source.token_urlsafe(32)
        path.write_text(value)
        path.chmod(0o600)
        return value
    except OSError:
        return token_source.token_urlsafe(32)  # read-only disk: presets last until a restart


def team_folder() -> Path | None:
    configured = os.environ.get("ZIMAGE_PRESETS_DIR", "").strip()
    return Path(configured) if configured else None


@dataclass
class PresetsPanel:
    name: gr.Textbox
    include_sides: gr.Checkbox
    export: gr.Button
    exported: gr.File
    upload: gr.UploadButton
    saved: gr.Dropdown
    save: gr.Button
    load: gr.Button
    delete: gr.Button
    store: gr.BrowserState
    team: gr.Dropdown
    team_load: gr.Button
    team_save: gr.Button
    link_button: gr.Button
    query: gr.Textbox
    link: gr.Textbox
    status: gr.Markdown


def build_presets_panel() -> PresetsPanel:
    folder = team_folder()
    with gr.Accordion("Presets and sharing", open=False, elem_id="presets"):
        with gr.Row():
            name = gr.Textbox(label="Preset name", max_lines=1, scale=2, elem_id="preset-name")
            include_sides = gr.Checkbox(label="Include comparison sides", scale=1)
        with gr.Row():
            export = gr.Button("Export preset", size="sm", elem_id="export-preset")
            upload = gr.UploadButton(
                "Import preset", size="sm", file_types=[".json", ".yaml", ".yml"], elem_id="import-preset"
            )
        exported = gr.File(
            label="Exported preset", visible=False, interactive=False, elem_id="exported-preset"
        )
        saved = gr.Dropdown(label="Saved in this browser", choices=[], elem_id="saved-presets")
        with gr.Row():
            save = gr.Button("Save", size="sm", elem_id="save-preset")
            load = gr.Button("Load", size="sm", elem_id="load-preset")
            delete = gr.Button("Delete", size="sm")
        with gr.Group(visible=folder is not None):
            team = gr.Dropdown(
                label=f"Team presets ({folder})" if folder else "Team presets",
                choices=team_choices(),
                elem_id="team-presets",
            )
            with gr.Row():
                team_load = gr.Button("Load team preset", size="sm", elem_id="team-load")
                team_save = gr.Button("Save to team folder", size="sm", elem_id="team-save")
        link = gr.Textbox(
            label="Share link",
            max_lines=1,
            buttons=["copy"],
            elem_id="share-link",
            placeholder="press Copy link: the settings as a link anyone can open",
        )
        link_button = gr.Button("Copy link", size="sm", elem_id="copy-link")
        query = gr.Textbox(visible=False)
        status = gr.Markdown(elem_id="preset-status")
    store = gr.BrowserState(
        {},
        storage_key=os.environ.get("ZIMAGE_BROWSER_STORAGE_KEY", STORAGE_KEY_DEFAULT),
        secret=browser_secret(),
    )
    return PresetsPanel(
        name,
        include_sides,
        export,
        exported,
        upload,
        saved,
        save,
        load,
        delete,
        store,
        team,
        team_load,
        team_save,
        link_button,
        query,
        link,
        status,
    )


# -- reading the form -------------------------------------------------------------------------
# Handlers get: the 10 shared values, provider, include_sides, side count, 4 per side, name.


def preset_from_form(values: tuple[Any, ...]) -> Preset:
    shared, provider, include_sides, count = list(values[:10]), values[10], values[11], values[12]
    side_values, name = values[13 : 13 + 4 * MAX_SIDES], values[13 + 4 * MAX_SIDES]
    sides = read_sides(count, tuple(side_values)) if include_sides else None
    return current_preset(shared, provider, sides, name or "")


def refused(exc: PresetError) -> list[Any]:
    """A refused preset: say why, change nothing on the form."""
    problems = "\n".join(f"- **{field}**: {problem}" for field, problem in exc.fields.items())
    return [f"**Preset refused, nothing changed.**\n{problems}", *([gr.skip()] * (NO_CHANGE_COUNT - 1))]


def applied(preset: Preset, where: str) -> list[Any]:
    label = f" “{preset.name}”" if preset.name else ""
    return [f"Loaded preset{label} from {where}.", *fill_values(preset)]


NEEDS_NAME = "**Give the preset a name first** (Preset name, above)."


def form_problem(exc: gr.Error) -> str:
    """A refused form as a status line: these events are not queued, so an error toast would
    never reach the page."""
    return f"**Nothing done:** {exc.message}"


def export_file(*values: Any) -> tuple[Any, str]:
    try:
        preset = preset_from_form(values)
    except gr.Error as exc:
        return gr.skip(), form_problem(exc)
    path = scratch_folder("preset") / f"{safe_stem(preset.name or 'zimage-preset')}.json"
    path.write_text(export_preset(preset))
    return gr.update(value=str(path), visible=True), f"Exported “{path.name}”: download it below."


def import_file(file: str | None, session_keys: dict[str, str] | None) -> list[Any]:
    if not file:
        return ["No file.", *([gr.skip()] * (NO_CHANGE_COUNT - 1))]
    try:
        preset = read_preset_file(Path(file), secrets=KeyRing(session_keys).secrets())
    except PresetError as exc:
        return refused(exc)
    return applied(preset, Path(file).name)


def save_in_browser(store: dict[str, str] | None, *values: Any) -> tuple[Any, ...]:
    if not str(values[-1] or "").strip():  # the name comes last
        return gr.skip(), gr.skip(), NEEDS_NAME
    try:
        preset = preset_from_form(values)
    except gr.Error as exc:
        return gr.skip(), gr.skip(), form_problem(exc)
    store = {**(store or {}), preset.name: export_preset(preset)}
    return (
        store,
        gr.update(choices=sorted(store), value=preset.name),
        f"Saved “{preset.name}” in this browser.",
    )


def load_from_browser(
    name: str | None, store: dict[str, str] | None, session_keys: dict[str, str] | None
) -> list[Any]:
    text = (store or {}).get(name or "")
    if text is None:
        return ["Pick a saved preset first.", *([gr.skip()] * (NO_CHANGE_COUNT - 1))]
    try:
        return applied(import_preset(text, secrets=KeyRing(session_keys).secrets()), "this browser")
    except PresetError as exc:
        return refused(exc)


def delete_from_browser(name: str | None, store: dict[str, str] | None) -> tuple[Any, ...]:
    store = {k: v for k, v in (store or {}).items() if k != name}
    return store, gr.update(choices=sorted(store), value=None), f"Deleted “{name}”." if name else ""


def refresh_saved(store: dict[str, str] | None) -> Any:
    return gr.update(choices=sorted(store or {}))


def team_choices() -> list[str]:
    folder = team_folder()
    if folder is None or not folder.is_dir():
        return []
    presets, _problems = list_team_presets(folder)
    return sorted(presets)


def load_from_team(title: str | None, session_keys: dict[str, str] | None) -> list[Any]:
    folder = team_folder()
    if folder is None:
        return ["No team folder is configured (ZIMAGE_PRESETS_DIR).", *([gr.skip()] * (NO_CHANGE_COUNT - 1))]
    presets, problems = list_team_presets(folder, secrets=KeyRing(session_keys).secrets())
    if title not in presets:
        note = f" ({len(problems)} file(s) in the folder could not be read)" if problems else ""
        return [f"Pick a team preset first{note}.", *([gr.skip()] * (NO_CHANGE_COUNT - 1))]
    return applied(presets[title], "the team folder")


def save_to_team(*values: Any) -> tuple[Any, Any]:
    folder = team_folder()
    if folder is None:
        return gr.skip(), "No team folder is configured: set ZIMAGE_PRESETS_DIR."
    if not str(values[-1] or "").strip():  # the name comes last
        return gr.skip(), NEEDS_NAME
    try:
        preset = preset_from_form(values)
    except gr.Error as exc:
        return gr.skip(), form_problem(exc)
    folder.mkdir(parents=True, exist_ok=True)
    path = save_team_preset(folder, preset)
    return gr.update(choices=team_choices()), f"Saved “{preset.name}” to the team folder as {path.name}."


def share_link_query(*values: Any) -> tuple[str, str]:
    """The link's query and a status line; an empty query (the form is refused) makes no link."""
    try:
        return share_query(preset_from_form(values)), "Link copied: anyone who opens it gets these settings."
    except gr.Error as exc:
        return "", form_problem(exc)


SHARE_LINK_JS = """(query) => {
    if (!query) { return ""; }
    const url = window.location.origin + window.location.pathname + '?' + query;
    if (navigator.clipboard) { navigator.clipboard.writeText(url).catch(() => {}); }
    return url;
}"""


def fill_from_link(request: gr.Request) -> list[Any]:
    """On page load: a share link (`?prompt=...&seed=...`) fills the form; anything else does nothing."""
    query = dict(request.query_params) if request else {}
    if not query.get("prompt") and not query.get("provider"):
        return [gr.skip()] * NO_CHANGE_COUNT
    try:
        result = preset_from_query(query)
    except PresetError as exc:
        return refused(exc)
    status = "Settings filled from the link."
    if result.ignored:
        status += f" Ignored: {', '.join(result.ignored)}."
    return [status, *fill_values(result.preset)]
