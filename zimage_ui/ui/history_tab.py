"""The History tab: this browser session's images, and the team run log when configured."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from zimage_ui.errors import PresetError
from zimage_ui.history import history_from_env
from zimage_ui.presets import import_preset
from zimage_ui.providers.base import KeyRing
from zimage_ui.runs import scratch_folder
from zimage_ui.ui.common import PRIVATE, PRIVATE_SAYING, SessionState
from zimage_ui.ui.form import UNCHANGED, Form, Updates, Values
from zimage_ui.ui.presets_panel import PresetsPanel

TABLE_COLUMNS = ["When", "Provider", "Prompt", "Seed", "Size", "Steps", "Time s", "Cost", "Error"]


def _present(history: list[dict[str, str]] | None) -> list[dict[str, str]]:
    """The history entries whose image is still on disk (old ones are pruned)."""
    return [entry for entry in history or [] if Path(entry["path"]).exists()]


@dataclass
class HistoryTab:
    gallery: gr.Gallery
    restore: gr.Button
    selected: gr.State
    search: gr.Textbox
    table: gr.Dataframe
    export: gr.Button
    csv: gr.File

    def wire(self, demo: gr.Blocks, form: Form, presets: PresetsPanel, state: SessionState) -> None:
        history, keys = state.history, state.keys
        self._presets, self._history, self._keys = presets, history, keys
        history.change(self.on_history, {history}, [self.gallery], **PRIVATE)
        self.gallery.select(self.on_select, None, [self.selected, self.restore], **PRIVATE)
        fill = [presets.status, *form.outputs()]
        self.restore.click(self.on_restore, {self.selected, history, keys}, fill, **PRIVATE)
        self.search.change(self.on_search, {self.search}, [self.table], **PRIVATE)
        demo.load(self.on_search, {self.search}, [self.table], **PRIVATE)
        self.export.click(self.on_export, None, [self.csv], **PRIVATE_SAYING)

    def on_history(self, data: Values) -> Updates:
        return {self.gallery: [(entry["path"], entry["caption"]) for entry in _present(data[self._history])]}

    def on_select(self, event: gr.SelectData) -> Updates:
        return {self.selected: event.index, self.restore: gr.update(interactive=True)}

    def on_restore(self, data: Values) -> Updates:
        entries, index = _present(data[self._history]), data[self.selected]
        if index is None or not 0 <= index < len(entries):
            return {self._presets.status: "Pick an image in the history first."}
        try:
            preset = import_preset(entries[index]["preset"], secrets=KeyRing(data[self._keys]).secrets())
        except PresetError as exc:
            return self._presets.refused(exc)
        return self._presets.applied(preset, "the history")

    def on_search(self, data: Values) -> Updates:
        store = history_from_env()
        if store is None:
            return UNCHANGED
        rows = []
        for row in store.search(data[self.search] or ""):
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
        empty = [["", "", "no runs match", "", "", "", "", "", ""]]
        return {self.table: {"headers": TABLE_COLUMNS, "data": rows or empty}}

    def on_export(self) -> Updates:
        store = history_from_env()
        if store is None:
            gr.Warning("No team run log is configured: set ZIMAGE_HISTORY_DB.")
            return UNCHANGED
        path = scratch_folder("history") / "zimage-runs.csv"
        path.write_text(store.export_csv(), encoding="utf-8")
        return {self.csv: gr.update(value=str(path), visible=True)}


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
