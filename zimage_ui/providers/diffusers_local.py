"""In-process `diffusers.ZImagePipeline`: the real checkpoint, or the tiny offline model.

torch and diffusers are imported lazily, inside the functions that need them,
so a hosted-only instance starts fast.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from zimage_ui.errors import Cancelled, JobFailed, ProviderUnavailable
from zimage_ui.params import MAX_LOCAL_SEED, GenerationParams, image_seed
from zimage_ui.providers.base import (
    Availability,
    CancelToken,
    Capabilities,
    KeyRing,
    PreparedRequest,
    Progress,
    ProgressFn,
    Provider,
    RunResult,
    SentValues,
    ignore_progress,
)
from zimage_ui.providers.gpu_queue import GpuQueue, ordinal

if TYPE_CHECKING:
    from diffusers import ZImagePipeline

log = logging.getLogger(__name__)

DEFAULT_MODEL_ID = "Tongyi-MAI/Z-Image-Turbo"
REAL_WEIGHTS_GIB = 20.5  # bf16: 6B transformer + 4B Qwen3 text encoder + VAE
RAM_HEADROOM = 1.3  # loading and activations on top of the weights

# A latent preview (`Progress.preview`) after every PREVIEW_EVERY-th step of each image and
# after its last step; 0 turns previews off. Each costs about a millisecond of CPU at 1024x1024
# (see `providers.preview`), small beside a step of the real model even on an H200.
PREVIEW_EVERY = 2

LOCAL_CAPABILITIES = Capabilities(
    size_rule="multiples of 16, 256..2048",
    steps_range=(1, 50),
    shift=True,
    negative_prompt=True,
    guidance=True,
    max_images=4,
    local_gpu=True,
    max_seed=MAX_LOCAL_SEED,  # a torch generator takes 64 bits; the params stop at A1111's top
)


def model_id() -> str:
    return os.environ.get("ZIMAGE_MODEL_ID", "").strip() or DEFAULT_MODEL_ID


@functools.cache
def cuda_available() -> bool:
    """True when torch sees a CUDA GPU; skips importing torch on machines with no driver."""
    if not (Path("/proc/driver/nvidia").exists() or Path("/dev/nvidia0").exists()):
        return False
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def on_zero_gpu() -> bool:
    """A Hugging Face ZeroGPU Space: the GPU is attached per call through `spaces.GPU`."""
    return os.environ.get("SPACES_ZERO_GPU", "").lower() in {"1", "true"}


def gpu_available() -> bool:
    return on_zero_gpu() or cuda_available()


def checkpoint_gib() -> float:
    """Size of the weights to load: measured for a local folder, the real model's otherwise."""
    folder = Path(model_id())
    if folder.is_dir():
        weights = [p for p in folder.rglob("*") if p.suffix in {".safetensors", ".bin", ".pt", ".gguf"}]
        if weights:
            return sum(p.stat().st_size for p in weights) / 2**30
    return REAL_WEIGHTS_GIB


def _total_ram_gib() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return 0.0


def _gpu_wrapper(function: Callable[..., Any]) -> Callable[..., Any]:
    """`spaces.GPU` on a ZeroGPU Space; the function itself elsewhere."""
    if not on_zero_gpu():
        return function
    try:
        import spaces
    except ImportError:
        return function
    return spaces.GPU(duration=120)(function)


class _PipelineSlot:
    """One pipeline per process, built on first use and shared; `queue`: one call at a time, in order."""

    def __init__(self, build: Callable[[], ZImagePipeline]) -> None:
        self._build = build
        self._pipeline: ZImagePipeline | None = None
        self._build_lock = threading.Lock()
        self.queue = GpuQueue()

    def get(self) -> ZImagePipeline:
        with self._build_lock:
            if self._pipeline is None:
                self._pipeline = self._build()
            return self._pipeline

    @property
    def loaded(self) -> bool:
        return self._pipeline is not None

    def warm_up(self) -> None:
        threading.Thread(target=self._warm, name="pipeline-warm-up", daemon=True).start()

    def _warm(self) -> None:
        try:
            self.get()
        except Exception:  # the first real call reports the error properly
            log.warning("warming up the pipeline failed; the first generation will retry", exc_info=True)


