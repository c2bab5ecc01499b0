"""HF Inference Providers as huggingface_hub 2.4 calls them: the Hub's provider mapping and the
router's fal-ai route.

- `GET /api/models/{id}?expand=inferenceProviderMapping` (the Hub, `HF_ENDPOINT`): the mapping,
  a dict provider -> {status, providerId, task} (the shape `ModelInfo` reads); `mapping` below
  sets which providers serve the model, first one first (what `provider="auto"` picks).
- `POST /fal-ai/{providerId}` (the router, `ZIMAGE_HUGGINGFACE_BASE_URL`): fal-ai's synchronous
  text-to-image body (`FalAITextToImageTask`: the size as `image_size`), answered with
  `{"images": [{"url", "width", "height", "content_type"}], "seed", ...}`; the client then GETs
  the url (served from `/cdn/`, which refuses an Authorization header).
- `POST /wavespeed/api/v3/{providerId}` answers `{"data": {"id", "urls": {"get": ...}}}`; the
  client polls `GET /wavespeed/api/v3/predictions/{id}/result` (the router's prefix kept, as
  `WavespeedAITask.get_response` builds it for `router.huggingface.co`) until `completed`, then
  GETs `outputs[0]`. The body is what the helper sends (flat, width and height as they are).

Set `mapping` to change who serves the model; `wavespeed()` gives the mapping with wavespeed.
"""

from __future__ import annotations

from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.emulators.base import INT, NUMBER, BadRequest, Emulator, Spec, check_fields, json_response

MODEL = "Tongyi-MAI/Z-Image-Turbo"
FAL_ID = "fal-ai/z-image/turbo"
WAVESPEED_ID = "wavespeed-ai/z-image/turbo"
TOKEN = "hf_emulatortoken0123456789"
FAL_BODY = {
    "prompt": Spec(str, max_len=10_000),
    "negative_prompt": Spec(str),
    "image_size": Spec(dict),
    "num_inference_steps": Spec(INT, low=1, high=8),
    "guidance_scale": Spec(NUMBER, low=0, high=20),
    "seed": Spec(INT, low=0, high=2**32 - 1),
    "num_images": Spec(INT, low=1, high=4),
    "enable_safety_checker": Spec(bool),
    "output_format": Spec(str, choices=("png", "jpeg", "webp")),
}
SIDE = Spec(INT, low=256, high=2048, multiple=16)
SIZE = {"width": SIDE, "height": SIDE}
WAVESPEED_BODY = {  # what WavespeedAITextToImageTask sends: our arguments, flat
    "prompt": Spec(str, max_len=10_000),
    "negative_prompt": Spec(str),
    "width": SIDE,
    "height": SIDE,
    "num_inference_steps": Spec(INT, low=1, high=8),
    "guidance_scale": Spec(NUMBER, low=0, high=20),
    "seed": Spec(INT, low=-1, high=2_147_483_647),
}


class HuggingFaceEmulator(Emulator):
    provider_id = "huggingface"
    prefix = ""
    keys: ClassVar[dict[str, str]] = {"HF_TOKEN": TOKEN}
    synchronous = True

    def __init__(self) -> None:
        super().__init__()
        self.mapping: dict[str, dict[str, Any]] = {}
        self.hub_status: int | None = None  # the Hub's model API answers this error status
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.hub_status = None
        self.mapping = {"fal-ai": {"status": "live", "providerId": FAL_ID, "task": "text-to-image"}}

    def env(self) -> dict[str, str]:
        return {"ZIMAGE_HUGGINGFACE_BASE_URL": self.root, "HF_ENDPOINT": self.root, **self.keys}

    def routes(self) -> list[Route]:
        return [
            Route("/api/models/{namespace}/{name}", self.model_info, methods=["GET"]),
            Route("/fal-ai/{model_path:path}", self.fal, methods=["POST"]),
            Route("/wavespeed/api/v3/predictions/{job_id}/result", self.wavespeed_result, methods=["GET"]),
            Route("/wavespeed/api/v3/{model_path:path}", self.wavespeed_submit, methods=["POST"]),
        ]

    def serve_with_wavespeed(self) -> None:
        self.mapping = {
            "wavespeed": {"status": "live", "providerId": WAVESPEED_ID, "task": "text-to-image"},
            **self.mapping,
        }

    def error(self, status: int, message: str) -> Response:
        # the router's error shape; huggingface_hub reads `error` into server_message
        return json_response({"error": message}, status)

    async def model_info(self, request: Request) -> Response:
        await self.receive(request)
        model = f"{request.path_params['namespace']}/{request.path_params['name']}"
        if self.hub_status is not None:
            return self.error(self.hub_status, "the Hub is having a moment")
        if model != MODEL:
            return self.error(404, "Repository not found")
        if request.query_params.get("expand") != "inferenceProviderMapping":
            return self.error(400, "expected expand=inferenceProviderMapping")
        return json_response({"_id": "emulated", "id": MODEL, "inferenceProviderMapping": self.mapping})

    async def fal(self, request: Request) -> Response:
        body = await self.admit(request, submit=True)
        if request.path_params["model_path"] != FAL_ID:
            raise BadRequest([f"unknown fal-ai model {request.path_params['model_path']}"])
        problems = check_fields(body, FAL_BODY, required=["prompt"])
        size = body.get("image_size", {"width": 1024, "height": 768}) if not problems else {}
        if not problems:
            problems += [f"image_size.{p}" for p in check_fields(size, SIZE, required=["width", "height"])]
        if problems:
            raise BadRequest(problems)
        job = self.new_job(size["width"], size["height"], body.get("seed", 42), prefix="fal")
        if await self.hold(job, 30.0) != "done":
            return self.error(500, self.behaviour.fail_reason or "generation failed")
        images = [
            {"url": url, "width": job.width, "height": job.height, "content_type": "image/png"}
            for url in job.images
        ]
        return json_response(
            {
                "images": images,
                "seed": job.seed,
                "timings": {"inference": 0.01},
                "has_nsfw_concepts": [False],
                "prompt": body["prompt"],
            }
        )

    async def wavespeed_submit(self, request: Request) -> Response:
        body = await self.admit(request, submit=True)
        if request.path_params["model_path"] != WAVESPEED_ID:
            raise BadRequest([f"unknown wavespeed model {request.path_params['model_path']}"])
        problems = check_fields(body, WAVESPEED_BODY, required=["prompt"])
        if problems:
            raise BadRequest(problems)
        job = self.new_job(
            body.get("width", 1024), body.get("height", 1024), body.get("seed", 42), prefix="ws"
        )
        result = f"https://api.wavespeed.ai/api/v3/predictions/{job.id}/result"
        return json_response(
            {
                "code": 200,
                "message": "success",
                "data": {"id": job.id, "status": "created", "urls": {"get": result}},
            }
        )

    async def wavespeed_result(self, request: Request) -> Response:
        await self.admit(request, submit=False)
        job = self.job(request.path_params["job_id"])
        phase = self.phase(job)
        status = {"running": "processing", "done": "completed"}.get(phase, "failed")
        data: dict[str, Any] = {"id": job.id, "status": status, "outputs": [], "error": ""}
        if status == "completed":
            data["outputs"] = list(job.images)
        if status == "failed":
            data["error"] = self.behaviour.fail_reason or "failed"
        return json_response({"code": 200, "message": "success", "data": data})
