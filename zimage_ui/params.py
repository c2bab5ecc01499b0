"""The one validated set of canonical generation parameters.

Names follow diffusers. Everything that reaches a provider passes through
`GenerationParams` first, so bad input is a clear error before any work starts.
"""

from __future__ import annotations

import random
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from zimage_ui.errors import InvalidParams

# Seeds: every hosted provider takes 0..MAX_SEED (Scenario and EvoLink document 2147483647 as their
# top; the others document none, and it keeps a signed 32-bit field), so random seeds stay below it.
# The local pipeline seeds a torch generator, which takes any 64-bit value; GenerationParams takes
# up to MAX_LOCAL_SEED, the top of AUTOMATIC1111's range (it draws seeds up to 4294967294), so a
# seed read from an A1111 image is kept: the local model uses it, a hosted provider refuses it.
MAX_SEED = 2_147_483_647
MAX_LOCAL_SEED = 4_294_967_295
MAX_PROMPT_CHARS = 4000
MIN_SIDE, MAX_SIDE, SIDE_MULTIPLE = 256, 2048, 16
TURBO_STEPS = 8
TURBO_SHIFT = 3.0
MODEL_NAME = "Z-Image-Turbo"


class ProviderOptions(BaseModel):
    """Switches only some providers have; each is sent where the API takes it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt_expansion: bool = Field(
        False, description="Let the provider rewrite the prompt (AIML). Off for fair comparisons."
    )
    safety_checker: bool = Field(True, description="Provider-side safety checker, where offered.")


class GenerationParams(BaseModel):
    """Canonical parameters for one Z-Image-Turbo generation (Turbo defaults)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: str = Field(description="What to draw.")
    negative_prompt: str = Field("", description="What to avoid; only used when guidance > 0.")
    width: int = Field(1024, description="Image width in pixels, a multiple of 16 in 256..2048.")
    height: int = Field(1024, description="Image height in pixels, a multiple of 16 in 256..2048.")
    num_inference_steps: int = Field(TURBO_STEPS, description="Network passes, 1..50 (Turbo: 8).")
    guidance_scale: float = Field(0.0, description="Classifier-free guidance, 0..20 (Turbo: 0).")
    seed: int | None = Field(
        None,
        description=f"0..{MAX_SEED} (every provider), up to {MAX_LOCAL_SEED} locally, or None for random.",
    )
    shift: float = Field(TURBO_SHIFT, description="Flow-matching scheduler shift, 1..10 (Turbo: 3).")
    num_images: int = Field(1, description="Images per request, 1..4.")
    output_format: Literal["png", "jpeg", "webp"] = Field("png", description="Requested format.")
    options: ProviderOptions = Field(default_factory=ProviderOptions)

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the prompt is empty: describe the image you want")
        if len(value) > MAX_PROMPT_CHARS:
            raise ValueError(
                f"the prompt has {len(value)} characters; shorten it to {MAX_PROMPT_CHARS} or fewer"
            )
        return value

    @field_validator("width", "height")
    @classmethod
    def _side(cls, value: int) -> int:
        if not MIN_SIDE <= value <= MAX_SIDE:
            raise ValueError(f"{value} is outside {MIN_SIDE}..{MAX_SIDE} pixels")
        if value % SIDE_MULTIPLE:
            lower = value - value % SIDE_MULTIPLE
            raise ValueError(
                f"{value} is not a multiple of {SIDE_MULTIPLE}; use {lower} or {lower + SIDE_MULTIPLE}"
            )
        return value

    @field_validator("num_inference_steps")
    @classmethod
    def _steps(cls, value: int) -> int:
        if not 1 <= value <= 50:
            raise ValueError(f"{value} steps is outside 1..50 (Turbo needs 8)")
        return value

    @field_validator("guidance_scale")
    @classmethod
    def _guidance(cls, value: float) -> float:
        if not 0.0 <= value <= 20.0:
            raise ValueError(f"guidance {value} is outside 0..20 (Turbo uses 0)")
        return value

    @field_validator("shift")
    @classmethod
    def _shift(cls, value: float) -> float:
        if not 1.0 <= value <= 10.0:
            raise ValueError(f"shift {value} is outside 1..10 (Turbo uses 3)")
        return value

    @field_validator("num_images")
    @classmethod
    def _num_images(cls, value: int) -> int:
        if not 1 <= value <= 4:
            raise ValueError(f"{value} images is outside 1..4")
        return value

    @field_validator("seed", mode="before")
    @classmethod
    def _seed(cls, value: object) -> object:
        if value is None or value == "":
            return None
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(f"the seed must be a whole number in 0..{MAX_SEED}, or empty for random")
        try:
            number = int(value)  # type: ignore[call-overload]
        except (TypeError, ValueError):
            raise ValueError(
                f"{value!r} is not a whole number: use 0..{MAX_SEED}, or leave empty for random"
            ) from None
        if not 0 <= number <= MAX_LOCAL_SEED:
            raise ValueError(f"{number} is outside 0..{MAX_LOCAL_SEED} (0..{MAX_SEED} for hosted providers)")
        return number

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"

    def for_image(self, index: int) -> GenerationParams:
        """Image `index` of this batch as a run of its own: its seed, one image."""
        assert self.seed is not None, "a batch's seeds come from a concrete seed"
        return self.model_copy(update={"seed": image_seed(self.seed, index), "num_images": 1})

    def with_concrete_seed(self, rng: random.Random | None = None) -> GenerationParams:
        """Return a copy whose seed is set: the app draws random seeds itself (1..MAX_SEED)."""
        if self.seed is not None:
            return self
        draw = (rng or random.SystemRandom()).randint(1, MAX_SEED)
        return self.model_copy(update={"seed": draw})


def image_seed(seed: int, index: int) -> int:
    """The seed of image `index` of a batch: seed + index, wrapping to 0 past the top of the range
    the seed is in (MAX_SEED, so a batch every provider takes stays so; else MAX_LOCAL_SEED)."""
    top = MAX_SEED if seed <= MAX_SEED else MAX_LOCAL_SEED
    return (seed + index) % (top + 1)


def parse_params(**values: object) -> GenerationParams:
    """Build params from loose input (UI, CLI, presets); raise InvalidParams naming each field."""
    try:
        return GenerationParams.model_validate(values)
    except ValidationError as exc:
        raise InvalidParams.from_validation(exc) from None
