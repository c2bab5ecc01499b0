"""A ComfyUI server (PROVIDERS.md "Self-hosted engines"; comfyanonymous/ComfyUI server.py, execution.py).

`POST /prompt {prompt, client_id}` validates the graph as ComfyUI does (every node a known
class_type with inputs; links to existing nodes of the right output type; each input typed and in
range; a choice list for model files, samplers and schedulers) and answers `{prompt_id, number,
node_errors}`, or 400 `{error, node_errors}` in ComfyUI's shapes. Prompts run one at a time, as in
ComfyUI's single worker. The websocket `/ws?clientId=` gets `status`, `execution_start`,
`execution_cached`, `executing`, one `progress {value, max, prompt_id, node}` per KSampler step,
`executed`, `execution_success` or `execution_error` / `execution_interrupted`, then `executing
{node: null}` once the history entry is written. `/history/{prompt_id}` answers `{}` until then;
`/view?filename=&subfolder=&type=` serves PNGs whose colour follows the seed (image i: seed + i);
`POST /interrupt {prompt_id?}` stops the running prompt (another prompt id: left alone);
`POST /queue {delete: [...]}` drops queued ones. `GET /object_info/{class}` describes a node
class, its model files listed (none with `no_model_files`, a fresh install). A proxy in front
checks the Bearer key on every route, the websocket included (`require_key`); `websocket_down`
refuses the websocket.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket

from tests.emulators.base import (
    INT,
    NUMBER,
    Emulator,
    Job,
    Recorded,
    Refusal,
    Spec,
    check_fields,
    json_response,
    png_bytes,
)


@dataclass(frozen=True)
class Link:
    """An input taken from another node's output: `[node_id, slot]`, of this type."""

    kind: str


SAMPLERS = ("euler", "euler_ancestral", "dpmpp_2m", "res_multistep", "res_multistep_ancestral", "er_sde")
SCHEDULERS = ("simple", "normal", "karras", "exponential", "sgm_uniform", "beta")
SIDE_SD3 = Spec(INT, low=16, high=16384, multiple=16)
SIDE = Spec(INT, low=16, high=16384, multiple=8)
BATCH = Spec(INT, low=1, high=4096)
# class_type -> (inputs, output types); every input is required except those in OPTIONAL
NODES: dict[str, tuple[dict[str, Spec | Link], tuple[str, ...]]] = {
    "UNETLoader": (
        {
            "unet_name": Spec(str, choices=("z_image_turbo_bf16.safetensors",)),
            "weight_dtype": Spec(str, choices=("default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2")),
        },
        ("MODEL",),
    ),
    "CLIPLoader": (
        {
            "clip_name": Spec(str, choices=("qwen_3_4b.safetensors",)),
            "type": Spec(
                str, choices=("stable_diffusion", "sd3", "flux", "lumina2", "qwen_image", "hidream")
            ),
            "device": Spec(str, choices=("default", "cpu")),
        },
        ("CLIP",),
    ),
    "VAELoader": ({"vae_name": Spec(str, choices=("ae.safetensors",))}, ("VAE",)),
    "CLIPTextEncode": ({"text": Spec(str), "clip": Link("CLIP")}, ("CONDITIONING",)),
    "ConditioningZeroOut": ({"conditioning": Link("CONDITIONING")}, ("CONDITIONING",)),
    "ModelSamplingAuraFlow": ({"model": Link("MODEL"), "shift": Spec(NUMBER, low=0, high=100)}, ("MODEL",)),
    "EmptySD3LatentImage": ({"width": SIDE_SD3, "height": SIDE_SD3, "batch_size": BATCH}, ("LATENT",)),
    "EmptyLatentImage": ({"width": SIDE, "height": SIDE, "batch_size": BATCH}, ("LATENT",)),
    "KSampler": (
        {
            "model": Link("MODEL"),
            "seed": Spec(INT, low=0, high=2**64 - 1),
            "steps": Spec(INT, low=1, high=10000),
            "cfg": Spec(NUMBER, low=0, high=100),
            "sampler_name": Spec(str, choices=SAMPLERS),
            "scheduler": Spec(str, choices=SCHEDULERS),
            "positive": Link("CONDITIONING"),
            "negative": Link("CONDITIONING"),
            "latent_image": Link("LATENT"),
            "denoise": Spec(NUMBER, low=0, high=1),
        },
        ("LATENT",),
    ),
    "VAEDecode": ({"samples": Link("LATENT"), "vae": Link("VAE")}, ("IMAGE",)),
    "SaveImage": ({"images": Link("IMAGE"), "filename_prefix": Spec(str)}, ()),
}
OPTIONAL = {("CLIPLoader", "device")}
# the loader inputs that name a model file: a server without its model files lists none of them
FILE_INPUTS = {("UNETLoader", "unet_name"), ("CLIPLoader", "clip_name"), ("VAELoader", "vae_name")}


