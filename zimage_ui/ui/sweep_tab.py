"""The Sweep tab: an X/Y grid over seed, steps, shift, strength, LoRA scale, provider or a prompt
replacement."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from zimage_ui.errors import InvalidParams
from zimage_ui.params import GenerationParams
from zimage_ui.providers.base import KeyRing
from zimage_ui.runner import Outcome
from zimage_ui.runs import Run
from zimage_ui.sheets import placeholder
from zimage_ui.sweep import (
    AXIS_LABELS,
    Axis,
    SweepSpec,
    axis_problem,
    check_size,
    max_cells,
    parse_axis,
    plan,
    run_sweep,
)
from zimage_ui.ui.common import (
    PRIVATE,
    Fresh,
    SessionState,
    follow,
    on_run,
    owned_run,
    run_buttons,
    save_run_files,
    stop_handler,
    user_error,
)
from zimage_ui.ui.endpoints import ApiArg, settings_endpoint
from zimage_ui.ui.form import Form, Updates, Values, api_params
from zimage_ui.ui.settings_panel import provider_choices

NO_AXIS = "none"
AXIS_CHOICES = [(label, kind) for kind, label in AXIS_LABELS.items()]


@dataclass
class SweepTab:
    provider: gr.Dropdown
    x_kind: gr.Dropdown
    x_values: gr.Textbox
    y_kind: gr.Dropdown
    y_values: gr.Textbox
    cells: gr.Markdown
    run: gr.Button
    stop: gr.Button
    input_chip: gr.Button
    status: gr.Markdown
    grid: gr.Image
    gallery: gr.Gallery
    grid_file: gr.File

    def wire(self, form: Form, state: SessionState) -> None:
        self._form, self._keys, self._fresh = form, state.keys, state.fresh
        keys = state.keys
        axes = {self.x_kind, self.x_values, self.y_kind, self.y_values, form.settings.prompt}
        gr.on(
            [
                self.x_kind.change,
                self.x_values.change,
                self.y_kind.change,
                self.y_values.change,
                form.settings.prompt.change,
            ],
            self.on_axes,
            axes,
            [self.cells],
            **PRIVATE,
        )
        outputs = [self.status, self.grid, self.gallery, self.grid_file, state.fresh]
        on_run(
            self.run,
            self.stop,
            self.on_run,
            {*form.read_inputs(), *axes, self.provider, keys},
            outputs,
            api_visibility="private",
            concurrency_limit=None,
        )
        self.stop.click(stop_handler("sweep"), None, self.status, **PRIVATE)

    def on_axes(self, data: Values) -> Updates:
        text = cell_count_text(
            data[self.x_kind],
            data[self.x_values],
            data[self.y_kind],
            data[self.y_values],
            data[self._form.settings.prompt],
        )
        return {self.cells: text}

    async def on_run(self, data: Values, request: gr.Request) -> AsyncIterator[Updates]:
        try:
            params = await self._form.read_for_run(data)
            spec = sweep_spec(
                params,
                data[self.provider],
                data[self.x_kind],
                data[self.x_values],
                data[self.y_kind],
                data[self.y_values],
            )
        except gr.Error as exc:
            yield {self.status: f"**{exc.title}.** {exc.message}"}
            return
        done: asyncio.Queue[int] = asyncio.Queue()
        keys = KeyRing.for_visitor(data[self._keys])
        fresh = Fresh()  # every cell's image joins the history

        def keep(outcome: Outcome, paths: list[Path], caption: str) -> None:
            fresh.add(outcome, paths, keys, label=caption)

        task = asyncio.create_task(
            run_cells(spec, keys, request, lambda n, _total: done.put_nowait(n), on_cell=keep)
        )
        yield {self.status: f"Running {spec.cell_count} cells…"}
        async for finished in follow(task, done):
            yield {self.status: f"{finished} of {spec.cell_count} cells done…"}
        try:
            status, grid, cells = task.result()
        except gr.Error as exc:  # the server is busy
            yield {self.status: f"**{exc.title}.** {exc.message}"}
            return
        yield {
            self.status: status,
            self.grid: grid,
            self.gallery: cells,
            self.grid_file: grid,
            self._fresh: fresh.value(),
        }


def build_sweep_tab(default_provider: str) -> SweepTab:
    gr.Markdown(
        "Values are lists (`1, 4, 8`) or ranges (`1-8`, `1-8 (+2)`, `2-8 [4]`). For Prompt S/R the "
        "first value is the text to find in the prompt; each value replaces it in turn. Strength "
        "and LoRA scale (every LoRA's scale) vary the Image input panel's input image and LoRAs."
    )
    provider = gr.Dropdown(
        label="Provider",
        choices=provider_choices(KeyRing.for_visitor()),
        value=default_provider,
        elem_id="sweep-provider",
    )
    with gr.Row():
        x_kind = gr.Dropdown(
            label="X axis", choices=AXIS_CHOICES, value="steps", scale=1, elem_id="sweep-x-kind"
        )
        x_values = gr.Textbox(label="X values", value="4, 8", scale=3, max_lines=1, elem_id="sweep-x-values")
    with gr.Row():
        y_kind = gr.Dropdown(
            label="Y axis",
            choices=[("None", NO_AXIS), *AXIS_CHOICES],
            value=NO_AXIS,
            scale=1,
            elem_id="sweep-y-kind",
        )
        y_values = gr.Textbox(value="", label="Y values", scale=3, max_lines=1, elem_id="sweep-y-values")
    cells = gr.Markdown(cell_count_text("steps", "4, 8", NO_AXIS, "", ""), elem_id="sweep-cells")
    with gr.Row(elem_classes=["run-row"]):
        run, stop, input_chip = run_buttons("Run sweep", "sweep-run", "sweep-stop")
    status = gr.Markdown(label="Status", elem_id="sweep-status")
    grid = gr.Image(label="Grid", type="filepath", format="png", interactive=False, elem_id="sweep-grid")
    gallery = gr.Gallery(
        label="Cells",
        format="png",
        columns=4,
        height=300,
        interactive=False,
        elem_id="sweep-cells-gallery",
    )
    grid_file = gr.File(label="Grid PNG (records the axes)", interactive=False)
    return SweepTab(
        provider,
        x_kind,
        x_values,
        y_kind,
        y_values,
        cells,
        run,
        stop,
        input_chip,
        status,
        grid,
        gallery,
        grid_file,
    )


def axes_of(x_kind: str, x_text: str, y_kind: str, y_text: str, prompt: str) -> tuple[Axis, Axis | None]:
    x = parse_axis(x_kind, x_text, prompt)  # type: ignore[arg-type]
    y = parse_axis(y_kind, y_text, prompt) if y_kind != NO_AXIS else None  # type: ignore[arg-type]
    return x, y


def cell_count_text(x_kind: str, x_text: str, y_kind: str, y_text: str, prompt: str) -> str:
    """Shown before running: how many cells, and whether that is over the limit."""
    try:
        x, y = axes_of(x_kind, x_text, y_kind, y_text, prompt or "")
    except InvalidParams as exc:
        return f"⚠ {exc}"
    count = len(x.values) * (len(y.values) if y else 1)
    limit = max_cells()
    if count > limit:  # said first: it also bounds the values checked below, on every keystroke
        return f"⚠ **{count} cells** is over the limit of {limit}: use fewer values."
    problems = [problem for axis in (x, y) if axis and (problem := axis_problem(axis))]
    if problems:
        return "⚠ " + "; ".join(problems)
    return f"**{count} cells** (limit {limit})"


def sweep_spec(
    params: GenerationParams, provider: str, x_kind: str, x_text: str, y_kind: str, y_text: str
) -> SweepSpec:
    """The sweep, checked whole (axes, cell count, every cell's settings) before any work; raises
    gr.Error naming the cell and the field."""
    try:
        x, y = axes_of(x_kind, x_text, y_kind, y_text, params.prompt)
        spec = SweepSpec(params=params, provider=provider, x=x, y=y)
        check_size(spec)
        plan(spec)
    except InvalidParams as exc:
        raise user_error(f"Check the sweep: {exc}", title="Invalid sweep") from None
    return spec


CellSaved = Callable[[Outcome, list[Path], str], None]  # a cell's outcome, its files, its caption


async def run_cells(
    spec: SweepSpec,
    keys: KeyRing,
    request: gr.Request | None,
    progress: Any = None,
    on_cell: CellSaved | None = None,
) -> tuple[str, str, list[tuple[str, str]]]:
    """Run every cell, save them and the grid; the status line, the grid's path and the cells.
    `on_cell` hears of each cell saved."""
    with owned_run("sweep", request) as run:
        result = await run_sweep(
            spec, keys=keys, cancel=run.token, progress=progress, hosted_gate=run.hosted_gate
        )
        cells = [
            await _cell(run, spec, outcome, x, y, on_cell)
            for y, row in enumerate(result.outcomes)
            for x, outcome in enumerate(row)
        ]
        grid = await asyncio.to_thread(result.grid_png)
        grid_path = await asyncio.to_thread(run.write, "grid.png", grid)
        stopped = run.token.cancelled
    total = spec.cell_count
    failures = [o.error for row in result.outcomes for o in row if not o.ok]
    status = f"**Done**: {total - len(failures)} of {total} cells"
    if "seed" not in {spec.x.kind, spec.y.kind if spec.y else None}:
        status += f" · seed {result.spec.params.seed}"
    if stopped:
        status += " · **stopped**"
    elif failures:
        status += f" · {len(failures)} failed, e.g. {failures[0]}"
    return status, str(grid_path), cells


@settings_endpoint(
    "Make an X/Y grid of images on one provider, one cell per combination of the axes' values.",
    before=[
        ApiArg("provider", str, "Where to make the cells: an id from the providers tool."),
        ApiArg(
            "x_kind",
            str,
            "The X axis: seed, steps, shift, strength, lora_scale (every LoRA's scale), provider "
            "or prompt_sr (prompt search/replace); strength and lora_scale need an image or LoRAs (below).",
        ),
        ApiArg(
            "x_values",
            str,
            "Its values: a list (1, 4, 8) or a range (1-8, 1-8 (+2), 2-8 [4]); for prompt_sr "
            "the first value is the text to find in the prompt.",
        ),
        ApiArg("y_kind", str, "The Y axis, like x_kind, or none.", NO_AXIS),
        ApiArg("y_values", str, "Its values, like x_values.", ""),
    ],
    returns="A status line, the grid PNG (it records the axes, so it can be run again), each cell "
    "captioned with its place on the axes (a failed cell is drawn in place) and the grid file.",
)
async def sweep(
    provider: str,
    x_kind: str,
    x_values: str,
    y_kind: str,
    y_values: str,
    request: gr.Request,
    **values: Any,
) -> tuple[str, str, list[tuple[str, str]]]:
    spec = sweep_spec(api_params(values), provider, x_kind, x_values, y_kind, y_values)
    status, grid, cells = await run_cells(spec, KeyRing.for_visitor(), request)
    return status, grid, cells


def cell_caption(spec: SweepSpec, x: int, y: int) -> str:
    """The cell's place on the axes, e.g. "Steps: 4 · Seed: 7"."""
    caption = spec.x.label(spec.x.values[x])
    return f"{caption} · {spec.y.label(spec.y.values[y])}" if spec.y else caption


async def _cell(
    run: Run, spec: SweepSpec, outcome: Outcome, x: int, y: int, on_cell: CellSaved | None
) -> tuple[str, str]:
    """A cell for the gallery: its image, or its error drawn in place, with its caption."""
    caption, prefix = cell_caption(spec, x, y), f"row{y + 1}-col{x + 1}-"
    paths = await save_run_files(run, outcome, prefix)
    if on_cell is not None:
        on_cell(outcome, paths, caption)
    if paths:
        return str(paths[0]), caption
    error = outcome.error or "no image"
    path = await asyncio.to_thread(run.write, f"{prefix}failed.png", _placeholder_png(error))
    return str(path), f"{caption}: failed"


def _placeholder_png(message: str) -> bytes:
    buffer = io.BytesIO()
    placeholder((384, 384), message).save(buffer, format="PNG")
    return buffer.getvalue()
