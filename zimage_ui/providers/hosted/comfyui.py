"""ComfyUI: a workflow graph in API format, progress over its websocket, images from its history.

`POST {root}/prompt` `{prompt: <graph>, client_id}` queues the graph (400 with `error` and
`node_errors` when it does not validate); the websocket `{root}/ws?clientId=<client_id>`, opened
before the prompt is posted so no message is missed, says how it goes: `progress {value, max,
prompt_id, node}` per sampler step, `executing {node: null, prompt_id}` once it is done (sent after
the history entry is written), `execution_error {exception_message, node_id, node_type}`,
`execution_interrupted`. The images are the SaveImage node's outputs in `GET /history/{prompt_id}`,
each fetched from `GET /view?filename=&subfolder=&type=`. Stop posts `POST /queue {"delete":
[prompt_id]}` (still queued) and `POST /interrupt {"prompt_id"}` (running; a prompt_id that is not
running is left alone, so another user's prompt on a shared server is never interrupted). Where
the websocket can't be opened, the run follows the prompt by polling its history instead.

The graph: `ZIMAGE_COMFYUI_WORKFLOW` (a file saved with ComfyUI's "Export (API)"), else the shipped
`comfyui_z_image_turbo.json`, ComfyUI's own Z-Image-Turbo template (UNETLoader, CLIPLoader
`lumina2`, VAELoader, CLIPTextEncode, ConditioningZeroOut as the negative, ModelSamplingAuraFlow
shift 3, EmptySD3LatentImage, KSampler 8 steps cfg 1 `res_multistep`/`simple`, VAEDecode,
SaveImage). The nodes to fill are found by class_type (KSampler, ModelSamplingAuraFlow, SaveImage)
and by following the KSampler's links (`positive` -> CLIPTextEncode, `negative`, `latent_image`
-> EmptySD3LatentImage or EmptyLatentImage); a workflow without one of them is refused, naming it.

Guidance -> cfg: diffusers' Z-Image pipeline guides as `pos + g * (pos - neg)` (on when g > 0);
ComfyUI's KSampler uses classic CFG, `neg + cfg * (pos - neg)` = `pos + (cfg - 1) * (pos - neg)`,
and skips the negative pass at cfg 1. So `cfg = 1 + guidance_scale` is the same formula: Turbo's
guidance 0 is cfg 1, guidance 4 is cfg 5. With guidance > 0 the negative is a CLIPTextEncode of
the negative prompt (an empty prompt when none is given, as diffusers encodes ""), replacing the
template's ConditioningZeroOut; with guidance 0 the negative is never used, and a note says so.
"""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from zimage_ui import env
from zimage_ui.errors import Cancelled, JobFailed, ProviderError, ProviderUnavailable
from zimage_ui.net.answers import Unexpected, dig, dig_text
from zimage_ui.net.session import HttpSession
from zimage_ui.params import GenerationParams
from zimage_ui.providers.base import (
    FULL_PIPELINE,
    Availability,
    KeyRing,
    PreparedRequest,
    Progress,
    ProgressFn,
    SentValues,
    refuse_inputs,
)
from zimage_ui.providers.hosted.base import (
    JobDone,
    SelfHostedProvider,
    gather_all,
    images_sent,
    steps_sent,
    unsupported_notes,
)
from zimage_ui.providers.hosted.comfyui_files import KEY_VAR, missing_file_hint, serving_problem

LABEL = "ComfyUI"
URL_VAR = "ZIMAGE_COMFYUI_URL"
WORKFLOW_VAR = "ZIMAGE_COMFYUI_WORKFLOW"
TEMPLATE = Path(__file__).with_name("comfyui_z_image_turbo.json")
MAX_WORKFLOW_BYTES = 2 * 2**20
LATENT_CLASSES = ("EmptySD3LatentImage", "EmptyLatentImage")
CAPABILITIES = FULL_PIPELINE


class WorkflowError(ValueError):
    """A workflow that can't be used: the message names the file or node and what to do."""


# -- the graph (pure) -----------------------------------------------------------------------


