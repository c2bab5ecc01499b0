"""What every emulator shares: a real loopback HTTP server, request log, behaviour switches, a CDN.

Each emulator is a Starlette app served by uvicorn in a background thread. It checks what it
receives against the documented fields, answers in the API's own shapes, records every request,
and serves real PNG bytes from `/cdn/...` on the same server (standing in for the asset host,
which must never receive the provider's Authorization header).
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import socket
import struct
import threading
import time
import zlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import quote

import uvicorn
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.hostile import echo, stacked_gzip, zero_gzip


@dataclass
class Behaviour:
    """Switches a test flips to make the emulator misbehave in one documented way."""

    polls_before_done: int = 0  # status checks answering "running" before the job is done
    job_delay_s: float = 0.0  # a job also takes at least this long
    rate_limit_once: bool = False  # the first submit gets 429 with Retry-After
    retry_after: str = "1"
    server_error_once: bool = False  # the first status check gets 502
    fail_reason: str | None = None  # the job ends failed with this reason
    malformed: bool = False  # the submit answers 200 with broken JSON
    expired_image: bool = False  # the image URL answers 404
    non_image: bool = False  # the image URL answers 200 with HTML
    reject_key: bool = False  # every API call answers 401
    no_credit: bool = False  # the submit is refused for lack of credit
    # provider-specific shapes
    b64: bool = False  # AIML: images inline as b64_json
    legacy_envelope: bool = False  # inference.sh: {"success", "data", "error"}
    status_names: bool = False  # inference.sh: statuses as names, not numbers
    image_as_string: bool = False  # inference.sh: output.image as a plain URL
    failed_spelling: str = "failure"  # Scenario: "failure" (SDK) or "failed"
    sync_wait_s: float = 0.2  # RunPod: how long /runsync holds before answering IN_QUEUE
    # faults a shared instance must survive (tests/test_fault_matrix.py)
    hang_submit: bool = False  # the submit never answers (held for HANG_S)
    rate_limit_always: bool = False  # every submit gets 429 (Retry-After only when retry_after is set)
    server_error_always: bool = False  # every call answers 500
    stuck: bool = False  # the job never finishes
    hang_cancel: bool = False  # a cancel call never answers
    wrong_shape: bool = False  # JSON of the wrong shape: lists where objects are documented
    huge_json: bool = False  # the submit streams HUGE_JSON_BYTES of JSON with no length
    huge_image: bool = False  # the image streams past the 50 MB cap
    image_bomb: bool = False  # the image declares 20000x20000 pixels
    oversized_image: bool = False  # the image declares 6000x6000: far more pixels than asked
    echo_key: bool = False  # with reject_key: the error repeats the Authorization header
    echo_pieces: bool = False  # with reject_key: the error repeats pieces of it (tests/hostile.echo)
    gzip_bomb: bool = False  # the submit answers 1 KB per MB of zeros: 512 MB, Content-Encoding gzip
    stacked_gzip: bool = False  # the submit answers a few KB gzipped twice (gzip, gzip)
    image_gzip_bomb: bool = False  # the image answers a gzip bomb


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Job:
    id: str
    width: int
    height: int
    seed: int
    count: int
    created: float = field(default_factory=time.monotonic)
    polls: int = 0
    cancelled: bool = False
    images: list[str] = field(default_factory=list)  # URLs on the emulator's CDN
    stage: int = 0  # provider-specific (inference.sh: UPLOADING served once)


@dataclass(frozen=True)
class Spec:
    """One documented field: its JSON type and limits."""

    kind: type | tuple[type, ...]
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] | None = None
    max_len: int | None = None
    multiple: int | None = None


def check_fields(body: Any, spec: dict[str, Spec], required: Iterable[str] = ()) -> list[str]:
    """Problems with `body` against `spec`: missing, unknown, wrong type, out of range."""
    if not isinstance(body, dict):
        return ["the body must be a JSON object"]
    problems = [f"{name} is required" for name in required if name not in body]
    for name, value in body.items():
        rule = spec.get(name)
        if rule is None:
            problems.append(f"{name} is not a known field")
            continue
        kinds = rule.kind if isinstance(rule.kind, tuple) else (rule.kind,)
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            problems.append(f"{name} must be {'/'.join(k.__name__ for k in kinds)}")
            continue
        if rule.choices is not None and value not in rule.choices:
            problems.append(f"{name} must be one of {', '.join(map(str, rule.choices))}")
        if rule.low is not None and value < rule.low:
            problems.append(f"{name} must be >= {rule.low:g}")
        if rule.high is not None and value > rule.high:
            problems.append(f"{name} must be <= {rule.high:g}")
        if rule.max_len is not None and len(value) > rule.max_len:
            problems.append(f"{name} must be at most {rule.max_len} characters")
        if rule.multiple and value % rule.multiple:
            problems.append(f"{name} must be a multiple of {rule.multiple}")
    return problems


INT = (int,)
NUMBER = (int, float)


def png_bytes(width: int, height: int, seed: int) -> bytes:
    """A real PNG of the requested size; its colour follows the seed."""
    colour = ((seed * 97) % 256, (seed * 57) % 256, (seed * 31) % 256)
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


class UnknownJob(KeyError):
    pass


class Refusal(Exception):
    """Ends a request early with an answer already made (401, 402, 429, ...)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


