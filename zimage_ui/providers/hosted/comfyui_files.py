"""What a ComfyUI server has: the model files a workflow loads, asked of its `/object_info`
(`{class: {"input": {"required": {name: [[files], {...}]}}}}`, or `["COMBO", {"options": [...]}]`
in newer nodes), and the folder each kind of file belongs in (ComfyUI's folder_paths), so a server
without the model is not counted usable and a refusal says which file to put where."""

from __future__ import annotations

import concurrent.futures
import json
import re
import threading
import time
from typing import Any
from urllib.parse import quote

import httpx2

from zimage_ui.net.decoding import EncodingRefused
from zimage_ui.net.transport2 import Bounded
from zimage_ui.redaction import safe_url

KEY_VAR = "ZIMAGE_COMFYUI_API_KEY"

# Where ComfyUI looks for each loader's file (its folder_paths), by the loader input's name: a
# `value_not_in_list` on one of these means the file is not on the server.
MODEL_FOLDERS = {
    "unet_name": "models/diffusion_models",
    "clip_name": "models/text_encoders",
    "vae_name": "models/vae",
    "ckpt_name": "models/checkpoints",
    "lora_name": "models/loras",
    "control_net_name": "models/controlnet",
    "name": "models/model_patches",  # ModelPatchLoader: Z-Image's ControlNet patch
}
_NOT_IN_LIST = re.compile(r"^(\w+): '(.*)' not in ")


def missing_file_hint(error: dict[str, Any]) -> str:
    """For a loader's `value_not_in_list`: which file to put in which folder ("" otherwise)."""
    if error.get("type") != "value_not_in_list":
        return ""
    extra = error.get("extra_info")
    name, value = (
        (extra.get("input_name"), extra.get("received_value")) if isinstance(extra, dict) else (None, None)
    )
    if not (isinstance(name, str) and isinstance(value, str)):
        match = _NOT_IN_LIST.match(str(error.get("details") or ""))
        name, value = (match.group(1), match.group(2)) if match else (None, None)
    folder = MODEL_FOLDERS.get(name or "")
    return f" (the server has no {value}: put it in ComfyUI's {folder}/)" if folder and value else ""


def loader_files(graph: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(class_type, input name, file) of every loader input in the graph that names a model file."""
    found = []
    for node in graph.values():
        inputs = node.get("inputs") if isinstance(node, dict) else None
        for name, value in (inputs or {}).items():
            if name in MODEL_FOLDERS and isinstance(value, str) and isinstance(node.get("class_type"), str):
                found.append((node["class_type"], name, value))
    return found


def combo_options(object_info: Any, class_type: str, name: str) -> list[str] | None:
    """The files a loader input offers in `/object_info`: `[[files], {...}]` (legacy nodes) or
    `["COMBO", {"options": [files]}]`; None where the server does not say."""
    inputs = dig_or_none(object_info, class_type, "input")
    if not isinstance(inputs, dict):
        return None
    for group in ("required", "optional"):
        spec = inputs.get(group, {}).get(name) if isinstance(inputs.get(group), dict) else None
        if isinstance(spec, list) and spec:
            if isinstance(spec[0], list):
                return [str(option) for option in spec[0]]
            if spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict):
                options = spec[1].get("options")
                return [str(option) for option in options] if isinstance(options, list) else None
    return None


def dig_or_none(data: Any, *keys: str) -> Any:
    for key in keys:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def missing_files(graph: dict[str, Any], object_info: Any) -> list[str]:
    """Each model file the graph loads that the server does not list, with its folder."""
    missing = []
    for class_type, name, value in loader_files(graph):
        options = combo_options(object_info, class_type, name)
        if options is not None and value not in options:
            missing.append(f"{value} (in {MODEL_FOLDERS[name]}/)")
    return missing


PROBE_TTL_S = 30.0  # how long what the server said about its files is trusted
PROBE_TIMEOUT_S = 3.0
MAX_OBJECT_INFO_BYTES = 4 * 2**20  # one node class's description: a few KB, its file lists more
_probes: dict[tuple[str, str], tuple[float, str | None]] = {}
_probes_lock = threading.Lock()


def forget_probes() -> None:
    """Ask the servers again at the next availability check (a server's files changed)."""
    with _probes_lock:
        _probes.clear()


def serving_problem(root: str, key: str, graph: dict[str, Any]) -> str | None:
    """Why the ComfyUI server at `root` can't run `graph`: the model files it says it lacks; None
    when it has them, or when it does not say (down, a refused key, an odd answer: the run itself
    then meets that and reports it, with its retries). Remembered for PROBE_TTL_S, so the page's
    checks cost one request a while."""
    cache_key = (root, json.dumps(graph, sort_keys=True))
    now = time.monotonic()
    with _probes_lock:
        cached = _probes.get(cache_key)
    if cached is not None and now - cached[0] < PROBE_TTL_S:
        return cached[1]
    object_info = _object_info(root, key, {class_type for class_type, _name, _value in loader_files(graph)})
    missing = missing_files(graph, object_info) if object_info is not None else []
    problem = (
        f"the ComfyUI server at {safe_url(root)} lacks the workflow's model files: put "
        + ", ".join(missing)
        + " in place"
        if missing
        else None
    )
    with _probes_lock:
        _probes[cache_key] = (now, problem)
    return problem


def _object_info(root: str, key: str, classes: set[str]) -> dict[str, Any] | None:
    """`/object_info/{class}` of each class, merged; None when the server does not answer so
    within PROBE_TIMEOUT_S in all. The requests run on a worker thread the caller waits for at
    most that long, so a server that stalls or trickles never holds the event loop longer."""
    future = _PROBE_WORKER.submit(_ask_object_info, root, key, classes, time.monotonic() + PROBE_TIMEOUT_S)
    try:
        return future.result(timeout=PROBE_TIMEOUT_S)
    except concurrent.futures.TimeoutError:
        return None  # the worker ends by its own timeouts; its late answer is dropped


_PROBE_WORKER = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="comfyui-probe")


def _ask_object_info(root: str, key: str, classes: set[str], deadline: float) -> dict[str, Any] | None:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    transport = Bounded(httpx2.HTTPTransport(), MAX_OBJECT_INFO_BYTES, PROBE_TIMEOUT_S)
    found: dict[str, Any] = {}
    try:
        with httpx2.Client(transport=transport, headers=headers) as client:
            for class_type in sorted(classes):
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                timeout = httpx2.Timeout(left, connect=min(left, 1.0))
                answer = client.get(f"{root}/object_info/{quote(class_type, safe='')}", timeout=timeout)
                data = answer.json() if answer.status_code == 200 else None
                if not isinstance(data, dict):
                    return None
                found.update(data)
    except (httpx2.HTTPError, EncodingRefused, ValueError, OSError):  # refused bodies too: capped, bombs
        return None
    return found
