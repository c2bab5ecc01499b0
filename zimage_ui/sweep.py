"""X/Y sweeps after AUTOMATIC1111's X/Y plot: up to two axes, every combination, one grid.

Values are lists (`1, 4, 8`) or ranges (`1-8`, `1-8 (+2)`, `1-4 [4]` for a count). The
grid PNG records the axes in a `zimage-grid` chunk so the same sweep can be run again.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from zimage_ui import env
from zimage_ui.cancel import CancelToken
from zimage_ui.compare import INPUT_OVERRIDES, set_input_override
from zimage_ui.errors import InvalidParams
from zimage_ui.metadata import PARAMETERS_KEY, read_text_chunks
from zimage_ui.params import GenerationParams, parse_params
from zimage_ui.providers import PROVIDERS
from zimage_ui.providers.base import KeyRing, ignore_progress
from zimage_ui.runner import Outcome, generate_one
from zimage_ui.runs import session_hosted_limit
from zimage_ui.settings import TABLE
from zimage_ui.sheets import render_grid

AxisKind = Literal["seed", "steps", "shift", "variety", "strength", "lora_scale", "provider", "prompt_sr"]
AXIS_LABELS: dict[str, str] = {
    **{setting.short: setting.label for setting in TABLE if setting.sweep},
    "strength": "Strength",
    "lora_scale": "LoRA scale",
    "provider": "Provider",
    "prompt_sr": "Prompt S/R",
}
_FIELD = TABLE.sweep_fields()  # an axis that sets one setting: its short name -> canonical name
GRID_KEY = "zimage-grid"
DEFAULT_MAX_CELLS: int = env.Environment.model_fields["ZIMAGE_SWEEP_MAX_CELLS"].default
MAX_AXIS_TEXT = 4000  # characters of one axis's values
GRID_CELL_MAX = 384  # a grid cell's longest side in pixels: the full-size cells are separate files

_RANGE = re.compile(r"^\s*(-?[\d.]+)\s*-\s*(-?[\d.]+)\s*(?:\(\s*\+\s*([\d.]+)\s*\)|\[\s*(\d+)\s*\])?\s*$")


def max_cells() -> int:
    return int(env.get("ZIMAGE_SWEEP_MAX_CELLS"))


class Axis(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: AxisKind = Field(description="What varies along this axis.")
    values: list[str | int | float] = Field(description="Parsed values, in order.")

    def label(self, value: str | int | float) -> str:
        return f"{AXIS_LABELS[self.kind]}: {value}"

    def text(self) -> str:
        """The values as the Sweep tab and --x-values take them (CSV where a text value may hold a
        comma; numbers listed plainly)."""
        if self.kind in _FIELD:
            return ", ".join(str(value) for value in self.values)
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="").writerow(self.values)
        return buffer.getvalue()


class SweepSpec(BaseModel):
    """Everything needed to run a sweep again: base settings, provider and axes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    params: GenerationParams
    provider: str
    x: Axis
    y: Axis | None = None

    @property
    def cell_count(self) -> int:
        return len(self.x.values) * (len(self.y.values) if self.y else 1)


def _numbers(text: str, *, integer: bool, limit: int) -> list[int | float]:
    values: list[int | float] = []
    for part in _split(text):
        match = _RANGE.match(part)
        if match:
            start, end, step, count = match.groups()
            planned = _range_length(float(start), float(end), step, count)
            if len(values) + planned > limit:  # counted from the text, before anything is expanded
                raise ValueError(f"{part!r} makes {planned} values, over the limit of {limit} cells")
            values.extend(_expand(float(start), float(end), step, count, integer=integer))
            continue
        try:
            number = float(part)
        except ValueError:
            raise ValueError(f"{part!r} is not a number or a range like 1-8 or 1-8 (+2)") from None
        if not math.isfinite(number):
            raise ValueError(f"{part!r} is not a finite number: give a number or a range like 1-8")
        values.append(int(number) if integer else number)
    return values


def _range_length(start: float, end: float, step: str | None, count: str | None) -> int:
    """How many values a range gives, computed without building them."""
    if count is not None:
        return int(count)
    increment = float(step) if step else 1.0
    if increment <= 0:
        raise ValueError("a range step must be above 0")
    return int(abs(end - start) / increment + 1e-9) + 1


