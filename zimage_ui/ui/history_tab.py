"""The History tab: every image made here (each image of a batch, compare side and sweep cell),
searchable by prompt, with "use these settings", "use as input" and delete.

Where it comes from: this browser's own history (`SessionState.history`, kept in the browser, so
it survives a reload), or on a team instance (`ZIMAGE_HISTORY_DB`) the team's run log, shared by
everyone. Entries a browser sends back are read as untrusted: only PNGs in this app's run folders
are shown, and an entry whose file is gone (run files are deleted after a while) says so.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from zimage_ui.errors import PresetError
from zimage_ui.history import HistoryEntry, HistoryRow, HistoryStore, history_from_env
from zimage_ui.presets import export_preset, import_preset
from zimage_ui.providers.base import KeyRing
from zimage_ui.runs import scratch_folder, work_root
from zimage_ui.sheets import placeholder
from zimage_ui.ui.common import HISTORY_LIMIT, PRIVATE, PRIVATE_SAYING, SessionState, history_preset
from zimage_ui.ui.form import UNCHANGED, Form, Updates, Values
from zimage_ui.ui.generate_tab import use_as_input_updates
from zimage_ui.ui.presets_panel import PresetsPanel

TABLE_COLUMNS = ["When", "Provider", "Prompt", "Seed", "Size", "Steps", "Time s", "Cost", "Error"]
GONE = " · file gone (run files are deleted after a while)"
TEAM_RUNS_SHOWN = 50  # the newest runs of the team log the gallery shows (each with its images)


def kept_file(path: str) -> Path | None:
    """The entry's image when it is still here and is one of this app's run files (a browser could
    send any path: nothing outside the run folders is ever shown)."""
    try:
        real = Path(path).resolve()
    except (OSError, RuntimeError, ValueError):
        return None
    runs = work_root().parent  # every process's run folders of this user
    return real if real.suffix == ".png" and real.is_relative_to(runs) and real.is_file() else None


@functools.cache
def _gone_image() -> str:
    """A grey tile standing in for an image that is no longer kept."""
    path = work_root() / "history-file-gone.png"
    buffer = io.BytesIO()
    placeholder((256, 256), "file no longer kept").save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue())
    return str(path)


def browser_entries(history: object, search: str) -> list[HistoryEntry]:
    """This browser's entries whose prompt contains `search` (any case), newest first; anything
    that is not an entry is dropped, and no more than the browser keeps is read."""
    items = history[:HISTORY_LIMIT] if isinstance(history, list) else []
    entries = [HistoryEntry.from_dict(item) for item in items]
    needle = search.strip().casefold()
    return [entry for entry in entries if entry and needle in entry.prompt.casefold()]


def team_entries(store: HistoryStore, search: str) -> list[HistoryEntry]:
    """The team log's newest runs whose prompt contains `search`, one entry per image."""
    return [entry for row in store.search(search.strip(), TEAM_RUNS_SHOWN) for entry in row_entries(row)]


def row_entries(row: HistoryRow) -> list[HistoryEntry]:
    if not row.image_paths:
        return []
    preset = export_preset(history_preset(row.generation_params(), row.provider))
    when = row.created_at[:16].replace("T", " ")
    caption = f"{row.provider} · seed {row.seed} · {when}"
    return [HistoryEntry(path, caption, row.prompt, preset) for path in row.image_paths]


def gallery_item(entry: HistoryEntry) -> tuple[str, str]:
    kept = kept_file(entry.path)
    return (str(kept), entry.caption) if kept else (_gone_image(), entry.caption + GONE)