def choices_of(class_type: str, name: str, rule: Spec, no_files: bool) -> tuple[Any, ...] | None:
    return () if no_files and (class_type, name) in FILE_INPUTS else rule.choices


def object_info(class_type: str, no_files: bool) -> dict[str, Any]:
    """`GET /object_info/{class}` as ComfyUI 0.18 answers it: the class's inputs (a file or choice
    input as `[[choices], {}]`, a link as `[TYPE, {}]`), outputs and whether it is an output node;
    `{}` for a class it does not know."""
    if class_type not in NODES:
        return {}
    spec, outputs = NODES[class_type]
    required: dict[str, Any] = {}
    optional: dict[str, Any] = {}
    for name, rule in spec.items():
        if isinstance(rule, Link):
            entry: list[Any] = [rule.kind, {}]
        else:
            choices = choices_of(class_type, name, rule, no_files)
            entry = (
                [list(choices), {}]
                if choices is not None
                else ["STRING" if rule.kind is str else "FLOAT", {}]
            )
        (optional if (class_type, name) in OPTIONAL else required)[name] = entry
    return {
        class_type: {
            "input": {"required": required, "optional": optional},
            "output": list(outputs),
            "name": class_type,
            "display_name": class_type,
            "category": "loaders" if class_type.endswith("Loader") else "",
            "output_node": class_type in OUTPUT_NODES,
        }
    }


OUTPUT_NODES = ("SaveImage",)
TOP = {
    "prompt": Spec(dict),
    "client_id": Spec(str),
    "extra_data": Spec(dict),
    "number": Spec(NUMBER),
    "front": Spec(bool),
    "prompt_id": Spec(str),
}
NODE_KEYS = {"class_type", "inputs", "_meta", "is_changed"}


def problem(kind: str, message: str, details: str, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "message": message, "details": details, "extra_info": extra}


def node_problems(graph: dict[str, Any], node_id: str, no_files: bool = False) -> list[dict[str, Any]]:
    """ComfyUI's validate_inputs for one node, stricter: unknown inputs are refused too."""
    node = graph[node_id]
    spec, _ = NODES[node["class_type"]]
    found: list[dict[str, Any]] = []
    inputs = node["inputs"]
    for name, rule in spec.items():
        if name not in inputs:
            if (node["class_type"], name) not in OPTIONAL:
                found.append(
                    problem("required_input_missing", "Required input is missing", name, input_name=name)
                )
            continue
        value = inputs[name]
        if isinstance(rule, Link):
            if not (isinstance(value, list) and len(value) == 2 and isinstance(value[1], int)):
                found.append(
                    problem(
                        "bad_linked_input",
                        "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                        name,
                    )
                )
            elif str(value[0]) not in graph:
                found.append(
                    problem(
                        "bad_linked_input",
                        f"{name} links to node {value[0]}, which is not in the prompt",
                        name,
                    )
                )
            else:
                outputs = NODES[graph[str(value[0])]["class_type"]][1]
                got = outputs[value[1]] if 0 <= value[1] < len(outputs) else "nothing"
                if got != rule.kind:
                    found.append(
                        problem(
                            "return_type_mismatch",
                            "Return type mismatch between linked nodes",
                            f"{name}, received_type({got}) mismatch input_type({rule.kind})",
                        )
                    )
            continue
        choices = choices_of(node["class_type"], name, rule, no_files)
        if choices is not None and isinstance(value, str) and value not in choices:
            listed = str(list(choices))
            found.append(
                problem(
                    "value_not_in_list",
                    "Value not in list",
                    f"{name}: '{value}' not in {listed}",
                    input_name=name,
                    input_config=[list(choices)],
                    received_value=value,
                )
            )
            continue
        for said in check_fields({name: value}, {name: rule}):
            found.append(problem("invalid_input", said, f"{name}: {value!r}", input_name=name))
    for name in inputs:
        if name not in spec:
            found.append(problem("unknown_input", f"{name} is not a known field", name, input_name=name))
    return found


