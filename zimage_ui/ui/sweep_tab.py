"""The Sweep tab: an X/Y grid over seed, steps, shift, provider or a prompt replacement."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import gradio as gr

from zimage_ui.errors import InvalidParams
from zimage_ui.providers.base import KeyRing
from zimage_ui.runner import Outcome
from zimage_ui.runs import Run
from zimage_ui.sheets import placeholder
from zimage_ui.sweep import AXIS_LABELS, SweepSpec, check_size, max_cells, parse_axis, run_sweep
from zimage_ui.ui.handlers import follow, owned_run, read_params, save_run_files, user_error
from zimage_ui.ui.layout import provider_choices

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
    status: gr.Markdown
    grid: gr.Image
    gallery: gr.Gallery
    grid_file: gr.File


def build_sweep_tab(default_provider: str) -> SweepTab:
    gr.Markdown(
        "Values are lists (`1, 4, 8`) or ranges (`1-8`, `1-8 (+2)`, `2-8 [4]`). For Prompt S/R the "
        "first value is the text to find in the prompt; each value replaces it in turn."
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
        y_values = gr.Textbox(label="Y values", scale=3, max_lines=1, elem_id="sweep-y-values")
    cells = gr.Markdown(cell_count_text("steps", "4, 8", NO_AXIS, "", ""), elem_id="sweep-cells")
    with gr.Row():
        run = gr.Button("Run sweep", variant="primary", elem_id="sweep-run")
        stop = gr.Button("Stop", variant="stop", elem_id="sweep-stop")
    status = gr.Markdown(elem_id="sweep-status")
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
        provider, x_kind, x_values, y_kind, y_values, cells, run, stop, status, grid, gallery, grid_file
    )


def _axes(x_kind: str, x_text: str, y_kind: str, y_text: str, prompt: str):
    x = parse_axis(x_kind, x_text, prompt)  # type: ignore[arg-type]
    y = parse_axis(y_kind, y_text, prompt) if y_kind != NO_AXIS else None  # type: ignore[arg-type]
    return x, y


def cell_count_text(x_kind: str, x_text: str, y_kind: str, y_text: str, prompt: str) -> str:
    """Shown before running: how many cells, and whether that is over the limit."""
    try:
        x, y = _axes(x_kind, x_text, y_kind, y_text, prompt or "")
    except InvalidParams as exc:
        return f"⚠ {exc}"
    count = len(x.values) * (len(y.values) if y else 1)
    limit = max_cells()
    if count > limit:
        return f"⚠ **{count} cells** is over the limit of {limit}: use fewer values."
    return f"**{count} cells** (limit {limit})"


async def run_sweep_ui(request: gr.Request, *values: Any) -> AsyncIterator[tuple[Any, ...]]:
    """Inputs: shared form values (10), session keys, provider, x kind/values, y kind/values."""
    shared, session_keys, provider, x_kind, x_text, y_kind, y_text = values[:10], *values[10:16]
    params = read_params(*shared)
    try:
        x, y = _axes(x_kind, x_text, y_kind, y_text, params.prompt)
        spec = SweepSpec(params=params, provider=provider, x=x, y=y)
        check_size(spec)
    except InvalidParams as exc:
        raise user_error(f"Check the sweep: {exc}", title="Invalid sweep") from None
    total = spec.cell_count
    with owned_run("sweep", request) as run:
        done: asyncio.Queue[int] = asyncio.Queue()
        task = asyncio.create_task(
            run_sweep(
                spec,
                keys=KeyRing.for_visitor(session_keys),
                cancel=run.token,
                progress=lambda n, _total: done.put_nowait(n),
                hosted_gate=run.hosted_gate,
            )
        )
        yield f"Running {total} cells…", gr.skip(), gr.skip(), gr.skip()
        async for finished in follow(task, done):
            yield f"{finished} of {total} cells done…", gr.skip(), gr.skip(), gr.skip()
        result = task.result()
        cells = [
            await _cell(run, spec, outcome, x, y)
            for y, row in enumerate(result.outcomes)
            for x, outcome in enumerate(row)
        ]
        grid = await asyncio.to_thread(result.grid_png)
        grid_path = await asyncio.to_thread(run.write, "grid.png", grid)
        stopped = run.token.cancelled
    failures = [o.error for row in result.outcomes for o in row if not o.ok]
    status = f"**Done**: {total - len(failures)} of {total} cells"
    if "seed" not in {x.kind, y.kind if y else None}:
        status += f" · seed {result.spec.params.seed}"
    if stopped:
        status += " · **stopped**"
    elif failures:
        status += f" · {len(failures)} failed, e.g. {failures[0]}"
    yield status, str(grid_path), cells, str(grid_path)


def cell_caption(spec: SweepSpec, x: int, y: int) -> str:
    """The cell's place on the axes, e.g. "Steps: 4 · Seed: 7"."""
    caption = spec.x.label(spec.x.values[x])
    return f"{caption} · {spec.y.label(spec.y.values[y])}" if spec.y else caption


async def _cell(run: Run, spec: SweepSpec, outcome: Outcome, x: int, y: int) -> tuple[str, str]:
    """A cell for the gallery: its image, or its error drawn in place, with its caption."""
    caption, prefix = cell_caption(spec, x, y), f"row{y + 1}-col{x + 1}-"
    paths = await save_run_files(run, outcome, prefix)
    if paths:
        return str(paths[0]), caption
    error = outcome.error or "no image"
    path = await asyncio.to_thread(run.write, f"{prefix}failed.png", _placeholder_png(error))
    return str(path), f"{caption}: failed"


def _placeholder_png(message: str) -> bytes:
    buffer = io.BytesIO()
    placeholder((384, 384), message).save(buffer, format="PNG")
    return buffer.getvalue()
