"""Live previews for local models: the latent-to-RGB projection and the tiny pipeline's step updates."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from zimage_ui.cancel import CancelToken
from zimage_ui.params import GenerationParams
from zimage_ui.providers.base import KeyRing, Progress
from zimage_ui.providers.local import diffusers_local, generation
from zimage_ui.providers.local.preview import (
    FLUX_LATENT_RGB_BIAS,
    FLUX_LATENT_RGB_FACTORS,
    estimate_clean_latents,
    latent_to_rgb,
)
from zimage_ui.runner import generate_one

TINY = "diffusers-tiny"


# ---- the projection -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "size"),
    [
        ((1, 16, 128, 128), (256, 256)),  # 1024x1024: upscaled to 256
        ((1, 16, 32, 40), (256, 205)),  # 320x256: aspect 1.25 kept
        ((2, 16, 256, 128), (128, 256)),  # 1024x2048, a batch: the first latent only
        ((16, 300, 600), (256, 128)),  # no batch axis, larger than 256: scaled down
        ((1, 4, 64, 32), (128, 256)),  # not 16 channels: the fallback keeps the size rule
        ((1, 2, 8, 8), (256, 256)),  # fewer than 3 channels
    ],
)
def test_preview_is_rgb_at_most_256_on_the_long_side_with_the_latents_aspect(shape, size):
    image = latent_to_rgb(torch.randn(shape))
    assert image.mode == "RGB"
    assert image.size == size
    height, width = shape[-2:]
    assert abs(image.size[0] / image.size[1] - width / height) < 0.01


def test_a_zero_latent_is_the_colour_of_the_bias():
    # ComfyUI's Flux bias (-0.0329, -0.0718, -0.0851), mapped from -1..1 to 0..255.
    pixels = np.asarray(latent_to_rgb(torch.zeros(1, 16, 32, 48)))
    assert pixels.shape == (171, 256, 3)
    assert (pixels == (123, 118, 117)).all()


def test_each_channel_adds_its_own_row_of_factors():
    latent = torch.zeros(1, 16, 16, 16)
    latent[0, 13] = 1.0  # row 13: (-0.1264, -0.0522, -0.1103), plus the bias
    assert np.asarray(latent_to_rgb(latent))[5, 5].tolist() == [107, 112, 103]
    latent[0, 13] = 0.0
    latent[0, 9] = 40.0  # row 9 (0.1008, 0.0755, -0.0421) x 40: clamped to 0..1
    assert np.asarray(latent_to_rgb(latent))[0, 0].tolist() == [255, 255, 0]
    assert len(FLUX_LATENT_RGB_FACTORS) == 16 and all(len(row) == 3 for row in FLUX_LATENT_RGB_FACTORS)
    assert len(FLUX_LATENT_RGB_BIAS) == 3


def test_other_channel_counts_show_the_first_three_each_normalised():
    latent = torch.zeros(1, 4, 8, 256)
    latent[0, 0] = torch.linspace(-5.0, 3.0, 256)  # a ramp: 0..255 in red
    latent[0, 1] = 7.0  # flat: mid grey
    latent[0, 2] = torch.linspace(10.0, 0.0, 256)  # reversed ramp in blue
    latent[0, 3] = 1e6  # ignored
    pixels = np.asarray(latent_to_rgb(latent)).astype(int)
    assert pixels.shape == (8, 256, 3)
    red, green, blue = pixels[4, :, 0], pixels[4, :, 1], pixels[4, :, 2]
    assert red[0] == 0 and red[-1] == 255 and (np.diff(red) >= 0).all()
    assert abs(red[128] - 128) <= 2 and abs(blue[128] - 127) <= 2  # scaled, not clipped
    assert set(green.tolist()) == {128}
    assert blue[0] == 255 and blue[-1] == 0


def test_the_input_is_left_alone_and_any_float_dtype_or_numpy_works():
    latent = torch.randn(1, 16, 24, 24)
    before = latent.clone()
    image = latent_to_rgb(latent)
    assert torch.equal(latent, before)
    assert latent_to_rgb(latent.to(torch.bfloat16)).size == image.size == (256, 256)
    assert np.array_equal(np.asarray(latent_to_rgb(latent.numpy())), np.asarray(image))


def test_x0_estimate_matches_the_schedulers_own_euler_step():
    from diffusers import FlowMatchEulerDiscreteScheduler

    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=False)
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / 8, 8))
    scheduler.set_begin_index(0)
    generator = torch.Generator().manual_seed(0)
    clean = torch.randn(1, 16, 8, 8, generator=generator)
    noise = torch.randn(1, 16, 8, 8, generator=generator)
    sample = noise
    for index, timestep in enumerate(scheduler.timesteps):
        sigma, sigma_next = (float(s) for s in scheduler.sigmas[index : index + 2])
        velocity = noise - clean  # a perfect model
        after = scheduler.step(velocity, timestep, sample, return_dict=False)[0]
        estimate = estimate_clean_latents(sample, after, sigma, sigma_next)
        assert torch.allclose(estimate, clean, atol=1e-4), index
        assert estimate is not after
        if index < 2:  # the noisy latent itself is still far from the image
            assert not torch.allclose(after, clean, atol=0.5)
        sample = after


# ---- the tiny pipeline ----------------------------------------------------------------------


def _params(**overrides) -> GenerationParams:
    values = {"prompt": "a red fox", "width": 256, "height": 256, "seed": 11, "num_inference_steps": 4}
    return GenerationParams(**{**values, **overrides})


async def _run(params: GenerationParams) -> tuple[list[Progress], np.ndarray]:
    updates: list[Progress] = []
    outcome = await generate_one(TINY, params, progress=updates.append)
    assert outcome.ok, outcome.error
    assert outcome.result is not None
    return updates, np.asarray(outcome.result.images[0])


def _expected_preview_steps(steps: int, images: int = 1) -> list[int]:
    every = generation.PREVIEW_EVERY
    per_image = [step for step in range(1, steps + 1) if step % every == 0 or step == steps]
    return [image * steps + step for image in range(images) for step in per_image]


async def test_step_updates_carry_previews_at_the_cadence_then_say_decoding():
    assert generation.PREVIEW_EVERY == 2
    updates, _ = await _run(_params())
    with_preview = [u for u in updates if u.preview is not None]
    assert [u.step for u in with_preview] == _expected_preview_steps(4) == [2, 4]
    for update in with_preview:
        assert update.preview is not None
        assert update.preview.mode == "RGB" and update.preview.size == (256, 256)
        assert np.asarray(update.preview).std() > 0  # a picture, not a flat fill
    messages = [u.message for u in updates]
    assert messages[-2:] == ["step 4/4", "decoding the image (VAE)"]
    assert updates[-1].step is None and updates[-1].fraction == 1.0
    assert [u.step for u in updates if u.step is not None] == [0, 1, 2, 3, 4]


async def test_the_cadence_is_the_constant(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(generation, "PREVIEW_EVERY", 1)
    updates, _ = await _run(_params(num_inference_steps=3))
    assert [u.step for u in updates if u.preview is not None] == [1, 2, 3]
    monkeypatch.setattr(generation, "PREVIEW_EVERY", 2)
    updates, _ = await _run(_params(num_inference_steps=3))
    assert [u.step for u in updates if u.preview is not None] == [2, 3]  # the last step always


async def test_each_image_of_a_batch_has_its_previews_and_its_decoding_phase():
    updates, _ = await _run(_params(num_images=2))
    assert [u.step for u in updates if u.preview is not None] == _expected_preview_steps(4, 2) == [2, 4, 6, 8]
    messages = [u.message for u in updates]
    first, second = messages.index("decoding image 1/2 (VAE)"), messages.index("decoding image 2/2 (VAE)")
    # Each step names the image being made and its own seed (the batch's seeds are 11 and 12).
    assert messages[first - 1] == "image 1/2, seed 11 · step 4/8"
    assert messages[first + 1] == "image 2/2, seed 12 · step 5/8"
    assert messages[second - 1] == "image 2/2, seed 12 · step 8/8" and second == len(messages) - 1


async def test_previews_do_not_change_the_pixels(monkeypatch: pytest.MonkeyPatch):
    _, with_previews = await _run(_params())
    monkeypatch.setattr(generation, "PREVIEW_EVERY", 0)
    updates, without = await _run(_params())
    assert not any(u.preview for u in updates)
    assert np.array_equal(with_previews, without)
    monkeypatch.setattr(generation, "PREVIEW_EVERY", 1)
    _, every_step = await _run(_params())
    assert np.array_equal(with_previews, every_step)


async def test_previews_are_of_the_denoised_estimate_and_the_last_of_the_final_latents():
    """Step 2's preview: x0 worked out from steps 1 and 2; step 4's (sigma 0): what the VAE decodes."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    params = _params()
    updates, _ = await _run(params)
    previews = {u.step: u.preview for u in updates if u.preview is not None}
    assert sorted(previews) == [2, 4]

    pipeline = diffusers_local._TINY_SLOT.get()
    pipeline.scheduler = FlowMatchEulerDiscreteScheduler.from_config(
        pipeline.scheduler.config, shift=params.shift, use_dynamic_shifting=False
    )
    seen: list[torch.Tensor] = []

    def record(_pipe, _step, _timestep, tensors):
        seen.append(tensors["latents"].clone())
        return tensors

    final = pipeline(
        prompt=params.prompt,
        height=params.height,
        width=params.width,
        num_inference_steps=params.num_inference_steps,
        guidance_scale=params.guidance_scale,
        generator=torch.Generator("cpu").manual_seed(params.seed),
        output_type="latent",
        callback_on_step_end=record,
    ).images
    sigmas = pipeline.scheduler.sigmas.tolist()
    assert tuple(final.shape) == (1, 16, 32, 32) and sigmas[4] == 0.0
    assert torch.equal(seen[-1], final)
    second = estimate_clean_latents(seen[0], seen[1], sigmas[1], sigmas[2])
    assert np.array_equal(np.asarray(previews[2]), np.asarray(latent_to_rgb(second)))
    assert not np.array_equal(np.asarray(previews[2]), np.asarray(latent_to_rgb(seen[1])))
    assert np.array_equal(np.asarray(previews[4]), np.asarray(latent_to_rgb(final)))


