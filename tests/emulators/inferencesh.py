"""inference.sh: `/apps/run`, `/tasks/{id}`, `/tasks/{id}/cancel` (PROVIDERS.md, seed 001).

Statuses follow the current table: a finished task answers 9 UPLOADING (no output yet) once
before 10 COMPLETED, so a client that takes 9 for done gets no image.
"""

from __future__ import annotations

from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.emulators.base import INT, NUMBER, BadRequest, Emulator, Job, Spec, check_fields, json_response

APP = "infsh/z-image-turbo"
ENVELOPE = {"app": Spec(str, choices=(APP,)), "input": Spec(dict), "setup": Spec(dict), "webhook": Spec(str)}
INPUT = {
    "prompt": Spec(str),
    "width": Spec(INT, low=64, high=2048, multiple=8),
    "height": Spec(INT, low=64, high=2048, multiple=8),
    "seed": Spec(INT, low=-1, high=2_147_483_647),
    "steps": Spec(INT, low=1, high=50),
    "shift": Spec(NUMBER, low=1.0, high=10.0),
    "loras": Spec(list),
}
# seed 001: "each config specifies adapter_name, lora_url, and lora_multiplier" (PROVIDERS.md: the
# SDK's schema also has `lora_file`, the uri of an uploaded file, instead of `lora_url`)
LORA = {
    "adapter_name": Spec(str),
    "lora_url": Spec(str),
    "lora_file": Spec(str),
    "lora_multiplier": Spec(NUMBER),
}


def lora_problems(loras: Any) -> list[str]:
    if not isinstance(loras, list):
        return []  # check_fields said so already
    problems: list[str] = []
    for index, config in enumerate(loras):
        found = check_fields(config, LORA, required=["adapter_name"])
        if isinstance(config, dict) and ("lora_url" in config) == ("lora_file" in config):
            found.append("give one of lora_url or lora_file")
        url = config.get("lora_url") if isinstance(config, dict) else None
        if isinstance(url, str) and not url.lower().startswith(("https://", "http://")):
            found.append("lora_url must be a URL")
        problems += [f"loras[{index}]: {problem}" for problem in found]
    return problems


NAMES = {
    1: "received",
    7: "running",
    9: "uploading",
    10: "completed",
    11: "failed",
    12: "cancelled",
    13: "rejected",
}


class InferenceShEmulator(Emulator):
    provider_id = "inferencesh"
    prefix = ""
    keys: ClassVar[dict[str, str]] = {"INFERENCE_API_KEY": "emu-inferencesh-key"}
    refuses_credit_by_status = False  # a REJECTED task (13) instead

    def routes(self) -> list[Route]:
        return [
            Route("/apps/run", self.run, methods=["POST"]),
            Route("/tasks/{task_id}", self.get_task, methods=["GET"]),
            Route("/tasks/{task_id}/cancel", self.cancel, methods=["POST"]),
        ]

    def error(self, status: int, message: str) -> Response:
        problem = {"type": "about:blank", "title": message, "status": status, "detail": message}
        return json_response(problem, status, headers={"content-type": "application/problem+json"})

    async def run(self, request: Request) -> Response:
        body = await self.admit(request, submit=True)
        problems = check_fields(body, ENVELOPE, required=["app", "input"])
        problems += check_fields(body.get("input"), INPUT, required=["prompt"]) if not problems else []
        problems += lora_problems(body["input"].get("loras")) if not problems else []
        if problems:
            raise BadRequest(problems)
        given = body["input"]
        job = self.new_job(
            given.get("width", 1024), given.get("height", 1024), given.get("seed", 1), prefix="task"
        )
        if self.behaviour.no_credit:  # admission refused: the task is written already ended
            return self._answer(job, 13, error="insufficient balance: add a payment method")
        return self._answer(job, 1)

    async def get_task(self, request: Request) -> Response:
        await self.admit(request, submit=False)
        job = self.job(request.path_params["task_id"])
        phase = self.phase(job)
        if phase == "done" and job.stage == 0:
            job.stage = 1
            return self._answer(job, 9)
        status = {"running": 7, "done": 10, "failed": 11, "cancelled": 12}[phase]
        return self._answer(job, status, error=self.behaviour.fail_reason if phase == "failed" else "")

    async def cancel(self, request: Request) -> Response:
        await self.admit(request, submit=False)
        job = self.job(request.path_params["task_id"])
        job.cancelled = True
        return self._answer(job, 12)

    def _answer(self, job: Job, status: int, error: str = "") -> Response:
        task: dict[str, Any] = {
            "id": job.id,
            "status": NAMES[status] if self.behaviour.status_names else status,
            "output": self._output(job) if status == 10 else None,
            "error": error,
            "session_id": None,
        }
        if self.behaviour.legacy_envelope:
            return json_response({"success": True, "data": task, "error": None})
        return json_response({"data": task, "messages": []})

    def _output(self, job: Job) -> dict[str, Any]:
        url = job.images[0]
        if self.behaviour.image_as_string:
            return {"image": url}
        name = url.rsplit("/", 1)[1]
        file = {"uri": url, "path": f"/outputs/{name}", "content_type": "image/png", "filename": name}
        return {"image": file}