def validate(graph: Any, no_files: bool = False) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(error, node_errors) as ComfyUI's validate_prompt shapes them; (None, {}) when it is valid."""
    if not isinstance(graph, dict) or not graph:
        return problem("invalid_prompt", "the prompt must be an object of nodes", ""), {}
    for node_id, node in graph.items():
        if not isinstance(node, dict) or "class_type" not in node:
            message = "Cannot execute because a node is missing the class_type property."
            return problem("invalid_prompt", message, f"Node ID '#{node_id}'"), {}
        if node["class_type"] not in NODES:
            message = f"Cannot execute because node {node['class_type']} does not exist."
            return problem("invalid_prompt", message, f"Node ID '#{node_id}'"), {}
        if not isinstance(node.get("inputs"), dict) or set(node) - NODE_KEYS:
            return problem("invalid_prompt", f"node {node_id} must have inputs, and no other keys", ""), {}
    outputs = [node_id for node_id, node in graph.items() if node["class_type"] in OUTPUT_NODES]
    if not outputs:
        return problem("prompt_no_outputs", "Prompt has no outputs", ""), {}
    node_errors: dict[str, Any] = {}
    for node_id, node in graph.items():
        found = node_problems(graph, node_id, no_files)
        if found:
            node_errors[node_id] = {
                "errors": found,
                "dependent_outputs": outputs,
                "class_type": node["class_type"],
            }
    if node_errors:
        details = "\n".join(
            f"{e['message']}: {e['details']}" for n in node_errors.values() for e in n["errors"]
        )
        return problem(
            "prompt_outputs_failed_validation", "Prompt outputs failed validation", details
        ), node_errors
    return None, {}


@dataclass
class Prompt:
    job: Job
    client_id: str
    graph: dict[str, Any]
    sampler: str
    save: str
    steps: int
    files: list[str]
    deleted: bool = False  # dropped from the queue before it ran