async def test_a_failing_preview_costs_only_the_preview(monkeypatch, caplog):
    from zimage_ui.providers.local import preview

    _, reference = await _run(_params())

    def broken(*_args, **_kwargs):
        raise RuntimeError("projection exploded")

    monkeypatch.setattr(preview, "latent_to_rgb", broken)
    with caplog.at_level(logging.DEBUG, logger="zimage_ui.providers.local.generation"):
        updates, pixels = await _run(_params())
    assert not any(u.preview for u in updates)
    assert [u.step for u in updates if u.step] == [1, 2, 3, 4]
    assert updates[-1].message == "decoding the image (VAE)"
    assert np.array_equal(pixels, reference)
    failures = [r for r in caplog.records if r.levelno == logging.DEBUG and "no preview" in r.getMessage()]
    assert len(failures) == 2 and failures[0].exc_info is not None


def test_a_stop_at_the_last_step_announces_no_decoding():
    """Called directly, so the Stop lands in the last step's callback, deterministically."""
    from zimage_ui.errors import Cancelled

    provider = diffusers_local.TinyDiffusersProvider()
    prepared = provider.prepare(_params(num_inference_steps=3))
    token = CancelToken()
    updates: list[Progress] = []

    def report(update: Progress) -> None:  # in this thread: the pipeline waits for it
        updates.append(update)
        if update.step == 3:
            token.cancel()

    pipeline = diffusers_local._TINY_SLOT.get()
    with pytest.raises(Cancelled):
        generation.call_pipeline(TINY, pipeline, prepared, report, token)
    assert updates[-1].message == "step 3/3"
    assert not any("decoding" in u.message for u in updates)


async def test_a_stopped_run_does_not_announce_decoding():
    from zimage_ui.errors import Cancelled

    provider = diffusers_local.TinyDiffusersProvider()
    prepared = provider.prepare(_params(num_inference_steps=30, width=512, height=512))
    token = CancelToken()
    updates: list[Progress] = []

    def on_progress(update: Progress) -> None:
        updates.append(update)
        if update.step == 1:
            token.cancel()

    with pytest.raises(Cancelled):
        await provider.run(prepared, keys=KeyRing(), progress=on_progress, cancel=token)
    assert max(u.step or 0 for u in updates) < 30
    assert not any("decoding" in u.message for u in updates)