def read_workflow(path: str) -> dict[str, Any]:
    """The graph in API format from `path` ("" for the shipped Z-Image-Turbo template)."""
    source = Path(path).expanduser() if path else TEMPLATE
    where = f"{WORKFLOW_VAR} ({source.name})" if path else "the shipped template"
    try:
        if source.stat().st_size > MAX_WORKFLOW_BYTES:
            raise WorkflowError(f"{where} is larger than 2 MB: is it a workflow?")
        graph = json.loads(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise WorkflowError(f"{where} can't be read ({exc.strerror or type(exc).__name__})") from None
    except ValueError:
        raise WorkflowError(f"{where} is not JSON: save the workflow with ComfyUI's Export (API)") from None
    if isinstance(graph, dict) and isinstance(graph.get("nodes"), list):
        raise WorkflowError(
            f"{where} is in ComfyUI's UI format: save it with Workflow > Export (API) instead"
        )
    check_graph(graph, where)
    return graph


def check_graph(graph: Any, where: str = "the workflow") -> None:
    if not isinstance(graph, dict) or not graph:
        raise WorkflowError(f"{where} is not a graph in API format (node id -> class_type and inputs)")
    for node_id, node in graph.items():
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str):
            raise WorkflowError(f"node {node_id} of {where} has no class_type")
        if not isinstance(node.get("inputs"), dict):
            raise WorkflowError(f"node {node_id} ({node['class_type']}) of {where} has no inputs")


def only_node(graph: dict[str, Any], class_type: str, why: str) -> str:
    """The id of the one node of `class_type`; a workflow with none or several is refused."""
    found = [node_id for node_id, node in graph.items() if node["class_type"] == class_type]
    if not found:
        raise WorkflowError(f"the workflow has no {class_type} node: {why}")
    if len(found) > 1:
        raise WorkflowError(
            f"the workflow has {len(found)} {class_type} nodes ({', '.join(found)}): keep one, "
            "so it is clear which one gets the settings"
        )
    return found[0]


def linked(graph: dict[str, Any], node_id: str, name: str, classes: tuple[str, ...]) -> str:
    """The id of the node feeding input `name` of `node_id`, which must be one of `classes`."""
    link = graph[node_id]["inputs"].get(name)
    wanted = " or ".join(classes)
    if not (isinstance(link, list) and len(link) == 2 and str(link[0]) in graph):
        raise WorkflowError(f"the KSampler's {name} input is not linked to a node: link a {wanted} to it")
    source = str(link[0])
    if graph[source]["class_type"] not in classes:
        raise WorkflowError(
            f"the KSampler's {name} comes from node {source} ({graph[source]['class_type']}), "
            f"not a {wanted}: this app fills a {wanted} there"
        )
    return source


def new_node_id(graph: dict[str, Any]) -> str:
    numbers = [int(node_id) for node_id in graph if node_id.isdigit()]
    return str(max(numbers, default=0) + 1)


def fill_workflow(
    workflow: dict[str, Any], params: GenerationParams
) -> tuple[dict[str, Any], SentValues, list[str]]:
    """Params (seed concrete) -> the graph to queue, filled by class_type; the workflow is not changed."""
    assert params.seed is not None
    graph = copy.deepcopy(workflow)
    check_graph(graph)
    sampler = only_node(graph, "KSampler", "it samples the image (seed, steps, cfg)")
    shift_node = only_node(
        graph,
        "ModelSamplingAuraFlow",
        "add one between the model loader and the KSampler (shift 3 for Turbo)",
    )
    only_node(graph, "SaveImage", "it is where the images are read from")
    positive = linked(graph, sampler, "positive", ("CLIPTextEncode",))
    latent = linked(graph, sampler, "latent_image", LATENT_CLASSES)
    steps, step_notes = steps_sent(params, CAPABILITIES, LABEL)
    assert steps is not None
    count = images_sent(params, CAPABILITIES)
    cfg = 1.0 + params.guidance_scale
    inputs = graph[sampler]["inputs"]
    inputs.update(seed=params.seed, steps=steps, cfg=cfg)
    graph[positive]["inputs"]["text"] = params.prompt
    graph[latent]["inputs"].update(width=params.width, height=params.height, batch_size=count)
    graph[shift_node]["inputs"]["shift"] = params.shift
    notes = [*step_notes, *unsupported_notes(params, CAPABILITIES, LABEL)]
    negative_sent = False
    if params.guidance_scale > 0:
        link = inputs.get("negative")
        source = str(link[0]) if isinstance(link, list) and len(link) == 2 else ""
        if source in graph and source != positive and graph[source]["class_type"] == "CLIPTextEncode":
            graph[source]["inputs"]["text"] = params.negative_prompt
        else:  # the template's ConditioningZeroOut: encode the negative prompt with the positive's CLIP
            clip = graph[positive]["inputs"].get("clip")
            source = new_node_id(graph)
            graph[source] = {
                "class_type": "CLIPTextEncode",
                "inputs": {"text": params.negative_prompt, "clip": clip},
                "_meta": {"title": "Negative prompt (zimage-ui)"},
            }
            inputs["negative"] = [source, 0]
        negative_sent = bool(params.negative_prompt.strip())
    elif params.negative_prompt.strip():
        notes.append("negative prompt not sent: with guidance 0 (cfg 1) ComfyUI does not use a negative")
    sampler_name, scheduler = inputs.get("sampler_name"), inputs.get("scheduler")
    sent = SentValues(
        width=params.width,
        height=params.height,
        steps=steps,
        seed=params.seed,
        shift=params.shift,
        guidance=params.guidance_scale,  # as cfg = 1 + guidance
        sampler=str(sampler_name or ""),
        schedule=str(scheduler or ""),
        negative_sent=negative_sent,
        extra_fields=(("cfg", cfg), ("sampler_name", sampler_name), ("scheduler", scheduler)),
    )
    return graph, sent, notes


