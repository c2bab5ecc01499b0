"""Presets on the page: export/import files, named presets in the browser, a team folder, links."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from zimage_ui import env
from zimage_ui.files import write_atomic
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
from zimage_ui.ui.common import PRIVATE, browser_secret, problem_text, upload_button
from zimage_ui.ui.form import UNCHANGED, Form, Updates, Values


def team_folder() -> Path | None:
    configured = env.raw("ZIMAGE_PRESETS_DIR")
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
    accordion: gr.Accordion

    def wire(self, demo: gr.Blocks, form: Form, keys: gr.State) -> None:
        """Every change to the form goes through `Form.fill`: whole, or not at all."""
        self._form, self._keys = form, keys
        fill = [self.status, *form.outputs()]
        reads = {*form.inputs(), self.include_sides, self.name, keys}  # keys: refused in what leaves
        self.export.click(self.on_export, reads, [self.exported, self.status], **PRIVATE)
        self.upload.upload(self.on_import, {self.upload, keys}, fill, **PRIVATE)
        self.save.click(self.on_save, {*reads, self.store}, [self.store, self.saved, self.status], **PRIVATE)
        self.load.click(self.on_load, {self.saved, self.store, keys}, fill, **PRIVATE)
        self.delete.click(
            self.on_delete, {self.saved, self.store}, [self.store, self.saved, self.status], **PRIVATE
        )
        self.team_load.click(self.on_team_load, {self.team, keys}, fill, **PRIVATE)
        self.team_save.click(self.on_team_save, reads, [self.team, self.status], **PRIVATE)
        # The team folder changes under us (another browser saves to it): read it each time the
        # panel opens, not once at start.
        self.accordion.expand(self.on_team_refresh, {self.team}, [self.team], **PRIVATE)
        self.link_button.click(self.on_link, reads, [self.query, self.status], **PRIVATE).then(
            None, self.query, self.link, js=SHARE_LINK_JS
        )
        demo.load(self.on_page_load, {self.store}, [self.saved], **PRIVATE)
        demo.load(self.fill_from_link, None, fill, **PRIVATE)

    # -- reading and filling the form -------------------------------------------------------------

    def _preset(self, data: Values) -> Preset:
        return self._form.preset(
            data, include_sides=bool(data[self.include_sides]), name=data[self.name] or ""
        )

    def refused(self, exc: PresetError) -> Updates:
        """A refused preset: say why, change nothing on the form."""
        problems = "\n".join(f"- **{field}**: {problem}" for field, problem in exc.fields.items())
        return {self.status: f"**Preset refused, nothing changed.**\n{problems}"}

    def applied(self, preset: Preset, where: str) -> Updates:
        label = f" “{preset.name}”" if preset.name else ""
        return {self.status: f"Loaded preset{label} from {where}.", **self._form.fill(preset)}

    def _secrets(self, data: Values) -> list[str]:
        return KeyRing(data[self._keys]).secrets()

    # -- handlers ---------------------------------------------------------------------------------

    def on_export(self, data: Values) -> Updates:
        try:
            preset = self._preset(data)
            text = export_preset(preset, secrets=self._secrets(data))
        except gr.Error as exc:
            return {self.status: problem_text(exc)}
        except PresetError as exc:
            return self.refused(exc)
        path = scratch_folder("preset") / f"{safe_stem(preset.name or 'zimage-preset')}.json"
        write_atomic(path, text)
        return {
            self.exported: gr.update(value=str(path), visible=True),
            self.status: f"Exported “{path.name}”: download it below.",
        }

    def on_import(self, data: Values) -> Updates:
        file = data[self.upload]
        if not file:
            return {self.status: "No file."}
        try:
            preset = read_preset_file(Path(file), secrets=self._secrets(data))
        except PresetError as exc:
            return self.refused(exc)
        return self.applied(preset, Path(file).name)

    def on_save(self, data: Values) -> Updates:
        if not str(data[self.name] or "").strip():
            return {self.status: NEEDS_NAME}
        try:
            preset = self._preset(data)
        except gr.Error as exc:
            return {self.status: problem_text(exc)}
        store = {**(data[self.store] or {}), preset.name: export_preset(preset)}
        return {
            self.store: store,
            self.saved: gr.update(choices=sorted(store), value=preset.name),
            self.status: f"Saved “{preset.name}” in this browser.",
        }

    def on_load(self, data: Values) -> Updates:
        text = (data[self.store] or {}).get(data[self.saved] or "")
        if text is None:
            return {self.status: "Pick a saved preset first."}
        try:
            return self.applied(import_preset(text, secrets=self._secrets(data)), "this browser")
        except PresetError as exc:
            return self.refused(exc)

    def on_delete(self, data: Values) -> Updates:
        name = data[self.saved]
        if not name:
            return {self.status: "Pick a saved preset first."}
        store = {k: v for k, v in (data[self.store] or {}).items() if k != name}
        return {
            self.store: store,
            self.saved: gr.update(choices=sorted(store), value=None),
            self.status: f"Deleted “{name}”.",
        }

    def on_page_load(self, data: Values) -> Updates:
        return {self.saved: gr.update(choices=sorted(data[self.store] or {}))}

    def on_team_refresh(self, data: Values) -> Updates:
        choices = team_choices()
        kept = data[self.team] if data[self.team] in choices else None
        return {self.team: gr.update(choices=choices, value=kept)}

    def on_team_load(self, data: Values) -> Updates:
        folder = team_folder()
        if folder is None:
            return {self.status: "No team folder is configured (ZIMAGE_PRESETS_DIR)."}
        presets, problems = list_team_presets(folder, secrets=self._secrets(data))
        title = data[self.team]
        if title not in presets:
            note = f" ({len(problems)} file(s) in the folder could not be read)" if problems else ""
            return {self.status: f"Pick a team preset first{note}."}
        return self.applied(presets[title], "the team folder")

    def on_team_save(self, data: Values) -> Updates:
        folder = team_folder()
        if folder is None:
            return {self.status: "No team folder is configured: set ZIMAGE_PRESETS_DIR."}
        if not str(data[self.name] or "").strip():
            return {self.status: NEEDS_NAME}
        try:
            preset = self._preset(data)
            folder.mkdir(parents=True, exist_ok=True)
            path = save_team_preset(folder, preset, secrets=self._secrets(data))
        except gr.Error as exc:
            return {self.status: problem_text(exc)}
        except PresetError as exc:
            return self.refused(exc)
        return {
            self.team: gr.update(choices=team_choices()),
            self.status: f"Saved “{preset.name}” to the team folder as {path.name}.",
        }

    def on_link(self, data: Values) -> Updates:
        """The link's query and a status line; a refused form makes no link."""
        try:
            query = share_query(self._preset(data), secrets=self._secrets(data))
        except gr.Error as exc:
            return {self.query: "", self.status: problem_text(exc)}
        except PresetError as exc:
            return {self.query: "", **self.refused(exc)}
        return {self.query: query, self.status: "Link copied: anyone who opens it gets these settings."}

    def fill_from_link(self, request: gr.Request) -> Updates:
        """On page load: a share link (`?prompt=...&seed=...`) fills the form; anything else does nothing."""
        query = dict(request.query_params) if request else {}
        if not query.get("prompt") and not query.get("provider"):
            return UNCHANGED
        try:
            result = preset_from_query(query)
        except PresetError as exc:
            return self.refused(exc)
        status = "Settings filled from the link."
        if result.ignored:
            status += f" Ignored: {', '.join(result.ignored)}."
        return {**self._form.fill(result.preset), self.status: status}


def build_presets_panel() -> PresetsPanel:
    folder = team_folder()
    with gr.Accordion("Presets and sharing", open=False, elem_id="presets") as accordion:
        with gr.Row():
            name = gr.Textbox(label="Preset name", max_lines=1, scale=2, elem_id="preset-name")
            include_sides = gr.Checkbox(label="Include comparison sides", scale=1)
        with gr.Row():
            export = gr.Button("Export preset", size="sm", elem_id="export-preset")
            upload = upload_button(
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
                label="Team presets",  # never the folder's path: the page config is public
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
        storage_key=env.get("ZIMAGE_BROWSER_STORAGE_KEY"),
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
        accordion,
    )


NEEDS_NAME = "**Give the preset a name first** (Preset name, above)."


def team_choices() -> list[str]:
    folder = team_folder()
    if folder is None or not folder.is_dir():
        return []
    presets, _problems = list_team_presets(folder)
    return sorted(presets)


SHARE_LINK_JS = """(query) => {
    if (!query) { return ""; }
    const url = window.location.origin + window.location.pathname + '?' + query;
    if (navigator.clipboard) { navigator.clipboard.writeText(url).catch(() => {}); }
    return url;
}"""