@dataclass
class HistoryTab:
    note: gr.Markdown
    search: gr.Textbox
    gallery: gr.Gallery
    restore: gr.Button
    use_as_input: gr.Button
    delete: gr.Button
    shown: gr.State  # the entries in the gallery, in its order (as dicts)
    selected: gr.State
    table: gr.Dataframe
    table_search: gr.Textbox
    export: gr.Button
    csv: gr.File

    def wire(
        self, demo: gr.Blocks, tab: gr.Tab, form: Form, presets: PresetsPanel, state: SessionState
    ) -> None:
        self._form, self._presets, self._state = form, presets, state
        show = [self.gallery, self.shown, self.selected, self.note, *self.actions()]
        # The browser's history is sent to the server only when it is shown.
        for trigger in (tab.select, self.search.submit, self.search.change):
            trigger(self.on_show, {state.history, self.search}, show, **PRIVATE)
        self.gallery.select(self.on_select, None, [self.selected, *self.actions()], **PRIVATE)
        fill = [presets.status, *form.outputs()]
        self.restore.click(self.on_restore, {self.shown, self.selected, state.keys}, fill, **PRIVATE)
        if form.image_inputs is not None:
            inputs = form.image_inputs
            self.use_as_input.click(
                self.on_use_as_input,
                {self.shown, self.selected},
                [inputs.image, inputs.image_url, inputs.control_image, inputs.accordion, presets.status],
                **PRIVATE,
            )
        self.delete.click(
            self.on_delete, {self.shown, self.selected, state.history}, [state.history], **PRIVATE
        ).then(self.on_show, {state.history, self.search}, show, **PRIVATE)
        self.table_search.change(self.on_table, {self.table_search}, [self.table], **PRIVATE)
        demo.load(self.on_table, {self.table_search}, [self.table], **PRIVATE)
        self.export.click(self.on_export, None, [self.csv], **PRIVATE_SAYING)

    def actions(self) -> list[gr.Button]:
        return [self.restore, self.use_as_input, self.delete]

    def on_show(self, data: Values) -> Updates:
        store = history_from_env()
        search = data[self.search] or ""
        entries = team_entries(store, search) if store else browser_entries(data[self._state.history], search)
        where = "the team's run log" if store else "this browser"
        if not entries:
            note = f"No image matches “{search.strip()}”." if search.strip() else "No images yet."
        else:
            count = f"{len(entries)} image" + ("s" if len(entries) != 1 else "")
            note = f"{count} from {where}, newest first. Pick one."
        return {
            self.gallery: [gallery_item(entry) for entry in entries],
            self.shown: [entry.as_dict() for entry in entries],
            self.selected: None,
            self.note: note,
            **{button: gr.update(interactive=False) for button in self.actions()},
        }

    def on_select(self, event: gr.SelectData) -> Updates:
        return {
            self.selected: event.index,
            **{button: gr.update(interactive=True) for button in self.actions()},
        }

    def _picked(self, data: Values) -> HistoryEntry | None:
        shown, index = data[self.shown] or [], data[self.selected]
        if not isinstance(index, int) or not 0 <= index < len(shown):
            return None
        return HistoryEntry.from_dict(shown[index])

    def on_restore(self, data: Values) -> Updates:
        entry = self._picked(data)
        if entry is None:
            return {self._presets.status: "Pick an image in the history first."}
        try:
            preset = import_preset(entry.preset, secrets=KeyRing(data[self._state.keys]).secrets())
        except PresetError as exc:
            return self._presets.refused(exc)
        return self._presets.applied(preset, "the history")

    def on_use_as_input(self, data: Values) -> Updates:
        entry = self._picked(data)
        kept = kept_file(entry.path) if entry else None
        if kept is None:
            return {self._presets.status: "That image is no longer kept: pick another, or upload it."}
        return use_as_input_updates(self._form, str(kept))

    def on_delete(self, data: Values) -> Updates:
        """The picked image leaves the history (its file goes when the run's files do). On a team
        instance it leaves the team's log; the run stays there for its figures."""
        entry = self._picked(data)
        if entry is None:
            return UNCHANGED
        store = history_from_env()
        if store is not None:
            store.forget_image(entry.path)
            return UNCHANGED
        history = data[self._state.history]
        items = history[:HISTORY_LIMIT] if isinstance(history, list) else []
        return {self._state.history: [item for item in items if HistoryEntry.from_dict(item) != entry]}

    def on_table(self, data: Values) -> Updates:
        store = history_from_env()
        if store is None:
            return UNCHANGED
        rows = []
        for row in store.search(data[self.table_search] or ""):
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
    team = history_from_env() is not None
    kept = "the team's run log (everyone's runs)" if team else "this browser (it survives a reload)"
    gr.Markdown(f"Every image made here, newest first, kept by {kept}.")
    note = gr.Markdown("Open this tab to see your images.", elem_id="history-note")
    search = gr.Textbox(label="Search prompts", max_lines=1, elem_id="history-search")
    gallery = gr.Gallery(
        label="History",
        columns=6,
        height=360,
        format="png",
        interactive=False,
        allow_preview=False,
        preview=False,
        fit_columns=False,
        object_fit="contain",
        elem_id="history-gallery",
    )
    with gr.Row():
        restore = gr.Button("Use these settings", interactive=False, size="sm", elem_id="history-restore")
        use_as_input = gr.Button("Use as input", interactive=False, size="sm", elem_id="history-use-as-input")
        delete = gr.Button("Delete", interactive=False, size="sm", elem_id="history-delete")
    with gr.Accordion("Team run log", open=False, visible=team):
        table_search = gr.Textbox(label="Search the log", max_lines=1, elem_id="history-table-search")
        table = gr.Dataframe(interactive=False, elem_id="history-table")
        export = gr.Button("Export CSV", size="sm")
        csv = gr.File(label="Run log", visible=False, interactive=False)
    return HistoryTab(
        note,
        search,
        gallery,
        restore,
        use_as_input,
        delete,
        gr.State([]),
        gr.State(None),
        table,
        table_search,
        export,
        csv,
    )
