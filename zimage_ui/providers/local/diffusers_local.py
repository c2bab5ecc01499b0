"""In-process `diffusers.ZImagePipeline`: the real checkpoint, or the tiny offline model.

torch and diffusers are imported lazily, inside the functions that need them,
so a hosted-only instance starts fast.

Where things are (all in `providers.local`):
- the device and dtype: `device_choice()` (`devices`: ZIMAGE_DEVICE, never fp16);
- loading: `loading` (straight onto the device, with the speed and memory settings of `speed`,
  checked once: each fallback is a note shown with every run);
- a generation: `generation.run_pipeline`, whose prompt embeddings come from one place,
  `generation.encode_prompts`, through the prompt cache (`prompt_cache`); on a ZeroGPU Space it
  runs in ZeroGPU's forked worker (`_gpu_generation` here, decorated with `spaces.GPU` at import;
  `zerogpu` says how that boundary really behaves);
- image inputs: `run` reads the input image, mask, control image and LoRA files
  (`zimage_ui.image_inputs`) before waiting for the device; `run_pipeline` then calls the
  image-to-image, inpainting or ControlNet pipeline made from the loaded one and activates exactly
  the run's LoRAs (`pipeline_variants`);
- ControlNet: `generation.CONTROLNETS` makes each local model's `ZImageControlNetModel`, once, on
  its first control run with the device held: the tiny one in-process, the real one from
  `ZIMAGE_CONTROLNET` (`controlnet`, never a hub config). Without it the `diffusers` provider
  takes no control image, and says how to set one up.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from zimage_ui import env
from zimage_ui.cancel import CancelToken
from zimage_ui.errors import Cancelled, JobFailed, ProviderError
from zimage_ui.image_inputs import LoadedInputs, fetch_remote, load_inputs
from zimage_ui.lora_downloads import TOKEN_ENV as HF_TOKEN_ENV
from zimage_ui.lora_downloads import download_loras, refuse_provider_ids
from zimage_ui.params import CONTROL_KINDS, MAX_LOCAL_SEED, GenerationParams
from zimage_ui.providers.base import (
    FULL_PIPELINE,
    Availability,
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
from zimage_ui.providers.local import controlnet, loading, zerogpu
from zimage_ui.providers.local.devices import DEVICE_ENV, DeviceChoice, choose_device
from zimage_ui.providers.local.generation import (
    StopFlag,
    call_pipeline,
    configured_controlnet,
    control_of,
    image_seeds,
    pipeline_kwargs,
    run_pipeline,
)
from zimage_ui.providers.local.gpu_queue import GpuQueue, ordinal
from zimage_ui.providers.local.loading import DEFAULT_MODEL_ID as DEFAULT_MODEL_ID
from zimage_ui.providers.local.loading import checkpoint_gib as checkpoint_gib
from zimage_ui.providers.local.loading import loaded_gib, model_id
from zimage_ui.providers.local.loading import total_ram_gib as _total_ram_gib
from zimage_ui.providers.local.pipeline_variants import (
    controlnet_pipeline,
)
from zimage_ui.providers.local.speed import (
    describe,
    speed_settings,
)

if TYPE_CHECKING:
    from diffusers import ZImagePipeline

log = logging.getLogger(__name__)
T = TypeVar("T")

RAM_HEADROOM = 1.3  # loading and activations on top of the weights

LOCAL_CAPABILITIES = replace(
    FULL_PIPELINE,
    local_gpu=True,
    max_seed=MAX_LOCAL_SEED,  # a torch generator takes 64 bits; the params stop at A1111's top
    image_input=True,  # ZImageImg2ImgPipeline / ZImageInpaintPipeline, from the loaded pipeline
    mask_input=True,
    lora=True,
    lora_sources=("file", "url", "id"),  # URLs and hub ids downloaded first (lora_downloads)
    variety=True,  # seeded noise on the prompt embeddings (`generation.with_variety`)
)
TINY_DEVICE = DeviceChoice("cpu", "float32")  # the tiny model is built there and stays there
# With a ControlNet: ZImageControlNetPipeline, from the loaded pipeline and the ControlNet model.
CONTROL_CAPABILITIES = replace(LOCAL_CAPABILITIES, control_input=True, control_kinds=CONTROL_KINDS)


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


on_zero_gpu = zerogpu.on_zero_gpu


def gpu_available() -> bool:
    return on_zero_gpu() or cuda_available()


def device_choice() -> DeviceChoice:
    """Where the `diffusers` provider runs and in which dtype (`ZIMAGE_DEVICE`, checked)."""
    return choose_device(env.raw(DEVICE_ENV) or None, cuda_present=cuda_available(), zero_gpu=on_zero_gpu())


class _PipelineSlot:
    """One pipeline per process, built on first use and shared; `queue`: one call at a time, in order."""

    def __init__(self, build: Callable[[list[str]], ZImagePipeline]) -> None:
        self._build = build
        self._pipeline: ZImagePipeline | None = None
        self._build_lock = threading.Lock()
        self.queue = GpuQueue()
        self.notes: list[str] = []  # what loading could not do as asked: shown with every run

    def get(self) -> ZImagePipeline:
        with self._build_lock:
            if self._pipeline is None:
                notes: list[str] = []
                self._pipeline = self._build(notes)
                self.notes = notes
            return self._pipeline

    @property
    def loaded(self) -> bool:
        return self._pipeline is not None

    async def run_holding(self, work: Callable[[StopFlag], T], cancel: CancelToken) -> T:
        """`work(stop)` in a worker thread, for a caller that holds the device (`queue.acquire`).
        The device is handed on only when the work has really ended, not when its task did: a
        cancelled task (Gradio's cancel, a closed CLI) sets `stop`, and the work ends at its next
        step before the next in line gets the device."""
        abandoned = CancelToken()
        job = asyncio.ensure_future(asyncio.to_thread(work, AnyStop(cancel, abandoned)))
        job.add_done_callback(self._work_ended)
        try:
            return await asyncio.shield(job)
        except asyncio.CancelledError:
            abandoned.cancel()
            raise

    def _work_ended(self, job: asyncio.Future[Any]) -> None:
        if not job.cancelled():
            job.exception()  # retrieved: an abandoned run's error is not "never retrieved"
        self.queue.release()

    def warm_up(self, *, wait: bool = False) -> None:
        if wait:
            self._warm()
        else:
            threading.Thread(target=self._warm, name="pipeline-warm-up", daemon=True).start()

    def _warm(self) -> None:
        try:
            self.get()
        except Exception:  # the first real call reports the error properly
            log.warning("warming up the pipeline failed; the first generation will retry", exc_info=True)


def _build_tiny(notes: list[str] | None = None) -> ZImagePipeline:
    from zimage_ui.providers.local.tiny_model import build_tiny_pipeline

    return build_tiny_pipeline()


def _load_checkpoint(notes: list[str] | None = None) -> ZImagePipeline:
    """The `diffusers` provider's pipeline: the checkpoint, on the device `device_choice()` names."""
    return loading.load_checkpoint(device_choice(), [] if notes is None else notes)


class AnyStop:
    """Stopped when any of its tokens is (the user's Stop, or the awaiting task cancelled)."""

    def __init__(self, *tokens: CancelToken) -> None:
        self._tokens = tokens

    @property
    def cancelled(self) -> bool:
        return any(token.cancelled for token in self._tokens)


class _LocalPipelineProvider(Provider):
    capabilities = LOCAL_CAPABILITIES
    on_gpu = True  # runs inside `spaces.GPU` on a ZeroGPU Space

    def __init__(self, slot: _PipelineSlot) -> None:
        self._slot = slot

    def _target(self) -> str:
        raise NotImplementedError

    def _device(self) -> DeviceChoice:
        return TINY_DEVICE

    def _controlnet_name(self) -> str:
        """The ControlNet's name for the PNG's `ControlNet 0` entry."""
        return controlnet.TINY_NAME

    def _notes(self, params: GenerationParams) -> list[str]:
        """Notes on where and how this request runs (the device, the loading, ZeroGPU's time)."""
        return []

    def warm_up(self) -> None:
        self._slot.warm_up()

    @property
    def pipeline_slot(self) -> _PipelineSlot:
        """Its pipeline and its line for the device, shared with the prompt writer."""
        return self._slot

    def prepare_seeded(self, params: GenerationParams) -> PreparedRequest:
        assert params.seed is not None  # Provider.prepare made it concrete
        refuse_provider_ids(params.loras, self.id)  # "model_...": another provider's own LoRA id
        notes = self._notes(params)
        if params.negative_prompt.strip() and params.guidance_scale == 0:
            notes.append("negative prompt not used: it only applies when guidance is above 0")
        if params.inputs and params.inputs.strength is not None and params.image is None:
            notes.append("strength not used: it only applies with an input image")
        if params.inputs and params.inputs.control_scale is not None and params.control_image is None:
            notes.append("control scale not used: it only applies with a control image")
        if params.image is not None and params.steps_run != params.num_inference_steps:
            notes.append(
                f"strength {params.strength:g}: {params.steps_run} of {params.num_inference_steps} steps run"
            )
        body = pipeline_kwargs(params)
        return PreparedRequest(
            provider=self.id,
            params=params,
            sent=SentValues(
                width=params.width,
                height=params.height,
                steps=params.num_inference_steps,
                seed=params.seed,
                shift=params.shift,
                guidance=params.guidance_scale,
                negative_sent="negative_prompt" in body,
                strength=params.strength,
                control=control_of(params),
                control_model=self._controlnet_name() if params.control_image is not None else "",
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
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens any more
                loop.call_soon_threadsafe(progress, update)

        if prepared.params.control_image is not None and not self.capabilities.control_input:
            raise JobFailed(self.id, controlnet.NOT_SET_UP)  # before loading anything
        cancel = cancel or CancelToken()
        started = time.perf_counter()
        inputs = LoadedInputs()
        if prepared.params.inputs is not None:  # read before waiting in line: the device waits for no file
            progress(Progress(None, "reading the input image and LoRAs"))
            fetched = await fetch_remote(prepared.params.inputs)
            lora_paths = await download_loras(
                prepared.params.loras,
                report=lambda text: progress(Progress(None, text)),
                cancel=cancel,
                token=keys.get(HF_TOKEN_ENV),  # a visitor's own, or the server's where it is shared
            )
            inputs = await asyncio.to_thread(load_inputs, prepared.params, fetched, lora_paths=lora_paths)
        await self._wait_for_gpu(progress, cancel)
        images = await self._slot.run_holding(
            lambda stop: self._generate(prepared, report, stop, inputs), cancel
        )
        sent = prepared.sent
        if inputs.loras:  # their names and hashes are known now that the files were read
            sent = replace(sent, loras=tuple((lora.name, lora.scale, lora.hash) for lora in inputs.loras))
        return RunResult(
            provider=self.id,
            images=images,
            seed=prepared.sent.seed,
            seeds=image_seeds(prepared.params),
            sent=sent,
            elapsed_s=time.perf_counter() - started,
            # What loading could not do as asked (a bad setting's fallback) is known once the model
            # is loaded: the first run's notes get it too, not only the runs after.
            notes=[
                *prepared.notes,
                *(note for note in (*self._slot.notes, *inputs.notes) if note not in prepared.notes),
            ],
        )

    async def _wait_for_gpu(self, progress: ProgressFn, cancel: CancelToken) -> None:
        """One generation at a time on the device, first come, first served; waiting costs no thread."""

        def tell(place: int) -> None:
            progress(Progress(None, f"{ordinal(place)} in line for the {self.device_word}"))

        if not await self._slot.queue.acquire(cancel, tell):
            raise Cancelled(self.id, "stopped while waiting in line")

    @property
    def device_word(self) -> str:
        return "GPU" if self._device().accelerated else "CPU"

    def _generate(
        self,
        prepared: PreparedRequest,
        report: ProgressFn,
        stop: StopFlag,
        inputs: LoadedInputs | None = None,
    ) -> list:
        inputs = inputs or LoadedInputs()
        if stop.cancelled:
            raise Cancelled(self.id, "stopped before it started")
        if not self._slot.loaded:
            report(Progress(None, "loading the model (first use in this process)"))
        pipeline = self._slot.get()  # in this process: on ZeroGPU the worker is forked with it
        task = _ZERO_GPU_TASK if self.on_gpu else None
        if task is None:
            return call_pipeline(self.id, pipeline, prepared, report, stop, inputs)
        return self._generate_in_worker(task, prepared, report, stop, inputs)

    def _generate_in_worker(
        self,
        task: Callable[..., Iterator[zerogpu.Event]],
        prepared: PreparedRequest,
        report: ProgressFn,
        stop: StopFlag,
        inputs: LoadedInputs | None = None,
    ) -> list:
        """ZeroGPU: the generation runs in its forked worker. Only plain values cross: the params as
        a dict (and the decoded inputs, small PIL images) one way; progress (previews are small PIL
        images), then the images or what went wrong, the other. Stop closes the events, which
        ZeroGPU passes on to the worker."""
        report(Progress(None, "waiting for ZeroGPU to attach a GPU"))
        request = prepared.params.model_dump()
        used = inputs is not None and (inputs.image is not None or inputs.loras or inputs.control is not None)
        events = task(self.id, request, inputs) if used else task(self.id, request)
        try:
            kind, value = zerogpu.drain(events, stop, report)
        except Exception as exc:  # ZeroGPU's own refusals: quota, "GPU task aborted"
            import gradio as gr

            if isinstance(exc, gr.Error):
                raise JobFailed(self.id, f"ZeroGPU: {exc.message}") from None
            raise
        if kind == "images":
            return value
        if kind == "stopped":
            raise Cancelled(self.id, value)
        if kind == "failed":
            raise JobFailed(self.id, value)
        raise RuntimeError(f"in the ZeroGPU worker: {value}")


class TinyDiffusersProvider(_LocalPipelineProvider):
    id = "diffusers-tiny"
    capabilities = CONTROL_CAPABILITIES  # its own tiny ControlNet (`tiny_model.build_tiny_controlnet`)
    on_gpu = False  # always the CPU: it asks ZeroGPU for nothing
    label = "Local tiny test model (noise, no download)"

    def __init__(self) -> None:
        super().__init__(_TINY_SLOT)

    def _target(self) -> str:
        return f"ZImagePipeline(tiny random weights, {TINY_DEVICE.label})"

    def availability(self, keys: KeyRing) -> Availability:
        return Availability(True, "images are noise from an untrained test model")


class DiffusersProvider(_LocalPipelineProvider):
    id = "diffusers"

    def __init__(self) -> None:
        super().__init__(_CHECKPOINT_SLOT)

    @property
    def label(self) -> str:  # type: ignore[override]  # a class attribute elsewhere; here it names the device
        return f"Local diffusers pipeline ({self._device().label})"

    def _device(self) -> DeviceChoice:
        return device_choice()

    @property
    def capabilities(self) -> Capabilities:  # type: ignore[override]  # a class attribute elsewhere
        """ControlNet only when `ZIMAGE_CONTROLNET` names one (read each time, like ZIMAGE_MODEL_ID)."""
        return CONTROL_CAPABILITIES if controlnet.configured() else LOCAL_CAPABILITIES

    def _controlnet_name(self) -> str:
        ref = controlnet.configured()
        return controlnet.display_name(ref) if ref else ""

    def _notes(self, params: GenerationParams) -> list[str]:
        choice = self._device()
        notes = [choice.note] if choice.note else []
        notes.extend(self._slot.notes if self._slot.loaded else [])
        if choice.zero_gpu and _ZERO_GPU_TASK is not None:
            sizes = (params.width, params.height, params.num_inference_steps, params.num_images)
            need = zerogpu.estimate_seconds(*sizes)
            if need > zerogpu.MAX_GPU_S:
                notes.append(
                    f"ZeroGPU reserves at most {zerogpu.MAX_GPU_S} s for one call and this request may "
                    f"need about {need:.0f} s: it may be cut off (fewer images or steps, or a smaller size)"
                )
        return notes

    def details(self) -> str:
        """The speed options really on once loaded, else the ones the settings ask for."""
        ref = controlnet.configured()
        control = (
            f"ControlNet: {controlnet.display_name(ref)} (loaded on the first control run)"
            if ref
            else f"ControlNet: none (set {controlnet.CONTROLNET_ENV} to use control images)"
        )
        if self._slot.loaded:
            return f"Speed: {loading.speed_summary(self._slot.get())}. {control}"
        choice = self._device()
        planned, _notes = speed_settings(choice.device, choice.zero_gpu)
        return f"Speed (when the model loads): {describe(planned)}. {control}"

    def warm_up(self) -> None:
        # ZeroGPU packs the tensors moved to "cuda" when the app launches: load before that, the
        # ControlNet too (its forked worker would otherwise load it again for every call).
        self._slot.warm_up(wait=on_zero_gpu())
        if on_zero_gpu() and controlnet.configured():
            self.preload_controlnet()

    def preload_controlnet(self) -> None:
        """Load the ControlNet now, not on the first control run (a failure: that run reports it)."""
        try:
            controlnet_pipeline(self._slot.get(), functools.partial(configured_controlnet, self.id))
        except Exception:
            log.warning("loading the ControlNet failed; the first control run will retry", exc_info=True)

    def _target(self) -> str:
        return f"ZImagePipeline.from_pretrained({model_id()!r}) on {self._device().label}"

    def availability(self, keys: KeyRing) -> Availability:
        choice = self._device()
        note = f"; {choice.note}" if choice.note else ""
        if choice.zero_gpu and choice.accelerated:
            return Availability(True, f"a ZeroGPU GPU is attached for each generation ({choice.label}){note}")
        if choice.accelerated:
            return Availability(True, f"runs on {choice.label}{note}")
        ram, needed = _total_ram_gib(), loaded_gib(choice.dtype) * RAM_HEADROOM + 2
        if ram < needed:
            why = f"{DEVICE_ENV}=cpu" if cuda_available() else "no CUDA GPU"
            return Availability(
                False,
                f"{why}, and {ram:.0f} GiB of RAM is too little for this checkpoint on the CPU "
                f"in {choice.dtype} (needs about {needed:.0f} GiB); use diffusers-tiny or a hosted provider",
            )
        return Availability(True, f"runs on the {choice.label}: slowly for the full-size model{note}")


# ---- ZeroGPU: the function its forked worker runs ------------------------------------------


def _gpu_generation(
    provider_id: str, request: dict[str, Any], inputs: LoadedInputs | None = None
) -> Iterator[zerogpu.Event]:
    """One request in ZeroGPU's worker: ("progress", update) per step, then ("images", [...]), or
    ("stopped" | "failed" | "error", message). Takes and yields plain picklable values only.

    The pipeline is the module's, loaded (and moved to "cuda") in the app process before the
    worker was forked from it. Closing this generator (ZeroGPU does, on the caller's Stop) stops
    the pipeline at its next step.
    """
    try:
        params = GenerationParams.model_validate(request)
        pipeline = _SLOTS[provider_id].get()

        def work(report: ProgressFn, stop: CancelToken) -> list:
            return run_pipeline(provider_id, pipeline, params, report, stop, inputs)

        images = yield from zerogpu.relay(work)
    except Cancelled as exc:
        yield ("stopped", exc.detail)
        return
    except ProviderError as exc:
        yield ("failed", exc.detail)
        return
    except Exception as exc:  # a bug: its type and message cross, its traceback is logged here
        log.exception("the ZeroGPU worker failed")
        yield ("error", f"{type(exc).__name__}: {exc}")
        return
    yield ("images", images)


def _gpu_duration(provider_id: str, request: dict[str, Any], inputs: LoadedInputs | None = None) -> int:
    """ZeroGPU's `duration`, given the task's own arguments: seconds for this request's work."""
    return zerogpu.gpu_seconds(
        request["width"], request["height"], request["num_inference_steps"], request["num_images"]
    )


def _decorate_for_zero_gpu() -> Callable[..., Iterator[zerogpu.Event]] | None:
    return zerogpu.gpu_function(_gpu_generation, duration=_gpu_duration)


# Decorated once, at import: ZeroGPU registers `spaces.GPU` functions when the app starts.
_ZERO_GPU_TASK = _decorate_for_zero_gpu()
_TINY_SLOT = _PipelineSlot(_build_tiny)
_CHECKPOINT_SLOT = _PipelineSlot(_load_checkpoint)
_SLOTS = {"diffusers-tiny": _TINY_SLOT, "diffusers": _CHECKPOINT_SLOT}  # the worker finds its pipeline


def pipeline_slot(provider_id: str) -> _PipelineSlot:
    """The module's slot for a local provider: what a ZeroGPU worker finds its pipeline in."""
    return _SLOTS[provider_id]