def _load_checkpoint() -> ZImagePipeline:
    """Load the real checkpoint (hub id or local folder) with the opt-in speed options."""
    import torch
    from diffusers import ZImagePipeline

    source = model_id()
    on_gpu = gpu_available()
    dtype = torch.bfloat16
    try:
        pipeline = ZImagePipeline.from_pretrained(source, dtype=dtype)
    except (OSError, ValueError) as exc:
        raise ProviderUnavailable(
            "diffusers",
            f"could not load the checkpoint {source!r} ({type(exc).__name__}). "
            "Set ZIMAGE_MODEL_ID to a local folder holding the pipeline, or allow the download.",
        ) from None
    if on_gpu and os.environ.get("ZIMAGE_CPU_OFFLOAD") == "1":
        pipeline.enable_model_cpu_offload()
    elif on_gpu:
        pipeline.to("cuda")
    backend = os.environ.get("ZIMAGE_ATTENTION_BACKEND", "").strip()
    if backend:
        pipeline.transformer.set_attention_backend(backend)
    if os.environ.get("ZIMAGE_COMPILE") == "1":
        pipeline.transformer.compile(fullgraph=False, dynamic=False)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def _build_tiny() -> ZImagePipeline:
    from zimage_ui.providers.tiny_model import build_tiny_pipeline

    return build_tiny_pipeline()


def _seeds(params: GenerationParams) -> list[int]:
    """One seed per image (seed, seed + 1, ...), so each image can be made again alone."""
    assert params.seed is not None
    return [image_seed(params.seed, index) for index in range(params.num_images)]


def _pipeline_kwargs(params: GenerationParams) -> dict[str, Any]:
    """The exact keyword arguments of each pipeline call (Turbo's values always explicit).

    A batch is one call per image, each with its own seed: a batched call gives slightly
    different pixels than the same seed alone, and every image must be reproducible alone.
    """
    seeds = _seeds(params)
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
    return kwargs


class _LocalPipelineProvider(Provider):
    capabilities = LOCAL_CAPABILITIES
    on_gpu = True  # runs inside `spaces.GPU` on a ZeroGPU Space

    def __init__(self, slot: _PipelineSlot) -> None:
        self._slot = slot

    def _target(self) -> str:
        raise NotImplementedError

    def warm_up(self) -> None:
        self._slot.warm_up()

    def prepare(self, params: GenerationParams) -> PreparedRequest:
        params = params.with_concrete_seed()
        assert params.seed is not None
        notes: list[str] = []
        if params.negative_prompt.strip() and params.guidance_scale == 0:
            notes.append("negative prompt not used: it only applies when guidance is above 0")
        body = _pipeline_kwargs(params)
        return PreparedRequest(
            provider=self.id,
            params=params,
            sent=SentValues(
                width=params.width,
                height=params.height,
                steps=params.num_inference_steps,
                seed=params.seed,
                shift=params.shift,
                negative_sent="negative_prompt" in body,
            ),
            method="CALL",
            url=self._target(),
            body=body,
            notes=tuple(notes),
        )

    async def run(
        self,
        prepared: PreparedRequest,
        *,
        keys: KeyRing,
        progress: ProgressFn = ignore_progress,
        cancel: CancelToken | None = None,
    ) -> RunResult:
        loop = asyncio.get_running_loop()

        def report(update: Progress) -> None:  # called from the worker thread
            loop.call_soon_threadsafe(progress, update)

        cancel = cancel or CancelToken()
        started = time.perf_counter()
        await self._wait_for_gpu(progress, cancel)
        try:
            images = await asyncio.to_thread(self._generate, prepared, report, cancel)
        finally:
            self._slot.queue.release()
        return RunResult(
            provider=self.id,
            images=images,
            seed=prepared.sent.seed,
            seeds=_seeds(prepared.params),
            sent=prepared.sent,
            elapsed_s=time.perf_counter() - started,
            notes=list(prepared.notes),
        )

    async def _wait_for_gpu(self, progress: ProgressFn, cancel: CancelToken) -> None:
        """One generation at a time on the device, first come, first served; waiting costs no thread."""

        def tell(place: int) -> None:
            progress(Progress(None, f"{ordinal(place)} in line for the {self.device_word}"))

        if not await self._slot.queue.acquire(cancel, tell):
            raise Cancelled(self.id, "stopped while waiting in line")

    @property
    def device_word(self) -> str:
        return "GPU" if self.on_gpu else "CPU"

    def _generate(self, prepared: PreparedRequest, report: ProgressFn, cancel: CancelToken) -> list:
        if cancel.cancelled:
            raise Cancelled(self.id, "stopped before it started")
        if not self._slot.loaded:
            report(Progress(None, "loading the model (first use in this process)"))
        pipeline = self._slot.get()
        call = _call_pipeline_on_gpu if self.on_gpu else _call_pipeline
        return call(self.id, pipeline, prepared, report, cancel)


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
        from zimage_ui.providers.preview import estimate_clean_latents, latent_to_rgb

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