# -- the answers (pure) ---------------------------------------------------------------------


def node_errors_text(body: Any) -> str | None:
    """ComfyUI's refusal of a graph as one line: each node's errors, else the prompt's error; a
    missing model file names the folder it belongs in."""
    if not isinstance(body, dict):
        return None
    parts: list[str] = []
    node_errors = body.get("node_errors")
    if isinstance(node_errors, dict):
        for node_id, entry in node_errors.items():
            if not isinstance(entry, dict):
                continue
            for error in entry.get("errors") or []:
                if isinstance(error, dict):
                    said = ": ".join(str(error[k]) for k in ("message", "details") if error.get(k))
                    hint = missing_file_hint(error)
                    parts.append(f"node {node_id} ({entry.get('class_type', '?')}): {said}{hint}")
    if parts:
        return "; ".join(parts)
    error = body.get("error")
    if isinstance(error, dict):
        return ": ".join(str(error[k]) for k in ("message", "details") if error.get(k)) or None
    return error if isinstance(error, str) and error.strip() else None


def history_entry(data: Any, prompt_id: str) -> dict[str, Any] | None:
    """The prompt's history entry; None while it has none (`{}`, ComfyUI's answer until it ends)."""
    if not isinstance(data, dict):
        raise Unexpected("the history is not an object")
    if not data:
        return None
    entry = data.get(prompt_id)
    if not isinstance(entry, dict):
        raise Unexpected("the history has no entry for the prompt")
    return entry


def ended_badly(provider: str, entry: dict[str, Any]) -> ProviderError | None:
    """The error a history entry records (`status.status_str` "error"); None when it succeeded."""
    status = entry.get("status")
    if not isinstance(status, dict) or status.get("status_str") != "error":
        return None
    for message in status.get("messages") or []:
        if isinstance(message, list) and len(message) == 2 and isinstance(message[1], dict):
            kind, data = message
            if kind == "execution_interrupted":
                return interrupted(provider)
            if kind == "execution_error":
                return job_failed(provider, data)
    return JobFailed(provider, "the prompt failed at the ComfyUI server: see its console")


def job_failed(provider: str, data: dict[str, Any]) -> JobFailed:
    node = f" at node {data.get('node_id')} ({data.get('node_type')})" if data.get("node_id") else ""
    reason = str(data.get("exception_message") or "no reason given").strip()
    return JobFailed(provider, f"the job failed{node} ({reason}): fix the workflow or settings, then retry")


def interrupted(provider: str) -> Cancelled:
    return Cancelled(
        provider, "the prompt was interrupted at the ComfyUI server (its own Cancel, or a client)"
    )