def _expand(start: float, end: float, step: str | None, count: str | None, *, integer: bool) -> list:
    if count is not None:
        n = int(count)
        if n < 1:
            raise ValueError("a range count must be at least 1")
        if n == 1:
            return [int(start) if integer else start]
        points = [start + (end - start) * i / (n - 1) for i in range(n)]
        return [round(p) if integer else round(p, 4) for p in points]
    increment = float(step) if step else 1.0
    if increment <= 0:
        raise ValueError("a range step must be above 0")
    direction = 1 if end >= start else -1
    values, current = [], start
    while (current <= end + 1e-9) if direction > 0 else (current >= end - 1e-9):
        values.append(round(current) if integer else round(current, 4))
        current += increment * direction
    return values


def _split(text: str) -> list[str]:
    """Comma-separated, CSV quoting allowed (so a prompt value can contain a comma)."""
    rows = list(csv.reader(io.StringIO(text.strip()), skipinitialspace=True))
    return [value.strip() for value in (rows[0] if rows else []) if value.strip()]


def parse_axis(kind: AxisKind, text: str, prompt: str = "", limit: int | None = None) -> Axis:
    """Parse one axis's values; raise InvalidParams naming the axis on bad input.

    No axis may have more values than the cell limit, and that is checked before a range
    is expanded, so `1-8 [1000000000]` costs nothing.
    """
    limit = max_cells() if limit is None else limit
    try:
        if len(text) > MAX_AXIS_TEXT:
            raise ValueError(f"{len(text)} characters is too long; list at most {limit} values")
        if kind in _FIELD and TABLE[kind].kind is int:
            values: list[str | int | float] = list(_numbers(text, integer=True, limit=limit))
        elif kind in _FIELD or kind in INPUT_OVERRIDES:
            values = list(_numbers(text, integer=False, limit=limit))
        elif kind == "provider":
            values = list(_split(text))
            unknown = [v for v in values if v not in PROVIDERS]
            if unknown:
                raise ValueError(f"unknown provider {unknown[0]!r}; use ids from the Provider list")
        else:
            values = list(_split(text))
            if values and str(values[0]) not in prompt:
                raise ValueError(f"the first value {values[0]!r} must appear in the prompt: it is replaced")
    except ValueError as exc:
        raise InvalidParams({AXIS_LABELS[kind]: str(exc)}) from None
    if not values:
        raise InvalidParams({AXIS_LABELS[kind]: "no values: list some, like 1, 4, 8 or 1-8 (+2)"})
    if len(values) > limit:
        raise InvalidParams({AXIS_LABELS[kind]: f"{len(values)} values is over the limit of {limit} cells"})
    return Axis(kind=kind, values=values)


def check_size(spec: SweepSpec, limit: int | None = None) -> None:
    limit = max_cells() if limit is None else limit
    if spec.cell_count > limit:
        raise InvalidParams(
            {"sweep": f"{spec.cell_count} cells is over the limit of {limit}: use fewer values"}
        )


@dataclass(frozen=True)
class Cell:
    provider: str
    params: GenerationParams


def plan(spec: SweepSpec) -> list[list[Cell]]:
    """Rows (Y values) of cells (X values); every cell's params validated before any work."""
    base = spec.params.with_concrete_seed()  # run_sweep makes it concrete first, so this is a no-op there
    rows: list[list[Cell]] = []
    y_values: list[str | int | float | None] = list(spec.y.values) if spec.y else [None]
    for y_value in y_values:
        row = []
        for x_value in spec.x.values:
            values, provider = base.model_dump(), spec.provider
            try:
                provider = _set(spec.x, x_value, provider, values, base.prompt)
                if spec.y is not None and y_value is not None:
                    provider = _set(spec.y, y_value, provider, values, base.prompt)
                row.append(Cell(provider, parse_params(**values)))
            except InvalidParams as exc:
                where = spec.x.label(x_value) + (
                    f", {spec.y.label(y_value)}" if spec.y and y_value is not None else ""
                )
                raise InvalidParams({f"{where}: {k}": v for k, v in exc.fields.items()}) from None
        rows.append(row)
    return rows


