"""What one local run calls, beside the loaded `ZImagePipeline`: the image-to-image, inpainting
and ControlNet pipelines made from it, and the LoRA adapters in its transformer.

`pipeline_for` makes `ZImageImg2ImgPipeline` / `ZImageInpaintPipeline` / `ZImageControlNetPipeline`
once per loaded pipeline with `from_pipe` (the same component objects: no second copy of the
weights; the ControlNet, made once by the caller's `controlnet` factory on the first control run,
shares the transformer's embedders and refiners). `apply_loras`
loads each LoRA file once (the adapter named by the file's hash) and activates exactly the run's
LoRAs, or none. Both are called with the device held (the GPU queue), so one run's state never
reaches another's. diffusers is imported inside the functions.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from typing import Any

from PIL import Image, ImageFilter

from zimage_ui.errors import JobFailed
from zimage_ui.image_inputs import LoraFile
from zimage_ui.params import GenerationParams

# Per loaded pipeline: the pipelines made from it with `from_pipe` (same components, no second
# copy of the weights), and the LoRA adapters loaded into its transformer, oldest first.
_DERIVED: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()
_LORAS: weakref.WeakKeyDictionary[Any, list[str]] = weakref.WeakKeyDictionary()
MAX_LOADED_LORAS = 8  # adapters kept loaded; the oldest not in use is deleted past this

log = logging.getLogger(__name__)


def pipeline_for(
    pipeline: Any, params: GenerationParams, controlnet: Callable[[Any], Any] | None = None
) -> Any:
    """The pipeline one run calls: the loaded text-to-image one, or an image-to-image, inpainting
    or ControlNet pipeline made from its components once (`from_pipe`), with its scheduler.
    `controlnet(pipeline)` makes the ControlNet model (called once, on the first control run)."""
    if params.control_image is not None:
        return controlnet_pipeline(pipeline, controlnet)
    if params.image is None:
        return pipeline
    from diffusers import ZImageImg2ImgPipeline, ZImageInpaintPipeline

    kind = ZImageInpaintPipeline if params.mask is not None else ZImageImg2ImgPipeline
    return _derived(pipeline, kind)


def controlnet_pipeline(pipeline: Any, controlnet: Callable[[Any], Any] | None) -> Any:
    """The ControlNet pipeline of this loaded pipeline: made once, its model from `controlnet`."""
    from diffusers import ZImageControlNetPipeline

    made = _DERIVED.setdefault(pipeline, {})
    if ZImageControlNetPipeline.__name__ not in made:
        if controlnet is None:
            raise JobFailed("local", "this model has no ControlNet set up")
        return _derived(pipeline, ZImageControlNetPipeline, controlnet=controlnet(pipeline))
    return _derived(pipeline, ZImageControlNetPipeline)


def _derived(pipeline: Any, kind: Any, **extra: Any) -> Any:
    """`kind` made from the pipeline's components once (`extra`: the components it adds)."""
    made = _DERIVED.setdefault(pipeline, {})
    if kind.__name__ not in made:
        # from_pipe ends with `.to(dtype)`, a no-op cast here that logs a float32 warning per model;
        # a device-mapped pipeline refuses any `.to`: then the same components, registered directly.
        chatty = logging.getLogger("diffusers.models.modeling_utils")
        level = chatty.level
        chatty.setLevel(logging.ERROR)
        try:
            derived = kind.from_pipe(pipeline, **extra, dtype=pipeline.transformer.dtype)
        except ValueError:
            derived = kind(**pipeline.components, **extra)
        finally:
            chatty.setLevel(level)
        derived.set_progress_bar_config(**getattr(pipeline, "_progress_bar_config", {}))
        made[kind.__name__] = derived
    derived = made[kind.__name__]
    derived.scheduler = pipeline.scheduler
    return derived


def apply_loras(provider_id: str, pipeline: Any, loras: tuple[LoraFile, ...]) -> None:
    """This run's LoRAs, and only them: each file loaded once (adapter named by its hash), the
    wanted ones activated with their scales; none wanted: every adapter off, so one run's LoRA
    never reaches the next run's image. Called with the device held (the GPU queue)."""
    loaded = _LORAS.setdefault(pipeline, [])
    if not loras:
        if loaded:
            pipeline.disable_lora()
        return
    from diffusers.utils import USE_PEFT_BACKEND

    if not USE_PEFT_BACKEND:
        raise JobFailed(provider_id, "LoRAs need the peft package: pip install -r requirements.txt")
    wanted = {lora.adapter: lora for lora in loras}  # the same file twice: the last scale
    for adapter, lora in wanted.items():
        if adapter in loaded:
            continue
        while len(loaded) >= MAX_LOADED_LORAS:
            oldest = next(name for name in loaded if name not in wanted)
            pipeline.delete_adapters(oldest)
            loaded.remove(oldest)
        try:
            pipeline.load_lora_weights(lora.path, adapter_name=adapter)
        except OSError:  # diffusers' "Unable to load weights from checkpoint file for '<path>'"
            log.warning("LoRA %s could not be read", lora.path, exc_info=True)
            raise JobFailed(
                provider_id,
                f"the LoRA {lora.name!r} can't be read: the file is damaged or not a LoRA "
                "(.safetensors); choose another file",
            ) from None
        except (ValueError, KeyError, RuntimeError) as exc:
            detail = str(exc).replace(str(lora.path), lora.name)  # the server's path is nobody's business
            raise JobFailed(
                provider_id,
                f"the LoRA {lora.name!r} does not fit this model ({type(exc).__name__}: {detail})"[:400],
            ) from None
        loaded.append(adapter)
    pipeline.enable_lora()
    pipeline.set_adapters(list(wanted), [lora.scale for lora in wanted.values()])


MASK_BLUR_PX = 4  # A1111's default mask blur: the seam between kept and redrawn pixels is soft


def paste_outside_mask(generated: Image.Image, original: Image.Image, mask: Image.Image) -> Image.Image:
    """The inpainted image with the input's own pixels outside the mask (white: redrawn), its edge
    blurred by MASK_BLUR_PX as A1111 does. diffusers' inpainting pipeline blends latents only, and
    the VAE's round trip changes every pixel a little: without this the kept area comes back changed."""
    soft = mask.convert("L").filter(ImageFilter.GaussianBlur(MASK_BLUR_PX))
    return Image.composite(generated.convert("RGB"), original.convert("RGB"), soft)
