"""AIML API: synchronous `POST /v1/images/generations` (PROVIDERS.md, seed 002's OpenAPI schema)."""

from __future__ import annotations

import base64
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
    Spec,
    check_fields,
    json_response,
    png_bytes,
)

MODEL = "alibaba/z-image-turbo"
PRESETS = ("square_hd", "square", "portrait_4_3", "portrait_16_9", "landscape_4_3", "landscape_16_9")
BODY = {
    "model": Spec(str, choices=(MODEL,)),
    "prompt": Spec(str, max_len=4000),
    "image_size": Spec((dict, str)),
    "output_format": Spec(str, choices=("jpeg", "png", "webp")),
    "enable_prompt_expansion": Spec(bool),
    "num_inference_steps": Spec(INT, low=1, high=8),
    "seed": Spec(INT, low=1),
    "num_images": Spec(NUMBER, low=1, high=4),
    "enable_safety_checker": Spec(bool),
    "acceleration": Spec(str, choices=("none", "regular", "high")),
}
SIDE = Spec(INT, low=512, high=2048, multiple=32)
TOKENS_PER_IMAGE = 10500


class AimlApiEmulator(Emulator):
    provider_id = "aimlapi"
    prefix = "/v1"
    keys: ClassVar[dict[str, str]] = {"AIML_API_KEY": "emu-aimlapi-key"}
    synchronous = True

    def routes(self) -> list[Route]:
        return [Route(f"{self.prefix}/images/generations", self.generate, methods=["POST"])]

    def error(self, status: int, message: str) -> Response:
        body = {
            "message": message,
            "path": f"{self.prefix}/images/generations",
            "requestId": "req-emulator",
            "statusCode": status,
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        return json_response(body, status)

    async def generate(self, request: Request) -> Response:
        body = await self.admit(request, submit=True)
        problems = check_fields(body, BODY, required=["model", "prompt"])
        size = body.get("image_size", {"width": 1024, "height": 768}) if isinstance(body, dict) else None
        if isinstance(size, dict):
            problems += check_fields(size, {"width": SIDE, "height": SIDE})
        elif size not in PRESETS:
            problems.append(f"image_size must be an object or one of {', '.join(PRESETS)}")
        if problems:
            raise BadRequest(problems)
        width, height = (size["width"], size["height"]) if isinstance(size, dict) else (1024, 768)
        job = self.new_job(width, height, body.get("seed", 1), int(body.get("num_images", 1)))
        job.polls = self.behaviour.polls_before_done  # a synchronous API has no status checks to wait for
        phase = await self.hold(job, HANG_S if self.behaviour.stuck else self.behaviour.job_delay_s + 5)
        if phase == "failed":
            return self.error(400, self.behaviour.fail_reason or "generation failed")
        items = [self._item(job.images[i], width, height, job.seed + i) for i in range(job.count)]
        return json_response(
            {"data": items, "meta": {"usage": {"tokens_used": TOKENS_PER_IMAGE * job.count}}}
        )

    def _item(self, url: str, width: int, height: int, seed: int) -> dict[str, Any]:
        if self.behaviour.b64:
            return {"b64_json": base64.b64encode(png_bytes(width, height, seed)).decode()}
        return {"url": url}
