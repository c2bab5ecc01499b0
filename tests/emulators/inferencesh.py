"""inference.sh: `/apps/run`, `/tasks/{id}`, `/tasks/{id}/cancel` (PROVIDERS.md, seed 001).

Statuses follow the current table: a finished task answers 9 UPLOADING (no output yet) once
before 10 COMPLETED, so a client that takes 9 for done gets no image.

Files (a local LoRA): `POST /files` as the SDK's `upload_file` sends it, then a raw PUT of the bytes
to the answer's `data[0].upload_url` (a signed URL: no Authorization, a Content-Length, the declared
content type); the `uri` it answered is what the task input may name as `lora_file`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, ClassVar

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


# The SDK's `upload_file`: {"files": [{"uri": "", "filename", "content_type", "path", "size", "public"}]}
FILE = {
    "uri": Spec(str, choices=("",)),
    "filename": Spec(str),
    "content_type": Spec(str),
    "path": Spec((str, type(None))),
    "size": Spec(INT, low=0),
    "public": Spec((bool, type(None))),
}
FILES_FAULTS = ("files_500", "no_upload_url", "put_403", "refused")


@dataclass
class StoredFile:
    id: str
    filename: str
    content_type: str
    size: int
    uri: str
    received: int | None = None  # bytes that arrived by PUT
    sha256: str | None = None


def lora_problems(loras: Any, files: dict[str, StoredFile] | None = None) -> list[str]:
    if not isinstance(loras, list):
        return []  # check_fields said so already
    by_uri = {file.uri: file for file in (files or {}).values()}
    problems: list[str] = []
    for index, config in enumerate(loras):
        found = check_fields(config, LORA, required=["adapter_name"])
        if isinstance(config, dict) and ("lora_url" in config) == ("lora_file" in config):
            found.append("give one of lora_url or lora_file")
        url = config.get("lora_url") if isinstance(config, dict) else None
        if isinstance(url, str) and not url.lower().startswith(("https://", "http://")):
            found.append("lora_url must be a URL")
        uri = config.get("lora_file") if isinstance(config, dict) else None
        stored = by_uri.get(uri) if isinstance(uri, str) else None
        if isinstance(uri, str) and (stored is None or stored.received != stored.size):
            found.append("lora_file must be the uri of a file uploaded by POST /files and its PUT")
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
            Route("/files", self.create_files, methods=["POST"]),
            Route("/upload/{file_id}", self.put_file, methods=["PUT"]),
        ]

    files_fault: str | None = None  # one of FILES_FAULTS

    def __init__(self) -> None:
        super().__init__()
        self.files: dict[str, StoredFile] = {}  # files created by POST /files, by id

    def reset(self) -> None:
        super().reset()
        self.files.clear()
        self.files_fault = None

    async def create_files(self, request: Request) -> Response:
        body = await self.admit(request, submit=False)
        problems = check_fields(body, {"files": Spec(list)}, required=["files"])
        entries = body["files"] if not problems else []
        if not problems and len(entries) != 1:
            problems.append("files must hold one file")
        for entry in entries:
            problems += check_fields(entry, FILE, required=list(FILE))
        if problems:
            raise BadRequest(problems)
        if self.files_fault == "files_500":
            return self.error(500, "file service down")
        if self.files_fault == "refused":
            return json_response(
                {"success": False, "data": None, "error": {"message": "storage quota exceeded"}}
            )
        given = entries[0]
        file_id = f"file-{len(self.files) + 1}"
        uri = f"https://cloud.inference.test/files/{file_id}/{given['filename']}"
        stored = StoredFile(file_id, given["filename"], given["content_type"], given["size"], uri)
        self.files[file_id] = stored
        answer = {"id": file_id, "uri": uri, "filename": stored.filename, "content_type": stored.content_type}
        answer |= {
            "size": stored.size,
            "path": given["path"] or "",
            "upload_url": f"{self.root}/upload/{file_id}?sig=emu",
        }
        if self.files_fault == "no_upload_url":
            answer.pop("upload_url")
        return json_response({"data": [answer], "messages": []})

    async def put_file(self, request: Request) -> Response:
        """The signed upload URL: the bytes streamed in, hashed as they arrive (never all held)."""
        headers = dict(request.headers)
        digest = hashlib.sha256()
        size = 0
        async for chunk in request.stream():
            digest.update(chunk)
            size += len(chunk)
        self.requests.append(Recorded(request.method, request.url.path, headers, size))
        stored = self.files.get(request.path_params["file_id"])
        if "authorization" in headers:
            return Response("the upload URL is signed: no Authorization header", status_code=400)
        if headers.get("content-length") != str(size) or "transfer-encoding" in headers:
            return Response("a signed URL takes a Content-Length, not a chunked body", status_code=411)
        if request.query_params.get("sig") != "emu" or self.files_fault == "put_403":
            return Response("<Error><Code>AccessDenied</Code></Error>", status_code=403)
        if stored is None:
            return Response("<Error><Code>NoSuchKey</Code></Error>", status_code=404)
        if headers.get("content-type") != stored.content_type or size != stored.size:
            return Response("content type or size differs from what POST /files declared", status_code=400)
        stored.received, stored.sha256 = size, digest.hexdigest()
        return Response(status_code=200)

    def error(self, status: int, message: str) -> Response:
        problem = {"type": "about:blank", "title": message, "status": status, "detail": message}
        return json_response(problem, status, headers={"content-type": "application/problem+json"})

    async def run(self, request: Request) -> Response:
        body = await self.admit(request, submit=True)
        problems = check_fields(body, ENVELOPE, required=["app", "input"])
        problems += check_fields(body.get("input"), INPUT, required=["prompt"]) if not problems else []
        problems += lora_problems(body["input"].get("loras"), self.files) if not problems else []
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
