"""Enhance under the prompt: the configured enhancer rewrites the prompt in the box, for editing,
with one-click undo. Every tab then draws the rewrite (one enhanced prompt for all sides and
cells), and its PNGs keep the person's own prompt and the enhancer's model beside it."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from zimage_ui.enhancer import (
    WITHHELD,
    Enhanced,
    EnhancerFailed,
    LocalEnhancer,
    enhance_for_visitor,
    visitor_enhancer,
    withheld_endpoint,
)
from zimage_ui.ui.common import PRIVATE
from zimage_ui.ui.form import Updates, Values

log = logging.getLogger(__name__)


@dataclass
class EnhanceRow:
    enhance: gr.Button
    undo: gr.Button
    each_run: gr.Checkbox
    note: gr.Markdown
    before: gr.State = field(default_factory=lambda: gr.State(None))  # the prompt before the rewrite
    # The rewrite in the box: {"prompt", "original", "model"}; a run whose prompt is still this
    # text records where it came from (`Form.read`).
    rewrite: gr.State = field(default_factory=lambda: gr.State(None))

    def wire(self, prompt: gr.Textbox) -> None:
        self._prompt = prompt
        self.enhance.click(
            self.on_enhance,
            {prompt},
            [prompt, self.before, self.rewrite, self.undo, self.note],
            api_visibility="private",
            # A local rewrite holds the device: one at a time, so one visitor's clicks can't line
            # up ahead of everyone's generations. An endpoint's take no local resource.
            concurrency_limit=1 if isinstance(visitor_enhancer(), LocalEnhancer) else None,
            show_progress_on=[self.note],
        )
        self.undo.click(
            self.on_undo, {self.before}, [prompt, self.before, self.rewrite, self.undo, self.note], **PRIVATE
        )

    async def on_enhance(self, data: Values) -> Updates:
        own = data[self._prompt] or ""
        try:
            enhanced = await enhance_for_visitor(own)
        except EnhancerFailed as exc:
            return {self.note: f"**Not enhanced:** {exc}. Your prompt is as you wrote it."}
        return {
            self._prompt: enhanced.prompt,
            self.before: own,
            self.rewrite: as_state(enhanced),
            self.undo: gr.update(interactive=True),
            self.note: f"Rewritten by **{enhanced.model}**: edit it as you like, or Undo. "
            "Every run draws it; its PNGs keep your own prompt too.",
        }

    def on_undo(self, data: Values) -> Updates:
        before = data[self.before]
        if before is None:
            return {self.note: "Nothing to undo."}
        return {
            self._prompt: before,
            self.before: None,
            self.rewrite: None,
            self.undo: gr.update(interactive=False),
            self.note: "Back to your own prompt.",
        }


def as_state(enhanced: Enhanced) -> dict[str, Any]:
    return {"prompt": enhanced.prompt, "original": enhanced.original, "model": enhanced.model}


def build_enhance_row() -> EnhanceRow:
    """Shown where visitors have an enhancer (`enhancer.visitor_enhancer`). Where the owner's
    endpoint is theirs alone it stays hidden, as a control nobody may use would only push the
    page down a phone screen; the log tells the owner why."""
    configured = visitor_enhancer()
    if configured is None and withheld_endpoint() is not None:
        log.warning("Enhance is hidden from page visitors: %s", WITHHELD)
    with gr.Column(visible=configured is not None, elem_id="enhance-box"):
        with gr.Row(elem_classes=["enhance-row"]):
            enhance_button = gr.Button("Enhance prompt", size="sm", scale=0, min_width=140, elem_id="enhance")
            undo = gr.Button(
                "Undo", size="sm", scale=0, min_width=70, interactive=False, elem_id="enhance-undo"
            )
            each_run = gr.Checkbox(
                label="Enhance each run", value=False, scale=1, min_width=160, elem_id="enhance-each-run"
            )
        note = gr.Markdown(
            f"Rewrites your prompt with {configured.model} the way Z-Image-Turbo likes: long and concrete."
            if configured
            else "",
            elem_id="enhance-note",
        )
    return EnhanceRow(enhance_button, undo, each_run, note)