class BadRequest(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


HANG_S = 60.0  # "never answers": far past any deadline a test sets, yet bounded
HUGE_JSON_BYTES = 150 * 2**20
HUGE_IMAGE_BYTES = 60 * 2**20
WRONG_SHAPE = {"job": ["?"], "data": ["?"], "id": ["?"], "status": ["?"], "output": ["?"], "results": "?"}


def declared_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares `width` x `height` (its pixel data is cut short)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    pixels = zlib.compress(b"\0" * (width + 1) * 4)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


async def _huge_json() -> AsyncIterator[bytes]:
    yield b'{"data": ['
    block = b'{"url": "' + b"x" * 65_000 + b'"},'
    for _ in range(HUGE_JSON_BYTES // len(block)):
        yield block
    yield b'{"url": "x"}]}'


async def _huge_image() -> AsyncIterator[bytes]:
    yield b"\x89PNG\r\n\x1a\n"
    block = b"\0" * 2**20
    for _ in range(HUGE_IMAGE_BYTES // len(block)):
        yield block


class Emulator:
    """Base class: subclasses set the ids below and add their routes in `routes()`."""

    provider_id: ClassVar[str]
    prefix: ClassVar[str]  # the API root's path on this server
    keys: ClassVar[dict[str, str]]  # env var -> the value this emulator accepts
    refuses_credit_by_status: ClassVar[bool] = True  # no credit -> HTTP 402 (else the API's own way)
    synchronous: ClassVar[bool] = False  # the submit's answer is the result (no later status call)

    def __init__(self) -> None:
        self.behaviour = Behaviour()
        self.requests: list[Recorded] = []
        self.jobs: dict[str, Job] = {}
        self._images: dict[str, bytes] = {}
        self._ids = itertools.count(1)
        self._fired: set[str] = set()
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        routes = [Route("/cdn/{name}", self._cdn, methods=["GET"]), *self.routes()]
        self.app = Starlette(
            routes=routes,
            exception_handlers={
                BadRequest: self._bad_request,
                UnknownJob: self._unknown_job,
                Refusal: self._refusal,
            },
        )

    # -- for subclasses ----------------------------------------------------------------------

    def routes(self) -> list[Route]:
        raise NotImplementedError

    def error(self, status: int, message: str) -> Response:
        """An error in the API's own shape."""
        raise NotImplementedError

    def authorized(self, request: Request) -> bool:
        expected = f"Bearer {next(iter(self.keys.values()))}"
        return request.headers.get("authorization") == expected

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, port: int = 0) -> Emulator:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True, name=self.provider_id
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"the {self.provider_id} emulator did not start")
            time.sleep(0.01)
        return self

    def signal_stop(self) -> None:
        if self._server:
            self._server.should_exit = True

    def stop(self) -> None:
        self.signal_stop()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> Emulator:
        return self.start() if not self.port else self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.root + self.prefix

    def env(self) -> dict[str, str]:
        """The variables that point the app at this emulator, with keys it accepts."""
        return {f"ZIMAGE_{self.provider_id.upper()}_BASE_URL": self.base_url, **self.keys}

    def reset(self) -> None:
        self.behaviour = Behaviour()
        self.requests.clear()
        self.jobs.clear()
        self._images.clear()
        self._fired.clear()

    # -- what tests read ---------------------------------------------------------------------

    def calls(self, method: str | None = None, contains: str = "") -> list[Recorded]:
        return [r for r in self.requests if (method is None or r.method == method) and contains in r.path]

    @property
    def downloads(self) -> list[Recorded]:
        return self.calls("GET", "/cdn/")

    # -- helpers for routes ------------------------------------------------------------------

    async def receive(self, request: Request) -> Any:
        """Record the request and return its JSON body (None when it has none)."""
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        self.requests.append(Recorded(request.method, request.url.path, dict(request.headers), body))
        if isinstance(body, str):
            raise BadRequest(["the body is not valid JSON"])
        return body

    def once(self, name: str) -> bool:
        """True the first time a named one-off misbehaviour fires."""
        if name in self._fired:
            return False
        self._fired.add(name)
        return True

    async def admit(self, request: Request, *, submit: bool) -> Any:
        """Record the request, refuse it where the behaviour says so, and return its JSON body."""
        body = await self.receive(request)
        b = self.behaviour
        if (submit and b.hang_submit) or (b.hang_cancel and request.url.path.endswith("cancel")):
            await self.hang()
        refused = self.gate(request, submit=submit)
        if refused:
            raise Refusal(refused)
        return body

    async def hang(self) -> None:
        """Never answer in any test's time: hold for HANG_S, then end the request with a 504. It must
        not go on to its real work then: a job made a minute later would land in another test."""
        await asyncio.sleep(HANG_S)
        raise Refusal(self.error(504, "gave up waiting"))

    def gate(self, request: Request, *, submit: bool) -> Response | None:
        """The answers every call may get before its real work: 401, 402, 429, 502, broken JSON."""
        b = self.behaviour
        if b.reject_key and b.echo_key:
            auth = request.headers.get("authorization", "")
            return self.error(401, f"invalid credentials: {auth} (sent as {quote(auth, safe='')})")
        if b.reject_key and b.echo_pieces:
            return self.error(401, echo(request.headers.get("authorization", "")))
        if b.reject_key or not self.authorized(request):
            return self.error(401, "invalid API key")
        if b.server_error_always:
            return self.error(500, "internal error")
        if submit and b.rate_limit_always:
            response = self.error(429, "rate limit exceeded")
            if b.retry_after:
                response.headers["Retry-After"] = b.retry_after
            return response
        if submit and b.huge_json:
            return StreamingResponse(_huge_json(), media_type="application/json")
        if submit and (b.gzip_bomb or b.stacked_gzip):
            body, coding = (zero_gzip(), "gzip") if b.gzip_bomb else (stacked_gzip(), "gzip, gzip")
            return Response(body, media_type="application/json", headers={"Content-Encoding": coding})
        if b.wrong_shape and (self.synchronous or not submit):
            return json_response(WRONG_SHAPE)
        if submit and b.no_credit and self.refuses_credit_by_status:
            return self.error(402, "insufficient credits")
        if submit and b.rate_limit_once and self.once("429"):
            response = self.error(429, "rate limit exceeded")
            response.headers["Retry-After"] = b.retry_after
            return response
        if not submit and b.server_error_once and self.once("502"):
            return self.error(502, "bad gateway")
        if submit and b.malformed:
            return Response('{"data": [ {"url": ', status_code=200, media_type="application/json")
        return None

    def new_job(self, width: int, height: int, seed: int, count: int = 1, prefix: str = "job") -> Job:
        job = Job(f"{prefix}-{next(self._ids)}", width, height, seed, count)
        for index in range(count):
            name = f"{job.id}-{index}.png"
            self._images[name] = png_bytes(width, height, seed + index)
            job.images.append(f"{self.root}/cdn/{name}")
        self.jobs[job.id] = job
        return job

    def job(self, job_id: str) -> Job:
        if job_id not in self.jobs:
            raise UnknownJob(job_id)
        return self.jobs[job_id]

    def phase(self, job: Job, *, poll: bool = True) -> str:
        """ "running", "done", "failed" or "cancelled": polls and delay both count."""
        if poll:
            job.polls += 1
        if job.cancelled:
            return "cancelled"
        b = self.behaviour
        waiting_for_polls = job.polls < b.polls_before_done + (1 if poll else 0)
        if b.stuck or waiting_for_polls or time.monotonic() - job.created < b.job_delay_s:
            return "running"
        return "failed" if b.fail_reason else "done"

    async def hold(self, job: Job, seconds: float) -> str:
        """Wait up to `seconds` for a job to finish (synchronous APIs); its phase at the end."""
        deadline = time.monotonic() + seconds
        while (phase := self.phase(job, poll=False)) == "running" and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return phase

    async def _cdn(self, request: Request) -> Response:
        await self.receive(request)
        if "authorization" in request.headers:
            return Response("the asset host must not receive an Authorization header", status_code=400)
        return self.asset_response(request.path_params["name"])

    def asset_response(self, name: str) -> Response:
        """An image as served, with the image faults the behaviour asks for (404, HTML, huge, bomb)."""
        if self.behaviour.expired_image:
            return Response(
                "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>", 404
            )
        if self.behaviour.non_image:
            return Response("<html><body>not an image</body></html>", media_type="text/html")
        if self.behaviour.huge_image:
            return StreamingResponse(_huge_image(), media_type="image/png")
        if self.behaviour.image_gzip_bomb:
            return Response(zero_gzip(), media_type="image/png", headers={"Content-Encoding": "gzip"})
        if self.behaviour.image_bomb:
            return Response(declared_png(20_000, 20_000), media_type="image/png")
        if self.behaviour.oversized_image:
            return Response(declared_png(6_000, 6_000), media_type="image/png")
        data = self._images.get(name)
        if data is None:
            return Response("not found", status_code=404)
        return Response(data, media_type="image/png")

    async def _bad_request(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, BadRequest)
        return self.error(400, str(exc))

    async def _refusal(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Refusal)
        return exc.response

    async def _unknown_job(self, request: Request, exc: Exception) -> Response:
        return self.error(404, f"no such job: {exc}")


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(data, status_code=status, headers=headers)