def axis_problem(axis: Axis) -> str | None:
    """What is wrong with an axis's values by the settings' own rules (steps 1..50, shift...), as
    the run would say it; checked as they are typed, before the rest of the form is known. Axes
    that depend on the form (provider, prompt S/R, the input image's strength, LoRA scales) are
    checked with it, when the sweep runs."""
    if axis.kind in ("provider", "prompt_sr", *INPUT_OVERRIDES):
        return None
    try:
        plan(SweepSpec(params=GenerationParams(prompt="a check"), provider="any", x=axis))
    except InvalidParams as exc:
        return str(exc)
    return None


def _set(axis: Axis, value: str | int | float, provider: str, values: dict, prompt: str) -> str:
    if axis.kind == "provider":
        return str(value)
    if axis.kind == "prompt_sr":
        values["prompt"] = values["prompt"].replace(str(axis.values[0]), str(value))
    elif axis.kind in INPUT_OVERRIDES:  # the input image's strength, or every LoRA's scale
        set_input_override(values, axis.kind, float(value))
    else:
        values[_FIELD[axis.kind]] = value
    return provider


@dataclass
class SweepResult:
    spec: SweepSpec
    outcomes: list[list[Outcome]]

    def grid_png(self) -> bytes:
        from zimage_ui.metadata import SHEET_STRATEGY, png_with_chunks

        cells = [
            [_thumbnail(o.result.images[0]) if o.ok and o.result else None for o in row]
            for row in self.outcomes
        ]
        errors = [[o.error for o in row] for row in self.outcomes]
        column_labels = [self.spec.x.label(v) for v in self.spec.x.values]
        row_labels = [self.spec.y.label(v) for v in self.spec.y.values] if self.spec.y else []
        image = render_grid(cells, column_labels, row_labels, errors=errors)
        chunks = {GRID_KEY: self.spec.model_dump_json()}
        # As AUTOMATIC1111's grids do: the first cell's `parameters`, so Civitai, A1111 and exifr
        # read a prompt, a seed and the settings from the grid too.
        first = next((o.pngs[0] for row in self.outcomes for o in row if o.ok and o.pngs), None)
        if first is not None and (parameters := read_text_chunks(first).get(PARAMETERS_KEY)):
            chunks = {PARAMETERS_KEY: parameters, **chunks}
        return png_with_chunks(image, chunks, strategy=SHEET_STRATEGY)


def _thumbnail(image: Image.Image) -> Image.Image:
    """A grid cell no larger than GRID_CELL_MAX on its longest side, so a grid stays a few MB."""
    if max(image.size) <= GRID_CELL_MAX:
        return image
    small = image.copy()
    small.thumbnail((GRID_CELL_MAX, GRID_CELL_MAX))
    return small


async def run_sweep(
    spec: SweepSpec,
    *,
    keys: KeyRing | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: CancelToken | None = None,
    hosted_gate: asyncio.Semaphore | None = None,
) -> SweepResult:
    """Run every cell (a few at a time); `progress(done, total)` after each cell."""
    check_size(spec)
    spec = spec.model_copy(update={"params": spec.params.with_concrete_seed()})  # recorded in the grid
    cells = plan(spec)
    total, done = spec.cell_count, 0
    # As many cells at once as the session may have hosted requests in flight (the session's own
    # gate holds the rest); local cells wait for the one device anyway.
    gate = asyncio.Semaphore(max(1, int(session_hosted_limit())))

    async def run_cell(cell: Cell) -> Outcome:
        nonlocal done
        async with gate:
            outcome = await generate_one(
                cell.provider,
                cell.params,
                keys=keys,
                cancel=cancel,
                progress=ignore_progress,
                hosted_gate=hosted_gate,
            )
        done += 1
        if progress:
            progress(done, total)
        return outcome

    flat = await asyncio.gather(*(run_cell(cell) for row in cells for cell in row))
    width = len(spec.x.values)
    return SweepResult(spec, [list(flat[i : i + width]) for i in range(0, len(flat), width)])


def read_grid_spec(data: bytes) -> SweepSpec | None:
    """The sweep recorded in a grid PNG, to run it again; None when there is none."""
    raw = read_text_chunks(data).get(GRID_KEY)
    if raw is None:
        return None
    try:
        return SweepSpec.model_validate(json.loads(raw))
    except ValueError:
        return None
