"""An OpenAI-style images server as SGLang diffusion and vLLM-Omni run one (PROVIDERS.md).

`POST /v1/images/generations` answers synchronously with `{created, data: [...]}`. `engine`
picks whose rules apply: "sglang" takes `width`/`height` besides `size` and answers `url` links
(relative, `/v1/images/{id}/content`) unless `b64_json` is asked; "vllm-omni" has no
`width`/`height`, refuses `response_format=url` and a `model` other than the one it serves.
Errors come in OpenAI's shape `{"error": {"message", "type", "code"}}`; a failed generation is an
HTTP 500 with the reason. The image faults (expired, not an image, huge, bomb, oversized) make it
answer links to its own `/v1/images/{id}/content` whatever was asked, served with that fault.
"""

from __future__ import annotations

import base64
import re
import time
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.emulators.base import (
    HANG_S,
    INT,
    NUMBER,
    BadRequest,
    Emulator,
    Recorded,
    Spec,
    check_fields,
    json_response,
    png_bytes,
)

MODEL = "Tongyi-MAI/Z-Image-Turbo"
COMMON = {
    "model": Spec(str),
    "prompt": Spec(str, max_len=10_000),
    "n": Spec(INT, low=1, high=10),
    "size": Spec(str),
    "response_format": Spec(str, choices=("url", "b64_json")),
    "output_format": Spec(str, choices=("png", "jpeg", "webp")),
    "negative_prompt": Spec(str),
    "num_inference_steps": Spec(INT, low=1, high=200),
    "guidance_scale": Spec(NUMBER, low=0, high=50),
    "flow_shift": Spec(NUMBER, low=0, high=20),
    "seed": Spec(INT, low=0),
    "user": Spec(str),
}
ENGINE_FIELDS: dict[str, dict[str, Spec]] = {
    "sglang": {**COMMON, "width": Spec(INT, low=64), "height": Spec(INT, low=64)},
    "vllm-omni": {**COMMON, "lora": Spec(dict)},
}
DEFAULT_STEPS = {"sglang": 9, "vllm-omni": 50}  # what each engine runs when no steps are sent


class OpenAIImagesEmulator(Emulator):
    provider_id = "openai-compatible"
    prefix = "/v1"
    keys: ClassVar[dict[str, str]] = {"ZIMAGE_OPENAI_API_KEY": "emu-openai-key"}
    synchronous = True

    def __init__(self, engine: str = "sglang", variable: str = "ZIMAGE_OPENAI") -> None:
        self.engine = engine
        self.variable = variable  # the env prefix that points the app here
        self.require_key = True  # an engine started with --api-key; False: it takes anyone
        self.steps_run: list[int] = []  # the steps each request really ran (engine default if none)
        super().__init__()

    def routes(self) -> list[Route]:
        return [
            Route(f"{self.prefix}/images/generations", self.generate, methods=["POST"]),
            Route(f"{self.prefix}/images/{{image_id}}/content", self.content, methods=["GET"]),
        ]

    def env(self) -> dict[str, str]:
        return {f"{self.variable}_BASE_URL": self.base_url, f"{self.variable}_API_KEY": self.key}

    @property
    def key(self) -> str:
        return next(iter(self.keys.values()))

    def authorized(self, request: Request) -> bool:
        return not self.require_key or request.headers.get("authorization") == f"Bearer {self.key}"

    def reset(self) -> None:
        super().reset()
        self.require_key = True
        self.steps_run.clear()

    def error(self, status: int, message: str) -> Response:
        kind = {401: "AuthenticationError", 429: "RateLimitError"}.get(status, "BadRequestError")
        return json_response({"error": {"message": message, "type": kind, "code": status}}, status)

    async def generate(self, request: Request) -> Response:
        body = await self.admit(request, submit=True)
        problems = check_fields(body, ENGINE_FIELDS[self.engine], required=["prompt"])
        size = re.fullmatch(r"(\d+)x(\d+)", str(body.get("size", "1024x1024"))) if not problems else None
        if not problems and size is None:
            problems.append("size must be WxH")
        if not problems and self.engine == "vllm-omni":
            if body.get("model", MODEL) != MODEL:
                problems.append(f"The model `{body['model']}` does not exist.")
            if body.get("response_format") == "url":
                problems.append("response_format=url is not supported; use b64_json")
        if problems:
            raise BadRequest(problems)
        assert size is not None
        width = int(body.get("width", size[1])) if self.engine == "sglang" else int(size[1])
        height = int(body.get("height", size[2])) if self.engine == "sglang" else int(size[2])
        self.steps_run.append(int(body.get("num_inference_steps", DEFAULT_STEPS[self.engine])))
        job = self.new_job(width, height, int(body.get("seed", 1)), int(body.get("n", 1)), prefix="img")
        job.polls = self.behaviour.polls_before_done  # synchronous: no status checks to wait for
        phase = await self.hold(job, HANG_S if self.behaviour.stuck else self.behaviour.job_delay_s + 5)
        if phase == "failed":
            return self.error(500, self.behaviour.fail_reason or "generation failed")
        b = self.behaviour
        image_fault = any(
            (b.expired_image, b.non_image, b.huge_image, b.image_bomb, b.oversized_image, b.image_gzip_bomb)
        )
        asked = body.get("response_format", "url" if self.engine == "sglang" else "b64_json")
        as_url = asked == "url" or image_fault
        items = [self._item(job.id, i, width, height, job.seed + i, as_url) for i in range(job.count)]
        answer: dict[str, Any] = {"created": int(time.time()), "data": items}
        if self.engine == "sglang":
            answer |= {"id": job.id, "inference_time_s": 0.25, "peak_memory_mb": 20480.0}
        return json_response(answer)

    def _item(self, job_id: str, index: int, width: int, height: int, seed: int, as_url: bool) -> dict:
        if as_url:  # SGLang: a link relative to the server, served below
            return {"url": f"{self.prefix}/images/{job_id}-{index}/content", "revised_prompt": None}
        return {"b64_json": base64.b64encode(png_bytes(width, height, seed)).decode()}

    @property
    def downloads(self) -> list[Recorded]:
        return self.calls("GET", "/content")

    async def content(self, request: Request) -> Response:
        await self.receive(request)
        if not self.authorized(request):  # the engine's own route: behind its key
            return self.error(401, "invalid API key")
        return self.asset_response(f"{request.path_params['image_id']}.png")
