"""EvoLink: task creation at `/v1/images/generations`, polling at `/v1/tasks/{id}` (seed 003)."""

from __future__ import annotations

import re
import time
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.emulators.base import INT, BadRequest, Emulator, Job, Spec, check_fields, json_response

MODEL = "z-image-turbo"
RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "9:16", "16:9", "1:2", "2:1")
RATIO_SIZES = {"1:1": (1024, 1024)}
BODY = {
    "model": Spec(str, choices=(MODEL,)),
    "prompt": Spec(str, max_len=2000),
    "size": Spec(str),
    "seed": Spec(INT, low=1, high=2_147_483_647),
    "nsfw_check": Spec(bool),
    "callback_url": Spec(str, max_len=2048),
}
SIDE_LOW, SIDE_HIGH = 376, 1536


def size_of(size: str) -> tuple[int, int] | None:
    """(width, height) for a "WxH" inside 376..1536, or a ratio; None when invalid."""
    if size in RATIOS:
        return RATIO_SIZES.get(size, (1024, 1024))
    match = re.fullmatch(r"(\d+)x(\d+)", size)
    if not match:
        return None
    width, height = int(match[1]), int(match[2])
    if not (SIDE_LOW <= width <= SIDE_HIGH and SIDE_LOW <= height <= SIDE_HIGH):
        return None
    return width, height


class EvoLinkEmulator(Emulator):
    provider_id = "evolink"
    prefix = "/v1"
    keys: ClassVar[dict[str, str]] = {"EVOLINK_API_KEY": "emu-evolink-key"}

    def routes(self) -> list[Route]:
        return [
            Route(f"{self.prefix}/images/generations", self.generate, methods=["POST"]),
            Route(f"{self.prefix}/tasks/{{task_id}}", self.get_task, methods=["GET"]),
        ]

    def error(self, status: int, message: str) -> Response:
        code = {401: "unauthorized", 402: "insufficient_quota", 429: "rate_limit_exceeded"}.get(
            status, "invalid"
        )
        body = {"error": {"code": code, "message": message, "type": "invalid_request_error", "param": None}}
        return json_response(body, status)

    async def generate(self, request: Request) -> Response:
        body = await self.admit(request, submit=True)
        problems = check_fields(body, BODY, required=["model", "prompt"])
        size = size_of(body.get("size", "1:1")) if not problems else None
        if not problems and size is None:
            problems.append("size must be a ratio or WxH with sides 376..1536")
        if not problems and not body.get("callback_url", "https://").startswith("https://"):
            problems.append("callback_url must be https")
        if problems:
            raise BadRequest(problems)
        assert size is not None
        job = self.new_job(size[0], size[1], body.get("seed", 1), prefix="task-unified")
        return json_response(self._task(job, "pending"))

    async def get_task(self, request: Request) -> Response:
        await self.admit(request, submit=False)
        job = self.job(request.path_params["task_id"])
        phase = self.phase(job)
        status = {"running": "processing", "done": "completed", "failed": "failed"}[phase]
        return json_response(self._task(job, status))

    def _task(self, job: Job, status: str) -> dict[str, Any]:
        task: dict[str, Any] = {
            "created": int(time.time()),
            "id": job.id,
            "model": MODEL,
            "object": "image.generation.task",
            "progress": {"pending": 0, "completed": 100}.get(status, min(10 * job.polls, 90)),
            "status": status,
            "task_info": {"can_cancel": status in {"pending", "processing"}, "estimated_time": 10},
            "type": "image",
        }
        if status == "completed":
            task["results"] = list(job.images)
        if status == "failed":
            task["error"] = {"code": "generation_failed", "message": self.behaviour.fail_reason}
        return task
