"""One local generation: the pipeline call's exact arguments, prompt embeddings through the cache,
per-step progress, previews and Stop, the image-to-image, inpainting and ControlNet variants
(`pipeline_variants`) and each model's ControlNet factory. Runs in a worker thread, or in
ZeroGPU's forked worker; torch and diffusers are imported lazily."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, Protocol

from PIL import Image

from zimage_ui.errors import Cancelled, JobFailed
from zimage_ui.image_inputs import LoadedInputs, load_inputs
from zimage_ui.params import GenerationParams, image_seed, shareable_ref
from zimage_ui.providers.base import (
    PreparedRequest,
    Progress,
    ProgressFn,
)
from zimage_ui.providers.local import controlnet
from zimage_ui.providers.local.loading import DEFAULT_MODEL_ID as DEFAULT_MODEL_ID
from zimage_ui.providers.local.loading import checkpoint_gib as checkpoint_gib
from zimage_ui.providers.local.pipeline_variants import (
    MASK_BLUR_PX,
    apply_loras,
    paste_outside_mask,
    pipeline_for,
)
from zimage_ui.providers.local.prompt_cache import PromptCache
from zimage_ui.providers.local.speed import prompt_cache_size
from zimage_ui.providers.local.speed_apply import effective_settings, mask_safe_attention, vae_tiling_for

log = logging.getLogger(__name__)

# A latent preview (`Progress.preview`) after every PREVIEW_EVERY-th step of each image and
# after its last step; 0 turns previews off. Each costs about a millisecond of CPU at 1024x1024
# (see `providers.preview`), small beside a step of the real model even on an H200.
PREVIEW_EVERY = 2


class StopFlag(Protocol):
    """What a generation looks at between steps: a CancelToken, or several at once."""

    @property
    def cancelled(self) -> bool: ...


# ---- one request ---------------------------------------------------------------------------


def image_seeds(params: GenerationParams) -> list[int]:
    """One seed per image (seed, seed + 1, ...), so each image can be made again alone."""
    assert params.seed is not None
    return [image_seed(params.seed, index) for index in range(params.num_images)]


def pipeline_kwargs(params: GenerationParams) -> dict[str, Any]:
    """The exact keyword arguments of each pipeline call (Turbo's values always explicit).

    A batch is one call per image, each with its own seed: a batched call gives slightly
    different pixels than the same seed alone, and every image must be reproducible alone.
    The prompt (and negative prompt) reach the pipeline as embeddings from `encode_prompts`.
    """
    seeds = image_seeds(params)
    kwargs: dict[str, Any] = {
        "prompt": params.prompt,
        "height": params.height,
        "width": params.width,
        "num_inference_steps": params.num_inference_steps,
        "guidance_scale": params.guidance_scale,
        "num_images_per_prompt": 1,
        "generator": (
            f"torch.Generator('cpu').manual_seed({seeds[0]})"
            if len(seeds) == 1
            else f"torch.Generator('cpu').manual_seed(seed), one call for each seed in {seeds}"
        ),
        "scheduler": f"FlowMatchEulerDiscreteScheduler(shift={params.shift})",
    }
    if params.guidance_scale > 0 and params.negative_prompt.strip():
        kwargs["negative_prompt"] = params.negative_prompt
    if params.image is not None:
        kind = "ZImageInpaintPipeline" if params.mask is not None else "ZImageImg2ImgPipeline"
        kwargs["pipeline"] = f"{kind}.from_pipe(the loaded pipeline)"
        kwargs["image"] = f"the input image {shareable_ref(params.image)!r}, resized to {params.size}"
        if params.mask is not None:
            kwargs["mask_image"] = (
                f"the mask {shareable_ref(params.mask)!r}; outside it the input's own pixels are pasted back "
                f"after decoding (edge blurred {MASK_BLUR_PX} px, as A1111 does)"
            )
        kwargs["strength"] = params.strength
    if params.control_image is not None:
        kwargs["pipeline"] = "ZImageControlNetPipeline.from_pipe(the loaded pipeline, controlnet=...)"
        control = shareable_ref(params.control_image)
        kwargs["control_image"] = f"the control image {control!r}, resized to {params.size}"
        kwargs["control_kind"] = params.control_kind
        kwargs["controlnet_conditioning_scale"] = params.control_scale
    if params.loras:
        kwargs["loras"] = [
            f"{lora.ref if lora.source == 'id' else shareable_ref(lora.ref)} x {lora.scale:g}"
            for lora in params.loras
        ]
    return kwargs


# Keys of `pipeline_kwargs` that describe a value for reading (copied code writes the real call
# for them); `run_pipeline` passes the real generator, scheduler, images and LoRAs instead, and
# the prompts as embeddings.
DISPLAY_ONLY = frozenset(
    {"generator", "scheduler", "pipeline", "image", "mask_image", "control_image", "control_kind", "loras"}
)
SHOWN_ONLY = DISPLAY_ONLY | {"prompt", "negative_prompt"}


def _wants_preview(step: int, steps: int) -> bool:
    """Does step `step` (1-based) of one image's `steps` carry a preview? PREVIEW_EVERY 0: never."""
    return PREVIEW_EVERY > 0 and 1 <= step <= steps and (step % PREVIEW_EVERY == 0 or step == steps)


class _StepPreviews:
    """One image's previews, made in the pipeline's step callback; a failure only costs the preview.

    The callback's `latents` are the noisy sample after the step, in the pipeline's own space
    (float32, unpacked: batch x 16 x height/8 x width/8): projected as they are, they are mostly
    noise until the last steps (sigma is still 0.9 after step 2 of Turbo's 8, 0.5 after step 6).
    So the preview is of the denoised estimate x0, worked out from this step's latents and a copy
    of the previous step's (kept only before a preview step); where there is no previous copy
    (a preview after step 1), the latents themselves. After the last step (sigma 0) they are x0.
    """

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self._previous: Any = None  # our own copy of the step before's latents, on their device
        self._sigmas: list[float] | None = None

    def after_step(self, pipe: Any, index: int, latents: Any) -> Image.Image | None:
        step = index + 1
        try:
            preview = self._make(pipe, index, latents) if _wants_preview(step, self.steps) else None
            wanted_next = _wants_preview(step + 1, self.steps) and step + 1 < self.steps
            self._previous = latents[:1].detach().clone() if wanted_next else None
            return preview
        except Exception:  # a preview must never break a run
            log.debug("no preview for step %d", step, exc_info=True)
            self._previous = None
            return None

    def _make(self, pipe: Any, index: int, latents: Any) -> Image.Image:
        from zimage_ui.providers.local.preview import estimate_clean_latents, latent_to_rgb

        current = latents[:1].detach()
        scheduler = pipe.scheduler
        position = scheduler.step_index if scheduler.step_index is not None else index + 1
        if self._sigmas is None:
            self._sigmas = [float(sigma) for sigma in scheduler.sigmas.tolist()]
        estimate = current
        deterministic = not scheduler.config.get("stochastic_sampling", False)
        if self._previous is not None and deterministic and 1 <= position < len(self._sigmas):
            sigma_before, sigma_now = self._sigmas[position - 1], self._sigmas[position]
            estimate = estimate_clean_latents(self._previous, current, sigma_before, sigma_now)
        # Projected where the latents are (the GPU, for the real model), so only the small 8-bit
        # RGB result crosses to the CPU: the image shares no memory with the pipeline's tensors.
        return latent_to_rgb(estimate)


def _step_message(done: int, total: int, index: int, seeds: list[int]) -> str:
    """A step's message; in a batch it names the image being made and its own seed."""
    if len(seeds) == 1:
        return f"step {done}/{total}"
    return f"image {index + 1}/{len(seeds)}, seed {seeds[index]} · step {done}/{total}"


def _decoding_message(index: int, count: int) -> str:
    return f"decoding image {index + 1}/{count} (VAE)" if count > 1 else "decoding the image (VAE)"


def encode_prompts(pipeline: Any, params: GenerationParams) -> tuple[list[Any], list[Any]]:
    """The one place prompt embeddings are made: (prompt_embeds, negative_prompt_embeds), as
    `ZImagePipeline.encode_prompt` returns them: lists of one tensor (tokens x the text encoder's
    hidden size, on the pipeline's device), the negative one empty without guidance.

    They come from the prompt cache (`ZIMAGE_PROMPT_CACHE`, keyed by model, prompt, negative
    prompt and guidance), so a Compare, a Sweep or a re-roll of one prompt runs the text encoder
    once. The pipeline gets these instead of the prompt: the same pixels (tested).
    """
    guided = params.guidance_scale > 0
    negative = params.negative_prompt if guided and params.negative_prompt.strip() else None
    return PROMPTS.encode(pipeline, params.prompt, negative, guided)


VARIETY_SEED_OFFSET = 0x5EED  # the variety noise's generator is the image's seed plus this, so it is
# not the same random stream as the initial latents


def with_variety(prompt_embeds: list[Any], variety: float, seed: int) -> list[Any]:
    """Seed variety (after InvokeAI's): Gaussian noise drawn from the seed, scaled by `variety` and
    by each embedding's own spread, added to the prompt embeddings. Turbo makes nearly one image
    whatever the seed; this lets seeds differ more while one seed still makes one image. At 0 the
    embeddings are returned untouched, so the image is the usual one exactly."""
    if not variety:
        return prompt_embeds
    import torch

    generator = torch.Generator("cpu").manual_seed((seed + VARIETY_SEED_OFFSET) % 2**63)
    varied = []
    for embedding in prompt_embeds:
        noise = torch.randn(embedding.shape, generator=generator, dtype=torch.float32)
        spread = embedding.float().std()
        varied_embedding = embedding.float() + variety * spread * noise.to(embedding.device)
        varied.append(varied_embedding.to(embedding.dtype))
    return varied


def call_pipeline(
    provider_id: str,
    pipeline: Any,  # a ZImagePipeline: its components are registered at run time, unseen by type checkers
    prepared: PreparedRequest,
    report: ProgressFn,
    cancel: StopFlag,
    inputs: LoadedInputs | None = None,
) -> list:
    return run_pipeline(provider_id, pipeline, prepared.params, report, cancel, inputs)


def run_pipeline(
    provider_id: str,
    pipeline: Any,
    params: GenerationParams,
    report: ProgressFn,
    cancel: StopFlag,
    inputs: LoadedInputs | None = None,
) -> list:
    """Every image of one request: step progress with previews, "decoding", Stop between steps.

    With an input image the image-to-image (or, with a mask, inpainting) pipeline made from this
    one runs; its strength cuts the steps really run (`params.steps_run`), which the progress
    counts. The prompt embeddings come from the loaded pipeline's text encoder either way.
    """
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler

    inputs = inputs or LoadedInputs()
    unread = (params.image is not None and inputs.image is None) or (params.loras and not inputs.loras)
    if unread or (params.control_image is not None and inputs.control is None):
        inputs = load_inputs(params)  # a caller that did not read them: local files only
    steps, seeds = params.steps_run, image_seeds(params)
    total = steps * len(seeds)
    pipeline.scheduler = FlowMatchEulerDiscreteScheduler.from_config(
        pipeline.scheduler.config, shift=params.shift, use_dynamic_shifting=False
    )
    kwargs = {k: v for k, v in pipeline_kwargs(params).items() if k not in SHOWN_ONLY}
    if inputs.image is not None:
        kwargs["image"] = inputs.image
        if inputs.mask is not None:
            kwargs["mask_image"] = inputs.mask
    if inputs.control is not None:
        kwargs["control_image"] = inputs.control
    images = []
    report(Progress(0.0, f"step 0/{total}", 0, total))
    try:
        apply_loras(provider_id, pipeline, inputs.loras)
        call = pipeline_for(
            pipeline,
            params,
            functools.partial(CONTROLNETS.get(provider_id, configured_controlnet), provider_id),
        )
        prompt_embeds, negative_embeds = encode_prompts(pipeline, params)
        settings = effective_settings(pipeline)  # None for the tiny model: no speed options
        if settings is not None:
            vae_tiling_for(pipeline, params.width, params.height, settings)
        for index, seed in enumerate(seeds):
            done_before = index * steps
            previews = _StepPreviews(steps)

            def on_step_end(
                pipe: Any,
                step: int,
                _timestep: Any,
                tensors: dict[str, Any],
                done_before: int = done_before,
                index: int = index,
                previews: _StepPreviews = previews,
            ) -> dict[str, Any]:
                if cancel.cancelled:
                    pipe._interrupt = True  # the pipeline skips the remaining steps
                done = done_before + step + 1
                preview = (
                    None if cancel.cancelled else previews.after_step(pipe, step, tensors.get("latents"))
                )
                message = _step_message(done, total, index, seeds)
                report(Progress(done / total, message, done, total, preview=preview))
                if step + 1 == steps and not cancel.cancelled:  # the VAE decode comes next: say so
                    report(Progress(done / total, _decoding_message(index, len(seeds))))
                return tensors

            with mask_safe_attention(pipeline, prompt_embeds, negative_embeds) as switched:
                if switched and index == 0:
                    report(Progress(0.0, switched))
                output = call(
                    **kwargs,
                    prompt_embeds=with_variety(prompt_embeds, params.variety, seed),
                    negative_prompt_embeds=negative_embeds,
                    generator=torch.Generator("cpu").manual_seed(seed),
                    callback_on_step_end=on_step_end,
                    callback_on_step_end_tensor_inputs=["latents"],
                )
            if cancel.cancelled:
                raise Cancelled(provider_id, "stopped")
            if inputs.image is not None and inputs.mask is not None:
                output.images = [paste_outside_mask(i, inputs.image, inputs.mask) for i in output.images]
            images.extend(output.images)
    except torch.OutOfMemoryError:
        raise JobFailed(
            provider_id, "the device ran out of memory: try a smaller size or fewer images"
        ) from None
    return images


def control_of(params: GenerationParams) -> tuple[str, float] | None:
    """(kind, scale) of the control image sent, for SentValues; None without one."""
    if params.control_kind is None or params.control_scale is None:
        return None
    return (params.control_kind, params.control_scale)


def tiny_controlnet(provider_id: str, pipeline: Any) -> Any:
    from zimage_ui.providers.local.tiny_model import build_tiny_controlnet

    return build_tiny_controlnet(pipeline.transformer)


def configured_controlnet(provider_id: str, pipeline: Any) -> Any:
    return controlnet.load_controlnet(provider_id, controlnet.configured(), pipeline.transformer)


# Each local model's ControlNet factory: called once per loaded pipeline, on its first control run,
# with the device held (the GPU queue), and kept with the pipeline (`pipeline_variants`).
CONTROLNETS: dict[str, Callable[[str, Any], Any]] = {
    "diffusers-tiny": tiny_controlnet,
    "diffusers": configured_controlnet,
}
PROMPTS = PromptCache(prompt_cache_size())  # both local models' prompt embeddings (keyed by model)
