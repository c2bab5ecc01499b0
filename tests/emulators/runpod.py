"""RunPod public endpoint: `/runsync`, `/run`, `/status/{id}`, `/cancel/{id}` (seed 004).

`/runsync` holds the request for `behaviour.sync_wait_s` (90 s on the real service) and then
answers IN_QUEUE/IN_PROGRESS with the job id, which must then be polled.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.emulators.base import INT, NUMBER, BadRequest, Emulator, Job, Spec, check_fields, json_response

SIZES = ("512*512", "768*768", "1024*1024", "1280*1280", "1024*768", "768*1024", "1280*720", "720*1280")
ENVELOPE = {"input": Spec(dict), "webhook": Spec(str), "policy": Spec(dict)}
INPUT = {
    "prompt": Spec(str),
    "size": Spec(str, choices=SIZES),
    "seed": Spec(INT, low=-1, high=2_147_483_647),
    "output_format": Spec(str, choices=("png", "jpeg", "webp")),
    "enable_safety_checker": Spec(bool),
    "image": Spec(str),
    "strength": Spec(NUMBER, low=0.0, high=1.0),
}
COST_PER_IMAGE = 0.005
STATUS = {"done": "COMPLETED", "failed": "FAILED", "cancelled": "CANCELLED"}


class RunPodEmulator(Emulator):
    provider_id = "runpod"
    prefix = "/v2/z-image-turbo"
    keys: ClassVar[dict[str, str]] = {"RUNPOD_API_KEY": "emu-runpod-key"}

    def routes(self) -> list[Route]:
        return [
            Route(f"{self.prefix}/runsync", self.runsync, methods=["POST"]),
            Route(f"{self.prefix}/run", self.run, methods=["POST"]),
            Route(f"{self.prefix}/status/{{job_id}}", self.status, methods=["GET"]),
            Route(f"{self.prefix}/cancel/{{job_id}}", self.cancel, methods=["POST"]),
        ]

    def error(self, status: int, message: str) -> Response:
        if status == 401:  # the real service answers 401 without a JSON body
            return Response("Unauthorized", status_code=401, media_type="text/plain")
        return json_response({"error": message}, status)

    async def _create(self, request: Request) -> Job:
        body = await self.admit(request, submit=True)
        problems = check_fields(body, ENVELOPE, required=["input"])
        problems += check_fields(body.get("input"), INPUT, required=["prompt"]) if not problems else []
        if problems:
            raise BadRequest(problems)
        given = body["input"]
        image = given.get("image")
        if isinstance(image, str) and not image.lower().startswith(("https://", "http://")):
            raise BadRequest(["image must be the URL of an input image"])  # seed 004: "URL of an input image"
        width, height = (int(side) for side in given.get("size", "1024*1024").split("*"))
        return self.new_job(width, height, given.get("seed", 1), prefix="sync")

    async def runsync(self, request: Request) -> Response:
        job = await self._create(request)
        if self.behaviour.wrong_shape:  # answer "still running", so the odd shape comes on a status call
            return json_response({"id": job.id, "status": "IN_QUEUE"})
        phase = await self.hold(job, self.behaviour.sync_wait_s)
        return json_response(self._job(job, phase))

    async def run(self, request: Request) -> Response:
        job = await self._create(request)
        return json_response({"id": job.id, "status": "IN_QUEUE"})

    async def status(self, request: Request) -> Response:
        await self.admit(request, submit=False)
        job = self.job(request.path_params["job_id"])
        return json_response(self._job(job, self.phase(job)))

    async def cancel(self, request: Request) -> Response:
        await self.admit(request, submit=False)
        job = self.job(request.path_params["job_id"])
        job.cancelled = True
        return json_response({"id": job.id, "status": "CANCELLED"})

    def _job(self, job: Job, phase: str) -> dict[str, Any]:
        status = STATUS.get(phase) or ("IN_PROGRESS" if job.polls > 1 else "IN_QUEUE")
        answer: dict[str, Any] = {"id": job.id, "status": status}
        elapsed_ms = int((time.monotonic() - job.created) * 1000)
        if phase == "done":
            answer |= {
                "delayTime": 12,
                "executionTime": max(elapsed_ms - 12, 1),
                "output": {"image_url": job.images[0], "cost": COST_PER_IMAGE},
            }
        if phase == "failed":
            answer |= {"delayTime": 12, "executionTime": elapsed_ms, "error": self.behaviour.fail_reason}
        return answer
