"""One prompt and seed on many sides at once: each side a provider plus optional overrides.

A comparison takes about as long as its slowest side, not the sum: every side starts
together. A failing side keeps its error in place; the others finish.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from pydantic import BaseModel, ConfigDict, Field

from zimage_ui.errors import InvalidParams
from zimage_ui.params import GenerationParams, parse_params
from zimage_ui.providers.base import CancelToken, KeyRing, Progress
from zimage_ui.runner import Outcome, generate_one

MIN_SIDES, MAX_SIDES = 2, 6

SideProgress = Callable[[int, Progress], None]


class Side(BaseModel):
    """One column of a comparison: where, and what differs from the shared settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: str = Field(description="Provider id from the registry.")
    num_inference_steps: int | None = Field(None, description="Steps for this side only.")
    shift: float | None = Field(None, description="Shift for this side only.")
    width: int | None = Field(None, description="Width for this side only.")
    height: int | None = Field(None, description="Height for this side only.")
    label: str = Field("", description="Shown above the side; defaults to provider and overrides.")

    def overrides(self) -> dict[str, int | float]:
        values = {
            "num_inference_steps": self.num_inference_steps,
            "shift": self.shift,
            "width": self.width,
            "height": self.height,
        }
        return {name: value for name, value in values.items() if value is not None}

    def title(self) -> str:
        if self.label:
            return self.label
        short = {"num_inference_steps": "steps", "shift": "shift", "width": "w", "height": "h"}
        extra = ", ".join(f"{short[name]} {value:g}" for name, value in self.overrides().items())
        return f"{self.provider} ({extra})" if extra else self.provider


def params_for_side(base: GenerationParams, side: Side) -> GenerationParams:
    """The shared params with this side's overrides, validated like any other input."""
    if not side.overrides():
        return base
    try:
        return parse_params(**{**base.model_dump(), **side.overrides()})
    except InvalidParams as exc:
        raise InvalidParams({f"{side.title()}: {k}": v for k, v in exc.fields.items()}) from None


def check_sides(sides: Sequence[Side]) -> None:
    if not MIN_SIDES <= len(sides) <= MAX_SIDES:
        raise InvalidParams({"sides": f"{len(sides)} sides; a comparison has {MIN_SIDES} to {MAX_SIDES}"})


def params_for_sides(sides: Sequence[Side], base: GenerationParams) -> list[GenerationParams]:
    """Each side's params, every problem raised before any work (2..6 sides, valid overrides)."""
    check_sides(sides)
    return [params_for_side(base, side) for side in sides]


async def run_comparison(
    sides: Sequence[Side],
    base: GenerationParams,
    *,
    keys: KeyRing | None = None,
    progress: SideProgress | None = None,
    cancel: CancelToken | None = None,
    hosted_gate: asyncio.Semaphore | None = None,
) -> list[Outcome]:
    """Every side at once on the same prompt and one concrete seed; outcomes in side order."""
    base = base.with_concrete_seed()
    side_params = params_for_sides(sides, base)
    report = progress or (lambda _index, _update: None)

    def side_progress(index: int) -> Callable[[Progress], None]:
        return lambda update: report(index, update)

    return list(
        await asyncio.gather(
            *(
                generate_one(
                    side.provider,
                    params,
                    keys=keys,
                    progress=side_progress(index),
                    cancel=cancel,
                    hosted_gate=hosted_gate,
                )
                for index, (side, params) in enumerate(zip(sides, side_params, strict=True))
            )
        )
    )
