"""Any OpenAI-style images endpoint: SGLang diffusion and vLLM-Omni serve Z-Image-Turbo this way.

One synchronous `POST {base}/images/generations`; the images come back inline (`b64_json`) or as
links. The body holds the OpenAI fields every engine reads (`model`, `prompt`, `n`, `size` as
"WxH", `response_format`, `output_format`) and the extra fields both engines document for
diffusion models, each sent explicitly so neither engine's own defaults apply (SGLang runs 9
steps for Z-Image unless told, vLLM-Omni 50):

| field                 | SGLang diffusion 0.5 | vLLM-Omni 0.30 |
|-----------------------|----------------------|----------------|
| `num_inference_steps` | yes                  | yes            |
| `guidance_scale`      | yes                  | yes            |
| `seed`                | yes                  | yes            |
| `negative_prompt`     | yes                  | yes            |
| `flow_shift`          | yes                  | yes            |
| `width` / `height`    | yes (besides `size`) | no: `size` only, so never sent |
| `response_format=url` | a relative link      | refused: `b64_json` is asked   |

Endpoints are configured by environment: `ZIMAGE_OPENAI_BASE_URL` (e.g. `http://gpu-box:30000/v1`)
gives the provider `openai-compatible`; `ZIMAGE_OPENAI_<NAME>_BASE_URL` gives `openai-<name>`, so
two engines or two GPUs can be compared side by side. Each reads its own `..._API_KEY` (optional:
a self-hosted engine often has none) and `..._MODEL` (default the Z-Image-Turbo hub id, which
vLLM-Omni checks against the model it serves).

Text-to-image only: SGLang declares Z-Image text-to-image, and vLLM-Omni's `/v1/images/edits`
serves edit models (Qwen-Image-Edit), not Z-Image-Turbo's text-to-image pipeline; an input image
is refused with that reason rather than sent where it would fail or be dropped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urljoin, urlsplit

from PIL import Image

from zimage_ui import env
from zimage_ui.net.http import HttpEngine
from zimage_ui.net.session import HttpSession
from zimage_ui.params import GenerationParams
from zimage_ui.providers.base import (
    FULL_PIPELINE,
    PreparedRequest,
    ProgressFn,
    SentValues,
    refuse_inputs,
)
from zimage_ui.providers.hosted.base import (
    JobDone,
    SelfHostedProvider,
    gather_all,
    image_items,
    images_sent,
    steps_sent,
    unsupported_notes,
)

DEFAULT_MODEL = "Tongyi-MAI/Z-Image-Turbo"
ENV_PREFIX = "ZIMAGE_OPENAI"
DEFAULT_ID = "openai-compatible"
SUBMIT_READ_TIMEOUT_S = 300.0  # synchronous: a busy engine answers when the images are made
MAX_ANSWER_BYTES = 96 * 2**20  # up to 4 images inline as base64
CAPABILITIES = FULL_PIPELINE
# the fields beyond OpenAI's images API that SGLang and vLLM-Omni read for diffusion models
EXTRA_FIELDS = ("num_inference_steps", "guidance_scale", "flow_shift", "seed", "negative_prompt")
_NAMED = re.compile(rf"{ENV_PREFIX}_([A-Z0-9]+(?:_[A-Z0-9]+)*)_BASE_URL")


def endpoint_names(environ: Mapping[str, str]) -> list[str]:
    """The configured endpoints' names, "" for `ZIMAGE_OPENAI_BASE_URL`, then the named ones
    sorted (`ZIMAGE_OPENAI_<NAME>_BASE_URL`); a set but empty variable counts as not set."""
    names = [""] if environ.get(f"{ENV_PREFIX}_BASE_URL", "").strip() else []
    for variable, value in sorted(environ.items()):
        match = _NAMED.fullmatch(variable)
        if match and value.strip() and match[1] not in {"API", "MODEL"}:
            names.append(match[1].lower())
    return names


def openai_body(params: GenerationParams, model: str) -> tuple[dict[str, Any], SentValues, list[str]]:
    """Params (seed concrete) -> body: `size` "WxH" and every diffusion field sent explicitly."""
    assert params.seed is not None
    width, height = params.width, params.height  # both engines take any multiple of 16 params allow
    steps, step_notes = steps_sent(params, CAPABILITIES, "the engine")
    body: dict[str, Any] = {
        "model": model,
        "prompt": params.prompt,
        "n": images_sent(params, CAPABILITIES),
        "size": f"{width}x{height}",
        "response_format": "b64_json",
        "output_format": params.output_format,
        "num_inference_steps": steps,
        "guidance_scale": params.guidance_scale,
        "flow_shift": params.shift,
        "seed": params.seed,
    }
    negative_sent = bool(params.negative_prompt.strip()) and params.guidance_scale > 0
    if params.negative_prompt.strip():
        body["negative_prompt"] = params.negative_prompt
    notes = [
        *step_notes,
        *unsupported_notes(params, CAPABILITIES, "the engine"),
    ]
    if params.negative_prompt.strip() and not negative_sent:
        notes.append("negative prompt sent, but with guidance 0 the engine does not use it")
    sent = SentValues(
        width=width,
        height=height,
        steps=steps,
        seed=params.seed,
        shift=params.shift,
        guidance=params.guidance_scale,
        negative_sent=negative_sent,
        extra_fields=tuple((name, body[name]) for name in EXTRA_FIELDS if name in body),
    )
    return body, sent, notes


def engine_seconds(data: Any) -> float | None:
    """SGLang reports `inference_time_s`; other engines report nothing."""
    value = data.get("inference_time_s") if isinstance(data, dict) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class OpenAICompatibleProvider(SelfHostedProvider):
    """One configured OpenAI-style endpoint (`name` "" is `ZIMAGE_OPENAI_*`)."""

    capabilities = CAPABILITIES
    submit_path = "/images/generations"
    address_hint = "the engine's /v1 URL (e.g. http://gpu-box:30000/v1)"
    error_paths = ("error.message", "message", "detail", "error")

    def __init__(self, http: HttpEngine | None = None, *, name: str = "") -> None:
        super().__init__(http)
        self.name = name
        self.prefix = f"{ENV_PREFIX}_{name.upper()}" if name else ENV_PREFIX
        self.id = f"openai-{name.replace('_', '-')}" if name else DEFAULT_ID
        self.label = f"OpenAI-compatible endpoint{f' {name}' if name else ''} (SGLang, vLLM-Omni)"
        self.key_names = (f"{self.prefix}_API_KEY",)

    @property
    def base_url_var(self) -> str:
        return f"{self.prefix}_BASE_URL"

    @property
    def model_var(self) -> str:
        return f"{self.prefix}_MODEL"

    def model(self) -> str:
        return env.raw(self.model_var) or DEFAULT_MODEL

    def map_params(self, params: GenerationParams) -> tuple[dict[str, Any], SentValues, list[str]]:
        refuse_inputs(params, self.capabilities, self.id)  # this endpoint's own name in the message
        return openai_body(params, self.model())

    async def execute(self, session: HttpSession, prepared: PreparedRequest, progress: ProgressFn) -> JobDone:
        data = await session.submit(
            prepared.url, prepared.body, read_timeout_s=SUBMIT_READ_TIMEOUT_S, max_bytes=MAX_ANSWER_BYTES
        )
        session.job_started()  # OpenAI's images API has no cancel call: Stop ends the wait

        async def load(kind: str, value: str) -> Image.Image:
            if kind == "b64_json":
                return await session.image_from_b64(value)
            link = urljoin(prepared.url, value)  # SGLang: a link relative to the engine
            own = urlsplit(link).netloc == urlsplit(prepared.url).netloc  # its own route, behind its key
            return await session.download_image(link, with_key=own)

        images = await gather_all(load(kind, value) for kind, value in image_items(data, ("b64_json", "url")))
        notes = []
        if len(images) != prepared.body["n"]:
            notes.append(f"the engine returned {len(images)} images for n={prepared.body['n']}")
        return JobDone(images=images, run_s=engine_seconds(data), notes=notes)


def configured_providers(environ: Mapping[str, str] | None = None) -> tuple[OpenAICompatibleProvider, ...]:
    """One provider per configured endpoint; `openai-compatible` itself always (it says how to set it)."""
    names = endpoint_names(env.snapshot() if environ is None else environ)
    return tuple(OpenAICompatibleProvider(name=name) for name in dict.fromkeys(["", *names]))
