"""Hypothesis strategies for parameters and presets, shared by the property tests."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from zimage_ui.compare import Side
from zimage_ui.keyguard import is_url
from zimage_ui.params import MAX_PROMPT_CHARS, MAX_SEED, GenerationParams, ProviderOptions
from zimage_ui.presets import Preset, PresetSide
from zimage_ui.providers import PROVIDERS

PROVIDER_IDS = sorted(PROVIDERS)

sides_px = st.integers(16, 128).map(lambda n: n * 16)
steps = st.integers(1, 50)
shifts = st.floats(1.0, 10.0, allow_nan=False)
guidance = st.floats(0.0, 20.0, allow_nan=False)
seeds = st.integers(0, MAX_SEED)

# Anything a person might type: commas, colons, quotes, newlines, any unicode (no surrogates).
prompts = st.text(min_size=1, max_size=MAX_PROMPT_CHARS).filter(lambda s: s.strip() and not is_url(s))
free_text = st.text(max_size=300).filter(lambda s: not is_url(s))


@st.composite
def generation_params(draw: Any, prompt: st.SearchStrategy[str] = prompts) -> GenerationParams:
    return GenerationParams(
        prompt=draw(prompt),
        negative_prompt=draw(free_text),
        width=draw(sides_px),
        height=draw(sides_px),
        num_inference_steps=draw(steps),
        guidance_scale=draw(guidance),
        seed=draw(st.none() | seeds),
        shift=draw(shifts),
        num_images=draw(st.integers(1, 4)),
        output_format=draw(st.sampled_from(["png", "jpeg", "webp"])),
        options=ProviderOptions(prompt_expansion=draw(st.booleans()), safety_checker=draw(st.booleans())),
    )


@st.composite
def preset_sides(draw: Any, labels: bool = True) -> PresetSide:
    return PresetSide(
        provider=draw(st.sampled_from(PROVIDER_IDS)),
        num_inference_steps=draw(st.none() | steps),
        shift=draw(st.none() | shifts),
        width=draw(st.none() | sides_px),
        height=draw(st.none() | sides_px),
        label=draw(free_text.map(lambda s: s[:100])) if labels else "",
    )


@st.composite
def presets(draw: Any, named: bool = True) -> Preset:
    params = draw(generation_params())
    sides = draw(st.none() | st.lists(preset_sides(labels=named), min_size=2, max_size=6))
    return Preset(
        name=draw(free_text.map(lambda s: s[:100])) if named else "",
        provider=draw(st.sampled_from(PROVIDER_IDS)),
        sides=sides,
        **params.model_dump(),
    )


# What a side spec can carry: provider-id-like text, and labels without the separators , and ;
# (nor outer spaces, which parsing drops).
provider_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,30}", fullmatch=True)
spec_labels = st.text(max_size=60).map(str.strip).filter(lambda s: "," not in s and ";" not in s)
whole = st.integers(-(10**12) + 1, 10**12 - 1)


@st.composite
def comparison_sides(draw: Any) -> Side:
    """Any side `Side.spec` can write: values need not be valid params (ranges are checked later)."""
    return Side(
        provider=draw(st.sampled_from(PROVIDER_IDS) | provider_ids),
        num_inference_steps=draw(st.none() | whole),
        shift=draw(st.none() | st.floats(allow_nan=False, allow_infinity=False)),
        width=draw(st.none() | whole),
        height=draw(st.none() | whole),
        label=draw(spec_labels),
    )
