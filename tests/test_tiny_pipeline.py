"""The real ZImagePipeline code on the tiny offline model, end to end."""

import asyncio

import numpy as np
import pytest

from zimage_ui.cancel import CancelToken
from zimage_ui.errors import Cancelled
from zimage_ui.params import GenerationParams
from zimage_ui.providers import get_provider
from zimage_ui.providers.base import KeyRing, Progress
from zimage_ui.runner import generate_many, generate_one

TINY = "diffusers-tiny"


def _params(**overrides) -> GenerationParams:
    return GenerationParams(**{"prompt": "a red fox", "width": 256, "height": 256, "seed": 7, **overrides})


async def test_generates_an_image_of_the_requested_size_with_step_progress():
    updates: list[Progress] = []
    outcome = await generate_one(
        TINY, _params(width=320, height=256, num_inference_steps=4), progress=updates.append
    )
    assert outcome.ok, outcome.error
    assert outcome.result is not None
    assert [image.size for image in outcome.result.images] == [(320, 256)]
    assert outcome.seed == 7
    steps = [u.step for u in updates if u.step]
    assert steps == [1, 2, 3, 4]
    assert [u.message for u in updates][-2:] == ["step 4/4", "decoding the image (VAE)"]


async def test_same_params_same_pixels_and_other_seed_other_pixels():
    first = await generate_one(TINY, _params())
    again = await generate_one(TINY, _params())
    other = await generate_one(TINY, _params(seed=8))
    pixels = [np.asarray(o.result.images[0]) for o in (first, again, other)]
    assert np.array_equal(pixels[0], pixels[1])
    assert not np.array_equal(pixels[0], pixels[2])
    assert pixels[0].std() > 1  # an image, not a blank


async def test_several_images_per_run_differ():
    outcome = await generate_one(TINY, _params(num_images=2))
    first, second = (np.asarray(image) for image in outcome.result.images)
    assert not np.array_equal(first, second)
    assert len(outcome.pngs) == 2


async def test_shift_changes_the_schedule_and_so_the_pixels():
    base = await generate_one(TINY, _params(num_inference_steps=4))
    shifted = await generate_one(TINY, _params(num_inference_steps=4, shift=7.0))
    assert not np.array_equal(np.asarray(base.result.images[0]), np.asarray(shifted.result.images[0]))


async def test_random_seed_is_drawn_reported_and_reproducible():
    outcome = await generate_one(TINY, _params(seed=None))
    assert outcome.seed is not None and outcome.seed >= 1
    again = await generate_one(TINY, _params(seed=outcome.seed))
    assert np.array_equal(np.asarray(outcome.result.images[0]), np.asarray(again.result.images[0]))


async def test_stop_interrupts_within_one_step():
    provider = get_provider(TINY)
    prepared = provider.prepare(_params(num_inference_steps=40, width=512, height=512))
    token = CancelToken()
    steps: list[int] = []

    def on_progress(update: Progress) -> None:
        if update.step:
            steps.append(update.step)
            if update.step == 2:
                token.cancel()

    with pytest.raises(Cancelled):
        await provider.run(prepared, keys=KeyRing(), progress=on_progress, cancel=token)
    assert max(steps) <= 3


async def test_local_generations_share_the_device_one_at_a_time():
    outcomes = await generate_many([TINY, TINY], _params(num_inference_steps=2))
    assert all(o.ok for o in outcomes)
    assert outcomes[0].seed == outcomes[1].seed == 7


async def test_prepared_request_shows_what_the_pipeline_gets():
    prepared = get_provider(TINY).prepare(_params(negative_prompt="blurry"))
    shown = prepared.display()
    assert shown["body"]["guidance_scale"] == 0.0
    assert shown["body"]["num_inference_steps"] == 8
    assert "negative_prompt" not in shown["body"]
    assert any("negative prompt not used" in note for note in shown["notes"])
    assert shown["sent"] == {
        "width": 256,
        "height": 256,
        "steps": 8,
        "seed": 7,
        "shift": 3.0,
        "guidance": 0.0,
        "negative_prompt": False,
    }


def test_unusable_provider_is_an_error_not_a_crash():
    outcome = asyncio.run(generate_one("no-such-provider", _params()))
    assert not outcome.ok
    assert "unknown provider" in outcome.error


async def test_each_image_of_a_batch_has_its_own_seed_and_can_be_made_again_alone():
    import io

    from PIL import Image, ImageChops

    from zimage_ui.metadata import read_provenance, read_text_chunks
    from zimage_ui.runner import generate_one

    base = GenerationParams(prompt="a kite", width=256, height=256, seed=40, num_inference_steps=3)
    batch = await generate_one("diffusers-tiny", base.model_copy(update={"num_images": 4}))
    assert batch.ok, batch.error
    records = [read_provenance(png) for png in batch.pngs]
    assert [r["sent"]["seed"] for r in records] == [40, 41, 42, 43]
    assert all(r["params"]["num_images"] == 1 for r in records)
    assert "Seed: 42," in read_text_chunks(batch.pngs[2])["parameters"]
    third = records[2]["params"]
    alone = await generate_one("diffusers-tiny", GenerationParams.model_validate(third))
    with Image.open(io.BytesIO(batch.pngs[2])) as a, Image.open(io.BytesIO(alone.pngs[0])) as b:
        assert ImageChops.difference(a.convert("RGB"), b.convert("RGB")).getbbox() is None
    with Image.open(io.BytesIO(batch.pngs[0])) as a, Image.open(io.BytesIO(batch.pngs[1])) as b:
        assert ImageChops.difference(a.convert("RGB"), b.convert("RGB")).getbbox() is not None
