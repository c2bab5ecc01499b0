"""Scenario: custom-model job, `/jobs/{id}` polling, `/assets/{id}` look-up (PROVIDERS.md, seed 000).

Uploads: images under 6 MB as one JSON data URL (`POST /v1/assets`); larger ones the way the SDK's
`uploads` resource goes (`POST /v1/uploads` -> part URLs, a PUT of each part to its signed URL,
`POST /v1/uploads/{id}/action {"action": "complete"}`, `GET /v1/uploads/{id}` until imported).
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from PIL import Image
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.emulators.base import (
    INT,
    NUMBER,
    BadRequest,
    Emulator,
    Job,
    Recorded,
    Spec,
    check_fields,
    json_response,
)

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
    "controlnetConditioningScale": Spec(NUMBER, low=0, high=1),  # PROVIDERS.md: 0..1
}
LORA_SCALES = (0, 2)  # PROVIDERS.md: lorasScale 0..2
CU_PER_IMAGE = 5
# PROVIDERS.md: `POST /v1/assets` JSON {"name", "image": "data:image/png;base64,..."}, images under 6 MB
ASSET = {"name": Spec(str), "image": Spec(str)}
MAX_ASSET_BYTES = 6 * 2**20
DATA_URL = re.compile(r"data:(image/[a-z+.-]+);base64,(.*)", re.DOTALL)
# The SDK's `uploads.create`: "Required for multipart upload": fileName, contentType, fileSize, kind, parts
UPLOAD = {
    "fileName": Spec(str),
    "contentType": Spec(str),
    "fileSize": Spec(INT, low=1),
    "kind": Spec(str, choices=("3d", "asset", "audio", "avatar", "image", "model", "text", "video")),
    "parts": Spec(INT, low=1, high=100),
}
MIN_PART_BYTES = 5 * 2**20  # S3: every part but the last has at least 5 MB
# Faults a test can switch on (`upload_fault`): each step of both upload flows fails its own way.
UPLOAD_FAULTS = ("assets_500", "create_500", "create_no_parts", "part_403", "complete_500", "import_failed")


@dataclass
class Upload:
    id: str
    name: str
    content_type: str
    size: int
    parts: int
    received: dict[int, bytes] = field(default_factory=dict)
    status: str = "pending"
    entity_id: str | None = None

    def json(self, root: str) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "id": self.id,
            "fileName": self.name,
            "contentType": self.content_type,
            "fileSize": self.size,
            "kind": "image",
            "source": "multipart",
            "status": self.status,
            "partsCount": self.parts,
        }
        if self.status == "pending":
            answer["parts"] = [
                {"number": n, "url": f"{root}/s3/{self.id}/{n}?X-Amz-Signature=emu", "expires": "soon"}
                for n in range(1, self.parts + 1)
            ]
        if self.entity_id:
            answer["entityId"] = self.entity_id
        if self.status == "failed":
            answer["errorMessage"] = "the file is not a supported image"
        return answer


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
            Route(f"{self.prefix}/uploads", self.create_upload, methods=["POST"]),
            Route(f"{self.prefix}/uploads/{{upload_id}}", self.get_upload, methods=["GET"]),
            Route(f"{self.prefix}/uploads/{{upload_id}}/action", self.upload_action, methods=["POST"]),
            Route("/s3/{upload_id}/{number:int}", self.put_part, methods=["PUT"]),
        ]

    upload_fault: str | None = None  # one of UPLOAD_FAULTS

    def __init__(self) -> None:
        super().__init__()
        self.multipart: dict[str, Upload] = {}  # multipart uploads by upload id
        self.uploads: dict[str, bytes] = {}  # uploaded assets' bytes by asset id

    def reset(self) -> None:
        super().reset()
        self.uploads.clear()
        self.multipart.clear()
        self.upload_fault = None

    def _new_asset(self, data: bytes) -> str:
        asset_id = f"asset_upload{len(self.uploads)}"
        self.uploads[asset_id] = data
        return asset_id

    async def create_upload(self, request: Request) -> Response:
        body = await self.admit(request, submit=False)
        problems = check_fields(body, UPLOAD, required=list(UPLOAD))
        if not problems and not body["contentType"].startswith("image/"):
            problems.append("contentType must be an image type")
        if not problems and (body["parts"] - 1) * MIN_PART_BYTES >= body["fileSize"]:
            problems.append(f"too many parts: every part but the last needs {MIN_PART_BYTES} bytes")
        if problems:
            raise BadRequest(problems)
        if self.upload_fault == "create_500":
            return self.error(500, "upload service down")
        upload = Upload(
            f"upload_{len(self.multipart) + 1}",
            body["fileName"],
            body["contentType"],
            body["fileSize"],
            body["parts"],
        )
        self.multipart[upload.id] = upload
        answer = upload.json(self.root)
        if self.upload_fault == "create_no_parts":
            answer.pop("parts")
        return json_response({"upload": answer})

    async def put_part(self, request: Request) -> Response:
        """The signed part URL (an S3 stand-in): no Authorization, a Content-Length, no chunking."""
        raw = await request.body()
        self.requests.append(Recorded(request.method, request.url.path, dict(request.headers), len(raw)))
        upload = self.multipart.get(request.path_params["upload_id"])
        number = request.path_params["number"]
        if "authorization" in request.headers:
            return Response("the upload URL is signed: no Authorization header", status_code=400)
        if request.headers.get("content-length") != str(len(raw)) or "transfer-encoding" in request.headers:
            return Response("a signed URL takes a Content-Length, not a chunked body", status_code=411)
        if request.query_params.get("X-Amz-Signature") != "emu":
            return Response("<Error><Code>SignatureDoesNotMatch</Code></Error>", status_code=403)
        if self.upload_fault == "part_403":
            return Response("<Error><Code>AccessDenied</Code></Error>", status_code=403)
        if upload is None or upload.status != "pending" or not 1 <= number <= upload.parts:
            return Response("<Error><Code>NoSuchUpload</Code></Error>", status_code=404)
        upload.received[number] = raw
        return Response(status_code=200, headers={"ETag": f'"{number}-{len(raw)}"'})

    async def upload_action(self, request: Request) -> Response:
        body = await self.admit(request, submit=False)
        upload = self.multipart.get(request.path_params["upload_id"])
        if upload is None:
            return self.error(404, "no such upload")
        problems = check_fields(body, {"action": Spec(str, choices=("complete",))}, required=["action"])
        missing = [n for n in range(1, upload.parts + 1) if n not in upload.received]
        if not problems and missing:
            problems.append(f"parts {missing} were not uploaded")
        sizes = [len(upload.received[n]) for n in range(1, upload.parts + 1)] if not problems else []
        if sizes and any(size < MIN_PART_BYTES for size in sizes[:-1]):
            problems.append(f"every part but the last must have at least {MIN_PART_BYTES} bytes")
        if sizes and sum(sizes) != upload.size:
            problems.append(f"the parts hold {sum(sizes)} bytes, not fileSize {upload.size}")
        if problems:
            raise BadRequest(problems)
        if self.upload_fault == "complete_500":
            return self.error(500, "could not complete the upload")
        upload.status = "validating"
        return json_response({"upload": upload.json(self.root)})

    async def get_upload(self, request: Request) -> Response:
        await self.admit(request, submit=False)
        upload = self.multipart.get(request.path_params["upload_id"])
        if upload is None:
            return self.error(404, "no such upload")
        if upload.status == "validating":
            data = b"".join(upload.received[n] for n in range(1, upload.parts + 1))
            try:
                with Image.open(io.BytesIO(data)) as probe:
                    probe.verify()
                    readable = Image.MIME.get(probe.format or "") == upload.content_type
            except Exception:
                readable = False
            if readable and self.upload_fault != "import_failed":
                upload.status, upload.entity_id = "imported", self._new_asset(data)
            else:
                upload.status = "failed"
        return json_response({"upload": upload.json(self.root)})

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
        if self.upload_fault == "assets_500":
            return self.error(500, "asset service down")
        asset_id = self._new_asset(data)
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
        problems += self._control_problems(body) + self._lora_problems(body) if not problems else []
        if problems:
            raise BadRequest(problems)
        job = self.new_job(
            body.get("width", 1024), body.get("height", 1024), body.get("seed", 1), body.get("numOutputs", 4)
        )
        return json_response(
            {"job": self._job_json(job, "queued"), "creativeUnitsCost": CU_PER_IMAGE * job.count}
        )

    def _control_problems(self, body: dict[str, Any]) -> list[str]:
        """controlImage: assetId[] (seed 000), each one uploaded first."""
        control = body.get("controlImage")
        if control is None:
            return []
        if not control or not all(isinstance(item, str) for item in control):
            return ["controlImage must be a non-empty list of asset ids"]
        return [
            f"controlImage {item!r} is not an asset id: upload it first"
            for item in control
            if item not in self.uploads
        ]

    @staticmethod
    def _lora_problems(body: dict[str, Any]) -> list[str]:
        """loras: model[] (LoRA model ids); lorasScale: number[], one per LoRA, 0..2."""
        loras, scales = body.get("loras"), body.get("lorasScale")
        problems: list[str] = []
        if loras is not None and not all(
            isinstance(item, str) and item.startswith("model_") for item in loras
        ):
            problems.append("loras must be a list of LoRA model ids (model_...)")
        if scales is not None:
            low, high = LORA_SCALES
            if not all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and low <= x <= high for x in scales
            ):
                problems.append(f"lorasScale must be a list of numbers in {low}..{high}")
            if loras is None or len(scales) != len(loras):
                problems.append("lorasScale must have one scale per LoRA in loras")
        return problems

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