def output_refused(queued: Any, save_node: str) -> str | None:
    """Why ComfyUI queued the prompt for a workflow's other outputs but not the SaveImage node the
    images are read from: the `node_errors` of that node or of a node it depends on (ComfyUI lists
    the outputs each failing node blocks under `dependent_outputs`); None when ours will run."""
    node_errors = queued.get("node_errors") if isinstance(queued, dict) else None
    if not isinstance(node_errors, dict):
        return None
    ours = {
        node_id: entry
        for node_id, entry in node_errors.items()
        if node_id == save_node
        or (isinstance(entry, dict) and save_node in (entry.get("dependent_outputs") or []))
    }
    return node_errors_text({"node_errors": ours}) if ours else None


def saved_images(entry: dict[str, Any], save_node: str) -> list[dict[str, str]]:
    images = dig(entry, "outputs", save_node, "images")
    if not isinstance(images, list) or not images:
        raise Unexpected(f"no images in the outputs of SaveImage node {save_node}")
    for image in images:
        if not isinstance(image, dict) or not isinstance(image.get("filename"), str):
            raise Unexpected("an image of the outputs has no filename")
    return images


def queue_remaining(data: Any) -> int | None:
    """`status {status: {exec_info: {queue_remaining}}}`: the prompts ComfyUI has left to run."""
    status = data.get("status") if isinstance(data, dict) else None
    info = status.get("exec_info") if isinstance(status, dict) else None
    left = info.get("queue_remaining") if isinstance(info, dict) else None
    return left if isinstance(left, int) and not isinstance(left, bool) else None


def view_url(root: str, image: dict[str, str]) -> str:
    query = {
        "filename": image["filename"],
        "subfolder": image.get("subfolder", ""),
        "type": image.get("type", "output"),
    }
    return f"{root}/view?{urlencode(query)}"


def websocket_url(root: str, client_id: str) -> str:
    parts = urlsplit(root)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return f"{scheme}://{parts.netloc}{parts.path}/ws?{urlencode({'clientId': client_id})}"


# -- the provider ---------------------------------------------------------------------------


