"""Scenario: custom-model job, `/jobs/{id}` polling, `/assets/{id}` look-up (PROVIDERS.md, seed 000)."""

from __future__ import annotations

import base64
import binascii
import re
from typing import ClassVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.emulators.base import INT, NUMBER, BadRequest, Emulator, Job, Spec, check_fields, json_response

BODY = {
    "prompt": Spec(str),
    "negativePrompt": Spec(str),
    "numOutputs": Spec(INT, low=1, high=8),
    "numInferenceSteps": Spec(INT, low=1, high=50),
    "width": Spec(INT, low=256, high=2048),
    "height": Spec(INT, low=256, high=2048),
    "seed": Spec(INT, low=1, high=2_147_483_647),
    "modelId": Spec(str),
    "loras": Spec(list),
    "lorasScale": Spec(list),
    "image": Spec(str),
    "strength": Spec(NUMBER, low=0, high=1),
    "controlImage": Spec(list),
    "controlnetConditioningScale": Spec(NUMBER),
}
CU_PER_IMAGE = 5
# PROVIDERS.md: `POST /v1/assets` JSON {"name", "image": "data:image/png;base64,..."}, images under 6 MB
ASSET = {"name": Spec(str), "image": Spec(str)}
MAX_ASSET_BYTES = 6 * 2**20
DATA_URL = re.compile(r"data:(image/[a-z+.-]+);base64,(.*)", re.DOTALL)


class ScenarioEmulator(Emulator):
    provider_id = "scenario"
    prefix = "/v1"
    keys: ClassVar[dict[str, str]] = {
        "SCENARIO_SDK_API_KEY": "emu-scenario-key",
        "SCENARIO_SDK_API_SECRET": "emu-scenario-secret",
    }

    def routes(self) -> list[Route]:
        return [
            Route(f"{self.prefix}/generate/custom/model_z-image-turbo", self.generate, methods=["POST"]),
            Route(f"{self.prefix}/jobs/{{job_id}}", self.get_job, methods=["GET"]),
            Route(f"{self.prefix}/assets/{{asset_id}}", self.get_asset, methods=["GET"]),
            Route(f"{self.prefix}/assets", self.upload_asset, methods=["POST"]),
        ]

    @property
    def uploads(self) -> dict[str, bytes]:
        """Uploaded assets' bytes by asset id."""
        if not hasattr(self, "_uploads"):
            self._uploads: dict[str, bytes] = {}
        return self._uploads

    def reset(self) -> None:
        super().reset()
        self.uploads.clear()

    async def upload_asset(self, request: Request) -> Response:
        body = await self.admit(request, submit=False)
        problems = check_fields(body, ASSET, required=["name", "image"])
        if problems:
            raise BadRequest(problems)
        found = DATA_URL.fullmatch(body["image"])
        if not found:
            raise BadRequest(["image must be a data URL: data:image/...;base64,..."])
        try:
            data = base64.b64decode(found.group(2), validate=True)
        except binascii.Error:
            raise BadRequest(["image is not valid base64"]) from None
        if len(data) >= MAX_ASSET_BYTES:
            raise BadRequest(["image must be under 6 MB: use /v1/uploads"])
        asset_id = f"asset_upload{len(self.uploads)}"
        self.uploads[asset_id] = data
        return json_response({"asset": {"id": asset_id, "url": "", "mimeType": found.group(1)}})

    def authorized(self, request: Request) -> bool:
        pair = f"{self.keys['SCENARIO_SDK_API_KEY']}:{self.keys['SCENARIO_SDK_API_SECRET']}"
        return request.headers.get("authorization") == "Basic " + base64.b64encode(pair.encode()).decode()

    def error(self, status: int, message: str) -> Response:
        return json_response({"message": message, "statusCode": status}, status)

    async def generate(self, request: Request) -> Response:
        body = await self.admit(request, submit=True)
        problems = check_fields(body, BODY, required=["prompt"])
        image = body.get("image")
        if not problems and image is not None and image not in self.uploads:
            problems.append(f"image {image!r} is not an asset id: upload the image first")
        if not problems and image is not None and body.get("controlImage"):
            problems.append("image cannot be used with controlImage")  # seed 000
        if problems:
            raise BadRequest(problems)
        job = self.new_job(
            body.get("width", 1024), body.get("height", 1024), body.get("seed", 1), body.get("numOutputs", 4)
        )
        return json_response(
            {"job": self._job_json(job, "queued"), "creativeUnitsCost": CU_PER_IMAGE * job.count}
        )

    async def get_job(self, request: Request) -> Response:
        await self.admit(request, submit=False)
        job = self.job(request.path_params["job_id"])
        phase = self.phase(job)
        status = {
            "running": "in-progress",
            "done": "success",
            "failed": self.behaviour.failed_spelling,
            "cancelled": "canceled",
        }[phase]
        return json_response({"job": self._job_json(job, status)})

    async def get_asset(self, request: Request) -> Response:
        await self.admit(request, submit=False)
        asset_id = request.path_params["asset_id"]
        job_id, _, index = asset_id.removeprefix("asset_").rpartition("_")
        job = self.job(job_id)
        url = job.images[int(index)]
        return json_response({"asset": {"id": asset_id, "url": url, "mimeType": "image/png"}})

    def _job_json(self, job: Job, status: str) -> dict:
        done = status == "success"
        metadata: dict = {"assetIds": [f"asset_{job.id}_{i}" for i in range(job.count)] if done else []}
        if status in {"failure", "failed"}:
            metadata["error"] = self.behaviour.fail_reason
        return {
            "jobId": job.id,
            "jobType": "custom",
            "status": status,
            "progress": 1.0 if done else min(job.polls / (self.behaviour.polls_before_done + 1), 0.99),
            "metadata": metadata,
            "billing": {"cuCost": CU_PER_IMAGE * job.count, "cuDiscount": 0},
            "statusHistory": [],
        }