def _decoding_message(index: int, count: int) -> str:
    return f"decoding image {index + 1}/{count} (VAE)" if count > 1 else "decoding the image (VAE)"


def _call_pipeline(
    provider_id: str,
    pipeline: Any,  # a ZImagePipeline: its components are registered at run time, unseen by type checkers
    prepared: PreparedRequest,
    report: ProgressFn,
    cancel: CancelToken,
) -> list:
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler

    params = prepared.params
    steps, seeds = params.num_inference_steps, _seeds(params)
    total = steps * len(seeds)
    pipeline.scheduler = FlowMatchEulerDiscreteScheduler.from_config(
        pipeline.scheduler.config, shift=params.shift, use_dynamic_shifting=False
    )
    kwargs = {k: v for k, v in _pipeline_kwargs(params).items() if k not in {"generator", "scheduler"}}
    images = []
    report(Progress(0.0, f"step 0/{total}", 0, total))
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
            preview = None if cancel.cancelled else previews.after_step(pipe, step, tensors.get("latents"))
            report(Progress(done / total, f"step {done}/{total}", done, total, preview=preview))
            if step + 1 == steps and not cancel.cancelled:  # the VAE decode comes next: say so
                report(Progress(done / total, _decoding_message(index, len(seeds))))
            return tensors

        try:
            output = pipeline(
                **kwargs,
                generator=torch.Generator("cpu").manual_seed(seed),
                callback_on_step_end=on_step_end,
                callback_on_step_end_tensor_inputs=["latents"],
            )
        except torch.cuda.OutOfMemoryError:
            raise JobFailed(
                provider_id, "the GPU ran out of memory: try a smaller size or fewer images"
            ) from None
        if cancel.cancelled:
            raise Cancelled(provider_id, "stopped")
        images.extend(output.images)
    return images


# Decorated once, at import: ZeroGPU registers `spaces.GPU` functions when the app starts.
_call_pipeline_on_gpu = _gpu_wrapper(_call_pipeline)
_TINY_SLOT = _PipelineSlot(_build_tiny)
_CHECKPOINT_SLOT = _PipelineSlot(_load_checkpoint)


class TinyDiffusersProvider(_LocalPipelineProvider):
    id = "diffusers-tiny"
    on_gpu = False  # always the CPU: it asks ZeroGPU for nothing
    label = "Local tiny test model (noise, no download)"

    def __init__(self) -> None:
        super().__init__(_TINY_SLOT)

    def _target(self) -> str:
        return "ZImagePipeline(tiny random weights, CPU)"

    def availability(self, keys: KeyRing) -> Availability:
        return Availability(True, "images are noise from an untrained test model")


class DiffusersProvider(_LocalPipelineProvider):
    id = "diffusers"
    label = "Local GPU (diffusers)"

    def __init__(self) -> None:
        super().__init__(_CHECKPOINT_SLOT)

    def _target(self) -> str:
        device = "cuda, bf16" if gpu_available() else "CPU, bf16: slow"
        return f"ZImagePipeline.from_pretrained({model_id()!r}) on {device}"

    def availability(self, keys: KeyRing) -> Availability:
        if gpu_available():
            return Availability(True)
        ram, needed = _total_ram_gib(), checkpoint_gib() * RAM_HEADROOM + 2
        if ram < needed:
            return Availability(
                False,
                f"no CUDA GPU, and {ram:.0f} GiB of RAM is too little for this checkpoint on the CPU "
                f"(needs about {needed:.0f} GiB); use diffusers-tiny or a hosted provider",
            )
        return Availability(True, "no CUDA GPU: runs on the CPU, slowly for the full-size model")
