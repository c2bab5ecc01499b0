"""The local model's speed options end to end: one text-encoder run per prompt, and a bad
setting that falls back with a note and still makes the image."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from zimage_ui.compare import Side, run_comparison
from zimage_ui.params import GenerationParams
from zimage_ui.providers import get_provider
from zimage_ui.providers.local import diffusers_local
from zimage_ui.runner import generate_one


@pytest.fixture
def runs() -> Iterator[list[int]]:
    """How often the tiny model's text encoder runs during the test."""
    count = [0]
    encoder = diffusers_local._TINY_SLOT.get().text_encoder
    hook = encoder.register_forward_hook(lambda *_args: count.__setitem__(0, count[0] + 1))
    yield count
    hook.remove()


async def test_a_four_side_compare_of_one_prompt_runs_the_text_encoder_once(runs: list[int]):
    prompt = f"a lighthouse in fog {uuid.uuid4().hex}"  # no earlier test has this prompt cached
    sides = [Side(provider="diffusers-tiny", num_inference_steps=steps) for steps in (1, 2, 3, 4)]
    params = GenerationParams(prompt=prompt, seed=5, width=256, height=256)
    outcomes = await run_comparison(sides, params)
    assert all(outcome.ok for outcome in outcomes), [o.error for o in outcomes]
    assert runs[0] == 1
    images = [np.asarray(outcome.result.images[0]) for outcome in outcomes]
    assert all(not np.array_equal(a, b) for i, a in enumerate(images) for b in images[i + 1 :])
    again = await generate_one("diffusers-tiny", params.model_copy(update={"seed": 6}))  # a re-roll
    assert again.ok and runs[0] == 1
    other = await generate_one("diffusers-tiny", params.model_copy(update={"prompt": prompt + " at dusk"}))
    assert other.ok and runs[0] == 2  # another prompt is encoded


async def test_a_bad_attention_backend_gives_a_note_and_a_working_run(
    tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("ZIMAGE_DEVICE", "cpu")
    monkeypatch.setenv("ZIMAGE_ATTENTION_BACKEND", "flsh")
    params = GenerationParams(prompt="a kite", seed=3, width=256, height=256, num_inference_steps=2)
    outcome = await generate_one("diffusers", params)
    assert outcome.ok, outcome.error
    notes = " ".join(outcome.prepared.notes)
    assert "ZIMAGE_ATTENTION_BACKEND=flsh" in notes  # the first run says so, not only later ones
    tiny = await generate_one("diffusers-tiny", params)
    assert np.array_equal(np.asarray(outcome.result.images[0]), np.asarray(tiny.result.images[0]))
    assert "attention: native" in get_provider("diffusers").details()