class ComfyUIEmulator(Emulator):
    provider_id = "comfyui"
    prefix = ""
    keys: ClassVar[dict[str, str]] = {"ZIMAGE_COMFYUI_API_KEY": "emu-comfyui-key"}

    def __init__(self) -> None:
        self.require_key = True  # behind a proxy that checks a Bearer key; False: plain ComfyUI
        self.websocket_down = False  # the websocket upgrade is refused (a proxy without websockets)
        self.no_model_files = False  # a fresh install: its model folders are empty
        self.sockets: dict[str, WebSocket] = {}
        self.prompts: dict[str, Prompt] = {}
        self.history: dict[str, dict[str, Any]] = {}
        self.running: str | None = None
        self.messages: list[tuple[str, dict[str, Any]]] = []  # every websocket message sent, in order
        self._epoch = 0  # reset() ends every prompt still running
        self._worker: asyncio.Lock | None = None
        self._number = 0
        super().__init__()

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/prompt", self.post_prompt, methods=["POST"]),
            WebSocketRoute("/ws", self.websocket),
            Route("/history/{prompt_id}", self.get_history, methods=["GET"]),
            Route("/view", self.view, methods=["GET"]),
            Route("/interrupt", self.interrupt, methods=["POST"]),
            Route("/queue", self.queue, methods=["POST"]),
            Route("/object_info/{node_class}", self.get_object_info, methods=["GET"]),
        ]

    def env(self) -> dict[str, str]:
        return {"ZIMAGE_COMFYUI_URL": self.base_url, **self.keys}

    def authorized(self, request: Any) -> bool:
        return not self.require_key or super().authorized(request)

    def reset(self) -> None:
        super().reset()
        self._epoch += 1
        self.require_key = True
        self.websocket_down = False
        self.no_model_files = False
        self.prompts.clear()
        self.history.clear()
        self.messages.clear()
        self.running = None

    @property
    def downloads(self) -> list[Recorded]:
        return self.calls("GET", "/view")

    def error(self, status: int, message: str) -> Response:
        kind = {400: "invalid_prompt"}.get(status, "server_error")
        return json_response({"error": problem(kind, message, ""), "node_errors": {}}, status)

    # -- the routes --------------------------------------------------------------------------

    async def post_prompt(self, request: Request) -> Response:
        body = await self.admit(request, submit=True)
        problems = check_fields(body, TOP, required=["prompt"])
        if problems:
            return self.error(400, "; ".join(problems))
        error, node_errors = validate(body["prompt"], self.no_model_files)
        if error:
            return json_response({"error": error, "node_errors": node_errors}, 400)
        prompt = self._queue(body["prompt"], body.get("client_id", ""))
        self._number += 1
        asyncio.get_running_loop().create_task(self._run(prompt, self._epoch))
        return json_response({"prompt_id": prompt.job.id, "number": self._number, "node_errors": {}})

    async def websocket(self, websocket: WebSocket) -> None:
        self.requests.append(Recorded("GET", "/ws", dict(websocket.headers), None))
        b = self.behaviour
        if self.websocket_down or b.reject_key or b.server_error_always or not self.authorized(websocket):
            await websocket.close(code=1008)  # before accept: the upgrade is refused with HTTP 403
            return
        client_id = websocket.query_params.get("clientId") or uuid.uuid4().hex
        await websocket.accept()
        self.sockets[client_id] = websocket
        try:
            await self._send(client_id, "status", {"status": self._queue_info(), "sid": client_id})
            while (await websocket.receive())["type"] != "websocket.disconnect":
                pass
        finally:
            if self.sockets.get(client_id) is websocket:
                del self.sockets[client_id]

    async def get_object_info(self, request: Request) -> Response:
        """Behind the proxy's key check, but outside the fault behaviours: those are for the runs
        (the app asks this before a run, and must not use up a run's one failure)."""
        await self.receive(request)
        if not self.authorized(request):
            return self.error(401, "invalid API key")
        return json_response(object_info(request.path_params["node_class"], self.no_model_files))

    async def get_history(self, request: Request) -> Response:
        await self.admit(request, submit=False)
        prompt_id = request.path_params["prompt_id"]
        entry = self.history.get(prompt_id)
        if entry is None:
            return json_response({})
        job = self.prompts[prompt_id].job
        job.polls += 1
        if job.polls <= self.behaviour.polls_before_done:
            return json_response({})  # the history is written a little later than the prompt ends
        return json_response({prompt_id: entry})

    async def view(self, request: Request) -> Response:
        await self.admit(request, submit=False)
        query = request.query_params
        if query.get("type", "output") not in {"output", "input", "temp"} or "filename" not in query:
            return Response(status_code=400)
        if "/" in query["filename"] or ".." in query["filename"] or query.get("subfolder", ""):
            return Response(status_code=400)
        return self.asset_response(query["filename"])

    async def interrupt(self, request: Request) -> Response:
        body = await self._admit_cancel(request)
        target = body.get("prompt_id") if isinstance(body, dict) else None
        if self.running and target in (None, self.running):
            self.prompts[self.running].job.cancelled = True
        return Response(status_code=200)

    async def queue(self, request: Request) -> Response:
        body = await self._admit_cancel(request)
        if not isinstance(body, dict):
            return Response(status_code=400)
        for prompt_id in body.get("delete", []):
            prompt = self.prompts.get(prompt_id)
            if prompt and prompt_id != self.running and prompt_id not in self.history:
                prompt.deleted = prompt.job.cancelled = True
        return Response(status_code=200)

    async def _admit_cancel(self, request: Request) -> Any:
        body = await self.receive(request)
        if self.behaviour.hang_cancel:
            await self.hang()
        refused = self.gate(request, submit=False)
        if refused:
            raise Refusal(refused)
        return body

    # -- the worker --------------------------------------------------------------------------

    def _queue(self, graph: dict[str, Any], client_id: str) -> Prompt:
        sampler = next(i for i, n in graph.items() if n["class_type"] == "KSampler")
        save = next(i for i, n in graph.items() if n["class_type"] == "SaveImage")
        latent = graph[str(graph[sampler]["inputs"]["latent_image"][0])]["inputs"]
        seed, steps = graph[sampler]["inputs"]["seed"], graph[sampler]["inputs"]["steps"]
        job = Job(str(uuid.uuid4()), latent["width"], latent["height"], seed, latent["batch_size"])
        files = []
        for index in range(job.count):
            name = f"ComfyUI_{len(self._images) + 1:05}_.png"
            self._images[name] = png_bytes(job.width, job.height, seed + index)
            files.append(name)
        self.jobs[job.id] = job
        prompt = Prompt(job, client_id, graph, sampler, save, steps, files)
        self.prompts[job.id] = prompt
        return prompt

    def _queue_info(self) -> dict[str, Any]:
        left = sum(1 for p in self.prompts.values() if p.job.id not in self.history and not p.deleted)
        return {"exec_info": {"queue_remaining": left}}

    async def _send(self, client_id: str, kind: str, data: dict[str, Any]) -> None:
        self.messages.append((kind, data))
        socket = self.sockets.get(client_id)
        if socket is not None:
            try:
                await socket.send_json({"type": kind, "data": data})
            except Exception:  # a client gone: ComfyUI logs "send error" and goes on
                self.sockets.pop(client_id, None)

    async def _pause(self, seconds: float, prompt: Prompt, epoch: int) -> bool:
        """Wait `seconds` (forever when None); False once interrupted or reset."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if prompt.job.cancelled or epoch != self._epoch:
                return False
            await asyncio.sleep(0.005)
        return not prompt.job.cancelled and epoch == self._epoch

    async def _run(self, prompt: Prompt, epoch: int) -> None:
        if self._worker is None:
            self._worker = asyncio.Lock()
        async with self._worker:
            if prompt.deleted or epoch != self._epoch:
                return
            self.running = prompt.job.id
            try:
                await self._execute(prompt, epoch)
            finally:
                self.running = None
                if epoch == self._epoch:
                    await self._send(
                        prompt.client_id, "executing", {"node": None, "prompt_id": prompt.job.id}
                    )

    async def _execute(self, prompt: Prompt, epoch: int) -> None:
        b, job, pid, client = self.behaviour, prompt.job, prompt.job.id, prompt.client_id
        job.created = time.monotonic()
        messages: list[list[Any]] = []

        async def say(kind: str, data: dict[str, Any]) -> None:
            await self._send(client, kind, {**data, "prompt_id": pid})
            if kind.startswith("execution_"):
                messages.append([kind, {**data, "prompt_id": pid, "timestamp": int(time.time() * 1000)}])

        def finish(status_str: str, outputs: dict[str, Any]) -> None:
            status = {"status_str": status_str, "completed": status_str == "success", "messages": messages}
            self.history[pid] = {
                "prompt": [0, pid, prompt.graph, {"client_id": client}, [prompt.save]],
                "outputs": outputs,
                "status": status,
                "meta": {},
            }

        await say("execution_start", {"timestamp": int(time.time() * 1000)})
        await say("execution_cached", {"nodes": []})
        await say("executing", {"node": prompt.sampler, "display_node": prompt.sampler})
        executed: list[str] = []
        for step in range(1, prompt.steps + 1):
            if not await self._pause(b.job_delay_s / prompt.steps, prompt, epoch):
                break
            await say("progress", {"value": step, "max": prompt.steps, "node": prompt.sampler})
        while b.stuck and await self._pause(0.05, prompt, epoch):
            pass
        if epoch != self._epoch:
            return
        if job.cancelled:
            node = {"node_id": prompt.sampler, "node_type": "KSampler", "executed": executed}
            await say("execution_interrupted", node)
            finish("error", {})
            return
        if b.fail_reason:
            await say(
                "execution_error",
                {
                    "node_id": prompt.sampler,
                    "node_type": "KSampler",
                    "executed": executed,
                    "exception_message": b.fail_reason,
                    "exception_type": "RuntimeError",
                    "traceback": [],
                    "current_inputs": {},
                    "current_outputs": {},
                },
            )
            finish("error", {})
            return
        images = [{"filename": name, "subfolder": "", "type": "output"} for name in prompt.files]
        await say("executing", {"node": prompt.save, "display_node": prompt.save})
        await say(
            "executed", {"node": prompt.save, "display_node": prompt.save, "output": {"images": images}}
        )
        await say("execution_success", {"timestamp": int(time.time() * 1000)})
        finish("success", {prompt.save: {"images": images}})
