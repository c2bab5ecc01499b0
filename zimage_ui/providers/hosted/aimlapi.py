"""AIML API: one synchronous `POST /images/generations`; images come back as URLs or base64."""

from __future__ import annotations

from typing import Any

from PIL import Image

from zimage_ui.net.session import HttpSession
from zimage_ui.params import GenerationParams
from zimage_ui.providers.base import (
    Capabilities,
    Cost,
    PreparedRequest,
    ProgressFn,
    SentValues,
    refuse_inputs,
)
from zimage_ui.providers.hosted.base import (
    HostedProvider,
    JobDone,
    fit_size,
    gather_all,
    image_items,
    images_sent,
    seed_at_least_one,
    size_note,
    steps_sent,
    unsupported_notes,
)

LABEL = "AIML API"
MODEL = "alibaba/z-image-turbo"
SIZE_LOW, SIZE_HIGH, SIZE_MULTIPLE = 512, 2048, 32
SUBMIT_READ_TIMEOUT_S = 180.0  # synchronous: the answer comes when the image is made
MAX_ANSWER_BYTES = 64 * 2**20  # up to 4 images inline as base64
CAPABILITIES = Capabilities(
    size_rule="multiples of 32, 512..2048",
    steps_range=(1, 8),
    max_images=4,
    cost_reporting=True,
)


def aiml_body(params: GenerationParams) -> tuple[dict[str, Any], SentValues, list[str]]:
    """Params (seed concrete) -> body. Prompt expansion is sent explicitly: the API's default is on."""
    assert params.seed is not None
    refuse_inputs(params, CAPABILITIES, "aimlapi")  # an input image, a mask or a LoRA: never dropped
    width, height = fit_size(
        params.width, params.height, low=SIZE_LOW, high=SIZE_HIGH, multiple=SIZE_MULTIPLE
    )
    seed, seed_notes = seed_at_least_one(params.seed, LABEL)
    steps, step_notes = steps_sent(params, CAPABILITIES, LABEL)
    body = {
        "model": MODEL,
        "prompt": params.prompt,
        "image_size": {"width": width, "height": height},
        "num_inference_steps": steps,
        "seed": seed,
        "num_images": images_sent(params, CAPABILITIES),
        "output_format": params.output_format,
        "enable_prompt_expansion": params.options.prompt_expansion,
        "enable_safety_checker": params.options.safety_checker,
    }
    notes = [
        *size_note(
            (params.width, params.height), (width, height), "AIML accepts multiples of 32 in 512..2048"
        ),
        *seed_notes,
        *step_notes,
        *unsupported_notes(params, CAPABILITIES, LABEL),
        f"prompt expansion {'on' if params.options.prompt_expansion else 'off'} "
        "(enable_prompt_expansion; AIML's own default is on)",
    ]
    return body, SentValues(width=width, height=height, steps=steps, seed=seed), notes


def tokens_cost(data: Any) -> Cost | None:
    usage = ((data.get("meta") or {}).get("usage") or {}) if isinstance(data, dict) else {}
    tokens = usage.get("tokens_used")
    return Cost(float(tokens), "tokens") if isinstance(tokens, (int, float)) else None


class AimlApiProvider(HostedProvider):
    id = "aimlapi"
    label = "AIML API (alibaba/z-image-turbo)"
    capabilities = CAPABILITIES
    key_names = ("AIML_API_KEY",)
    default_base_url = "https://api.aimlapi.com/v1"
    submit_path = "/images/generations"
    error_paths = ("message", "error.message", "error")

    map_params = staticmethod(aiml_body)

    async def execute(self, session: HttpSession, prepared: PreparedRequest, progress: ProgressFn) -> JobDone:
        data = await session.submit(
            prepared.url, prepared.body, read_timeout_s=SUBMIT_READ_TIMEOUT_S, max_bytes=MAX_ANSWER_BYTES
        )

        async def load(kind: str, value: str) -> Image.Image:
            return (
                await session.image_from_b64(value)
                if kind == "b64_json"
                else await session.download_image(value)
            )

        images = await gather_all(load(kind, value) for kind, value in image_items(data))
        return JobDone(images=images, cost=tokens_cost(data))
