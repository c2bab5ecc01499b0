"""The MCP tools (`generate`, `compare`, `sweep`, `providers`) for agents, on the official MCP SDK.

Each tool is the API endpoint of the same name (`ui.api`): the same arguments, schemas, checks and
runs. What an agent gets back is made for an agent: the images as MCP image content (the PNG
itself, its metadata intact) and one JSON text with the seed, the provider, what was sent, the
notes and a URL for each image; never a server path or a Python repr. A failure is a tool error
whose text says what happened and what to do.

Served at `/gradio_api/mcp/` (streamable HTTP, stateless) beside the page (`ui.serve`). A call
builds no Gradio session: it runs the endpoint function directly.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import jsonschema
from gradio import route_utils
from mcp import types
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.types import Receive, Scope, Send

from zimage_ui.runs import cache_ttl_s
from zimage_ui.ui.compare_tab import compare
from zimage_ui.ui.endpoints import API_ARGS, INPUT_ARGS, REQUIRED, ApiArg
from zimage_ui.ui.generate_tab import generate, providers
from zimage_ui.ui.sweep_tab import sweep

MCP_PATH = "/gradio_api/mcp"
NAME = "zimage-ui"
INSTRUCTIONS = (
    "Make images with Z-Image-Turbo (the local model or a hosted API). Call `providers` first to "
    "see which providers are usable here; every tool needs only a prompt. Give a seed to get the "
    "same image again; the seed used is always returned."
)
# Uploads need Gradio's upload route: agents give an input image as an https URL instead.
TOOL_INPUTS = tuple(arg for arg in INPUT_ARGS if arg.name != "image")
Content = types.TextContent | types.ImageContent
Notify = Callable[[float, float | None, str | None], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class ToolAnswer:
    """What a tool call made: images to send as content, and the JSON record that describes them."""

    images: list[Path]
    record: dict[str, Any]


class McpProgress:
    """Stands in for `gr.Progress` under an MCP call: each update becomes a progress notification
    when the client asked for them (a progress token), and is dropped otherwise."""

    def __init__(self, notify: Notify | None) -> None:
        self._notify = notify
        self._loop = asyncio.get_running_loop()
        self._sending: set[asyncio.Task[None]] = set()  # held until sent (the loop keeps weak refs)

    def __call__(self, progress: Any, desc: str | None = None, total: Any = None, unit: str = "") -> None:
        if self._notify is None:
            return
        done, whole = progress if isinstance(progress, tuple) else (float(progress), 1.0)
        notify, sending = self._notify, self._sending

        def send() -> None:
            task = self._loop.create_task(notify(float(done), float(whole or 0) or None, desc))
            sending.add(task)
            task.add_done_callback(sending.discard)

        self._loop.call_soon_threadsafe(send)  # progress may come from the pipeline's thread


def tool_schema(args: Sequence[ApiArg]) -> dict[str, Any]:
    """A tool's input schema: each argument's own schema (type, range, help); the prompt required."""
    return {
        "type": "object",
        "properties": {arg.name: arg.json_schema() for arg in args},
        "required": [arg.name for arg in args if arg.default is REQUIRED],
        "additionalProperties": False,
    }


@dataclass(frozen=True)
class Tool:
    """One tool: the API endpoint it runs, how its answer becomes a `ToolAnswer`, and what an
    agent is told it does and returns."""

    endpoint: Callable[..., Awaitable[Any]]
    answer: Callable[[Any], ToolAnswer]
    does: str
    returns: str
    progress: bool = False

    @property
    def name(self) -> str:
        return self.endpoint.__name__

    def args(self) -> list[ApiArg]:
        return [*getattr(self.endpoint, API_ARGS), *TOOL_INPUTS]

    def definition(self) -> types.Tool:
        return types.Tool(
            name=self.name,
            description=f"{self.does} Returns {self.returns}",
            inputSchema=tool_schema(self.args()),
        )

    async def call(self, arguments: dict[str, Any], progress: McpProgress) -> ToolAnswer:
        values = {arg.name: arguments.get(arg.name, arg.default) for arg in self.args()}
        values = {name: None if value is REQUIRED else value for name, value in values.items()}
        values["image"] = None
        extra = {"progress": progress} if self.progress else {}
        return self.answer(await self.endpoint(**values, request=None, **extra))


def _generated(answer: Any) -> ToolAnswer:
    items, seed, status, sent = answer
    record = {
        "provider": (sent or {}).get("provider"),
        "seed": int(seed),
        "status": status,
        "sent": (sent or {}).get("sent"),
        "notes": (sent or {}).get("notes", []),
        "images": [{"caption": caption} for _path, caption in items],
    }
    return ToolAnswer([Path(path) for path, _caption in items], record)


def _compared(answer: Any) -> ToolAnswer:
    items, report = answer
    record = {**report, "images": [{"caption": caption} for _path, caption in items]}
    return ToolAnswer([Path(path) for path, _caption in items], record)


def _swept(answer: Any) -> ToolAnswer:
    status, grid, cells = answer
    record = {"status": status, "images": [{"caption": "the grid"}], "cells": [c for _p, c in cells]}
    return ToolAnswer([Path(grid)] if grid else [], record)


TOOLS = {
    tool.name: tool
    for tool in (
        Tool(
            generate,
            _generated,
            "Make images of a prompt with Z-Image-Turbo on one provider (the local model or a hosted "
            "API; blank: the default). Only the prompt is required; give a seed to make the same "
            "image again.",
            "each image as PNG image content, then one JSON text: provider, seed (the seed used), "
            "status, sent (what the provider was sent), notes, and each image's caption and url.",
            progress=True,
        ),
        Tool(
            compare,
            _compared,
            "Run one prompt and one seed on 2 to 6 sides at once (providers, or one provider at "
            "different settings) to compare them. A failed side is reported in its place; the "
            "others still finish.",
            "each side's first image as PNG image content, then one JSON text: the seed and, per "
            "side, its provider, status, what was sent and notes; and each image's caption and url.",
        ),
        Tool(
            sweep,
            _swept,
            "Make an X/Y grid of images on one provider: one cell per combination of the axes' "
            "values (e.g. x_kind steps, x_values '4, 8'; y_kind seed, y_values '1, 2').",
            "the grid as PNG image content (its metadata records the axes and the first cell's "
            "settings), then one JSON text: status, each cell's caption, and the grid's url.",
        ),
    )
}


class ImageLinks:
    """Unguessable links to the tools' images, kept as long as the run files (the cache TTL) and
    at most `capacity` at once: a URL names a random token, never a server path, and the file is
    served from its run folder as it is (no copy)."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._capacity = capacity
        self._links: OrderedDict[str, tuple[Path, float]] = OrderedDict()
        self._lock = threading.Lock()

    def link(self, path: Path) -> str:
        token = secrets.token_urlsafe(18)
        with self._lock:
            self._links[token] = (path, time.monotonic() + cache_ttl_s())
            while len(self._links) > self._capacity:
                self._links.popitem(last=False)
        return token

    def find(self, token: str) -> Path | None:
        with self._lock:
            found = self._links.get(token)
            if found and found[1] < time.monotonic():
                del self._links[token]
                found = None
        return found[0] if found and found[0].is_file() else None