class ComfyUIProvider(SelfHostedProvider):
    id = "comfyui"
    label = "ComfyUI server (Z-Image-Turbo workflow)"
    capabilities = CAPABILITIES
    key_names = (KEY_VAR,)
    address_hint = "the ComfyUI server's root (e.g. http://gpu-box:8188)"
    submit_path = "/prompt"
    error_paths = (node_errors_text, "error.message", "message", "error")

    @property
    def base_url_var(self) -> str:
        return URL_VAR

    def workflow(self) -> dict[str, Any]:
        try:
            return read_workflow(env.raw(WORKFLOW_VAR))
        except WorkflowError as exc:
            raise ProviderUnavailable(self.id, str(exc)) from None

    def map_params(self, params: GenerationParams) -> tuple[dict[str, Any], SentValues, list[str]]:
        refuse_inputs(params, self.capabilities, self.id)
        try:
            graph, sent, notes = fill_workflow(self.workflow(), params)
        except WorkflowError as exc:
            raise ProviderUnavailable(self.id, str(exc)) from None
        # client_id routes the websocket's messages to this run alone
        return {"prompt": graph, "client_id": uuid.uuid4().hex}, sent, notes

    def availability(self, keys: KeyRing) -> Availability:
        """Usable once its URL is set, the workflow reads, and the server has the workflow's model
        files (asked of `/object_info`, remembered for PROBE_TTL_S); the key is optional."""
        status = super().availability(keys)
        if not status.usable:
            return status
        try:
            graph = read_workflow(env.raw(WORKFLOW_VAR))
        except WorkflowError as exc:
            return Availability(False, str(exc))
        problem = serving_problem(self.base_url(), keys.get(KEY_VAR) or "", graph)
        return Availability(False, problem) if problem else status

    async def execute(self, session: HttpSession, prepared: PreparedRequest, progress: ProgressFn) -> JobDone:
        root = self.base_of(prepared)
        graph, client_id = prepared.body["prompt"], str(prepared.body["client_id"])
        notes: list[str] = []
        socket = None
        try:  # before the prompt is posted, as ComfyUI's own example does: no message is missed
            socket = await session.websocket(websocket_url(root, client_id))
        except Cancelled:
            raise
        except ProviderError as exc:
            if type(exc) is not ProviderError:  # the deadline: nothing to fall back to
                raise
            notes.append(f"{exc.detail}: followed the prompt by polling /history instead")
        queued = await session.submit(prepared.url, prepared.body)
        prompt_id = dig_text(queued, "prompt_id")
        session.job_started(
            cancel_calls=[
                (f"{root}/queue", {"delete": [prompt_id]}),
                (f"{root}/interrupt", {"prompt_id": prompt_id}),
            ]
        )
        if reason := output_refused(queued, only_node(graph, "SaveImage", "")):
            # its other outputs run, ours never will: say why now instead of waiting for no images
            raise JobFailed(self.id, f"ComfyUI will not run the workflow's SaveImage: {reason}")
        if queued.get("node_errors"):
            notes.append(
                f"ComfyUI skipped some outputs: {node_errors_text({'node_errors': queued['node_errors']})}"
            )
        progress(Progress(0.0, f"queued at ComfyUI as prompt {prompt_id[:8]}"))
        sampler = only_node(graph, "KSampler", "")
        if socket is not None:
            try:
                await self._follow(session, socket, prompt_id, sampler, graph, progress)
            except ConnectionError as exc:
                notes.append(f"the websocket closed ({exc}): followed the prompt by polling /history")
        entry = await self._history(session, root, prompt_id, progress)
        images = saved_images(entry, only_node(graph, "SaveImage", ""))
        progress(Progress(1.0, f"fetching {len(images)} image{'s' if len(images) > 1 else ''}"))
        loaded = await gather_all(
            session.download_image(view_url(root, image), with_key=True) for image in images
        )
        return JobDone(images=loaded, job_id=prompt_id, notes=notes)

    async def _follow(
        self,
        session: HttpSession,
        socket: Any,
        prompt_id: str,
        sampler: str,
        graph: dict[str, Any],
        progress: ProgressFn,
    ) -> None:
        """Read the websocket until the prompt is done; raise on its error or interruption."""
        from websockets.exceptions import ConnectionClosed

        fraction = 0.0
        while True:
            try:
                raw = await session.wait(socket.recv())
            except ConnectionClosed as exc:
                raise ConnectionError(f"code {exc.rcvd.code if exc.rcvd else 'none'}") from None
            if not isinstance(raw, str):
                continue  # binary frames are previews
            try:
                message = json.loads(raw)
            except ValueError:
                continue
            kind = message.get("type") if isinstance(message, dict) else None
            data = message.get("data") if isinstance(message, dict) else None
            if not isinstance(data, dict) or data.get("prompt_id", prompt_id) != prompt_id:
                if kind == "status" and fraction == 0.0 and isinstance(data, dict):
                    left = queue_remaining(data)
                    if left:
                        progress(
                            Progress(0.0, f"in ComfyUI's queue ({left} prompt{'s' if left > 1 else ''} left)")
                        )
                continue
            if kind == "progress":
                value, total = data.get("value"), data.get("max")
                if isinstance(value, int) and isinstance(total, int) and total > 0:
                    if str(data.get("node", sampler)) == sampler:
                        fraction = min(value / total, 1.0)
                        progress(Progress(fraction, f"step {value}/{total}", value, total))
                    else:
                        progress(
                            Progress(fraction, f"{self._class(graph, data.get('node'))}: {value}/{total}")
                        )
            elif kind == "executing":
                if data.get("node") is None:
                    return
                progress(Progress(fraction, f"running {self._class(graph, data['node'])}"))
            elif kind == "execution_error":
                raise job_failed(self.id, data)
            elif kind == "execution_interrupted":
                raise interrupted(self.id)

    @staticmethod
    def _class(graph: dict[str, Any], node: Any) -> str:
        found = graph.get(str(node))
        return f"{found['class_type']} (node {node})" if isinstance(found, dict) else f"node {node}"

    async def _history(
        self, session: HttpSession, root: str, prompt_id: str, progress: ProgressFn
    ) -> dict[str, Any]:
        """The prompt's history entry, polled until it exists (at once after the websocket's done)."""

        async def check() -> dict[str, Any] | None:
            entry = history_entry(await session.get_json(f"{root}/history/{prompt_id}"), prompt_id)
            if entry is None:
                progress(Progress(None, "waiting for ComfyUI to finish the prompt"))
                return None
            failure = ended_badly(self.id, entry)
            if failure:
                raise failure
            return entry

        return await session.poll(check)