IMAGES_ROUTE = "/images/"


async def answer_content(answer: ToolAnswer, root_url: str, links: ImageLinks) -> list[Content]:
    """The images as image content (the PNG bytes as made), then the record as one JSON text with
    a URL for each image (`ImageLinks`)."""

    def read() -> list[str]:
        return [base64.b64encode(path.read_bytes()).decode("ascii") for path in answer.images]

    data = await asyncio.to_thread(read)
    urls = [f"{root_url}{MCP_PATH}{IMAGES_ROUTE}{links.link(path)}.png" for path in answer.images]
    record = dict(answer.record)
    record["images"] = [{**entry, "url": url} for entry, url in zip(record["images"], urls, strict=True)]
    images: list[Content] = [types.ImageContent(type="image", data=d, mimeType="image/png") for d in data]
    return [*images, types.TextContent(type="text", text=json.dumps(record))]


def _refusal(exc: jsonschema.ValidationError) -> str:
    where = ".".join(str(part) for part in exc.absolute_path)
    return f"{where}: {exc.message}" if where else exc.message


def _error(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], isError=True)


def build_server(links: ImageLinks) -> Server:
    server: Server = Server(NAME, instructions=INSTRUCTIONS)
    providers_tool = types.Tool(
        name="providers",
        description=(providers.__doc__ or "").split("\n\n", 1)[0].strip()
        + " Returns one JSON text: a list with each provider's id, usable, reason, sizes, steps "
        "and max_images.",
        inputSchema={"type": "object", "properties": {}, "additionalProperties": False},
    )

    @server.list_tools()
    async def list_tools() -> list[types.Tool]:
        return [*(tool.definition() for tool in TOOLS.values()), providers_tool]

    @server.call_tool(validate_input=False)  # checked below, naming the argument
    async def call_tool(name: str, arguments: dict[str, Any]) -> types.CallToolResult:
        if name == "providers":
            listed = await asyncio.to_thread(providers)
            return types.CallToolResult(content=[types.TextContent(type="text", text=json.dumps(listed))])
        tool = TOOLS.get(name)
        if tool is None:
            return _error(f"There is no tool {name!r}: the tools are {', '.join([*TOOLS, 'providers'])}.")
        problems = sorted(
            jsonschema.Draft202012Validator(tool_schema(tool.args())).iter_errors(arguments),
            key=lambda e: list(e.absolute_path),
        )
        if problems:
            return _error("Check the arguments: " + "; ".join(_refusal(p) for p in problems))
        context = server.request_context
        try:
            answer = await tool.call(arguments, McpProgress(_notifier(context)))
        except gr.Error as exc:
            return _error(f"{exc.title}: {exc.message}" if exc.title else str(exc.message))
        content = await answer_content(answer, _root_url(context.request), links)
        return types.CallToolResult(content=content)

    return server


def _notifier(context: Any) -> Notify | None:
    token = context.meta.progressToken if context.meta else None
    if token is None:
        return None

    async def notify(done: float, total: float | None, message: str | None) -> None:
        with contextlib.suppress(Exception):  # a client gone mid-run: the run's own end handles it
            await context.session.send_progress_notification(token, done, total, message)

    return notify


def _root_url(request: Request | None) -> str:
    if request is None:
        return ""
    return route_utils.get_root_url(request=request, route_path=request.url.path, root_path=None)


class McpEndpoint:
    """The ASGI app mounted at `MCP_PATH`: the MCP transport, and the tools' image links under
    `images/`. `running()` must be entered for it to answer."""

    def __init__(self) -> None:
        self._links = ImageLinks()
        server = build_server(self._links)
        self._manager = StreamableHTTPSessionManager(app=server, json_response=False, stateless=True)
        self._app = Starlette(
            routes=[
                Route(IMAGES_ROUTE + "{token}.png", self._image),
                Mount("/", app=self._transport),
            ]
        )

    async def _image(self, request: Request) -> Response:
        path = self._links.find(request.path_params["token"])
        if path is None:
            return PlainTextResponse("No such image here (links last as long as the run files).", 404)
        return FileResponse(path, media_type="image/png")

    async def _transport(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._manager.handle_request(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with self._manager.run():
            yield
