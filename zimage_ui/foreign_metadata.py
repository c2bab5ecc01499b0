"""Settings in other tools' own formats: Fooocus's JSON metadata and a ComfyUI graph.

Each reader turns what the tool recorded into the AUTOMATIC1111 keys (`Steps`, `Seed`, `Size`,
`CFG scale`, `Shift`, `Model`), so `infotext` checks the values by the same rules as A1111 text;
the tool's other settings come back by their own names, to be reported as not used. Nothing here
raises: an answer of the wrong shape is simply not read.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from zimage_ui.params import MODEL_NAME

FOOOCUS_SCHEME_KEY = "fooocus_scheme"  # PNG chunk Fooocus writes beside `parameters`: "fooocus" or "a1111"
COMFY_KEYS = ("prompt", "workflow")  # ComfyUI's API-format graph, and its editor layout

RE_RESOLUTION = re.compile(r"^\(\s*(\d+)\s*,\s*(\d+)\s*\)$")  # Fooocus: str((width, height))
_FOOOCUS_KEYS = {"steps": "Steps", "seed": "Seed", "guidance_scale": "CFG scale", "base_model": "Model"}


@dataclass(frozen=True)
class Found:
    """What another tool recorded, in A1111 keys, plus its other settings by their own names."""

    prompt: str | None = None
    negative: str = ""
    values: dict[str, str] = field(default_factory=dict)  # A1111 key -> value as text
    extra: dict[str, str] = field(default_factory=dict)  # the tool's own key -> value (and why unused)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _whole(value: Any) -> str | None:
    """A whole number (Fooocus writes seeds as text) as text, or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        return str(value).strip()
    return None


def _number(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        return str(float(value))
    except ValueError:
        return None


def fooocus(text: str, scheme: str | None = None) -> Found | str | None:
    """Fooocus's "fooocus" metadata scheme: a JSON object in `parameters` (PNG) or the EXIF
    UserComment (JPEG, WebP). None when the text is not a JSON object (A1111 text, which Fooocus's
    "a1111" scheme writes); a message when it is JSON this app does not know."""
    stripped = text.strip()
    if not stripped.startswith("{"):
        return None
    try:
        data = json.loads(stripped)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    version = data.get("version")
    if not (
        scheme == "fooocus"
        or (isinstance(version, str) and version.startswith("Fooocus"))
        or (isinstance(data.get("prompt"), str) and "resolution" in data)
    ):
        return "its parameters text is JSON, but not in a format this app knows (A1111 text or Fooocus)"
    prompt = data.get("prompt") if isinstance(data.get("prompt"), str) else None
    negative = data.get("negative_prompt")
    negative = negative if isinstance(negative, str) else ""
    values: dict[str, str] = {}
    extra: dict[str, str] = {}
    for key, value in data.items():
        if key in ("prompt", "negative_prompt"):
            continue
        target = _FOOOCUS_KEYS.get(key)
        if key == "resolution" and (match := RE_RESOLUTION.match(str(value).strip())):
            values["Size"] = f"{match.group(1)}x{match.group(2)}"
        elif target == "Model" and isinstance(value, str):
            values[target] = value
        elif target is not None and (read := _whole(value) if target != "CFG scale" else _number(value)):
            values[target] = read
        else:
            extra[key] = _text(value)
    if isinstance(data.get("full_prompt"), list) and "styles" in data:
        extra["full_prompt"] += " (after Fooocus's styles and expansion: the prompt itself is loaded)"
    return Found(prompt, negative.strip(), values, extra)


def is_comfy_graph(raw: str | None) -> bool:
    return _graph(raw) is not None


def _graph(raw: str | None) -> dict[str, dict[str, Any]] | None:
    """ComfyUI's API-format graph (`prompt` chunk): node id -> {class_type, inputs}."""
    if not raw:
        return None
    try:
        graph = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(graph, dict):
        return None
    nodes = {
        str(key): node
        for key, node in graph.items()
        if isinstance(node, dict) and isinstance(node.get("class_type"), str)
    }
    return nodes or None


_SAMPLERS = {"KSampler", "KSamplerAdvanced"}
_TEXT_ENCODERS = {"CLIPTextEncode"}
_SHIFTS = {"ModelSamplingAuraFlow", "ModelSamplingSD3"}  # the same flow shift as diffusers' scheduler


def _inputs(node: dict[str, Any] | None) -> dict[str, Any]:
    inputs = node.get("inputs") if node else None
    return inputs if isinstance(inputs, dict) else {}


def _linked(nodes: dict[str, dict[str, Any]], value: Any) -> dict[str, Any] | None:
    """The node an input is wired to (`[node id, output]`), or None for a literal or a dangling link."""
    if isinstance(value, list) and value and isinstance(value[0], (str, int)):
        return nodes.get(str(value[0]))
    return None


def _encoded_text(nodes: dict[str, dict[str, Any]], value: Any) -> str | None:
    node = _linked(nodes, value)
    text = _inputs(node).get("text")
    return text if node and node.get("class_type") in _TEXT_ENCODERS and isinstance(text, str) else None


def comfyui(raw: str | None) -> Found | None:
    """What a ComfyUI graph's one sampler node says, where its values are written in the graph
    (not computed by other nodes); None when it is not a graph. Two samplers (a refiner pass,
    a hires fix) make the graph ambiguous: nothing is read from it then."""
    nodes = _graph(raw)
    if nodes is None:
        return None
    samplers = [node for node in nodes.values() if node.get("class_type") in _SAMPLERS]
    if len(samplers) != 1:
        reason = "it has no sampler node" if not samplers else f"it has {len(samplers)} sampler nodes"
        return Found(extra={"graph": reason})
    inputs = _inputs(samplers[0])
    values: dict[str, str] = {}
    extra: dict[str, str] = {}
    if seed := _whole(inputs.get("seed", inputs.get("noise_seed"))):
        values["Seed"] = seed
    if steps := _whole(inputs.get("steps")):
        values["Steps"] = steps
    latent = _inputs(_linked(nodes, inputs.get("latent_image")))
    width, height = _whole(latent.get("width")), _whole(latent.get("height"))
    if width and height:
        values["Size"] = f"{width}x{height}"
    shifts = [_number(_inputs(n).get("shift")) for n in nodes.values() if n.get("class_type") in _SHIFTS]
    if len(shifts) == 1 and shifts[0]:
        values["Shift"] = shifts[0]
    if cfg := _number(inputs.get("cfg")):
        values["CFG scale"] = cfg  # ComfyUI's cfg is A1111's CFG scale: guidance + 1 (metadata.CFG_KEY)
    elif "cfg" in inputs:
        extra["cfg"] = _text(inputs["cfg"])
    for key in ("sampler_name", "scheduler", "denoise"):
        if key in inputs:
            extra[key] = _text(inputs[key])
    if _loads_z_image(nodes):  # its steps and guidance suit Turbo: kept, not swapped for Turbo's
        values["Model"] = MODEL_NAME
    prompt = _encoded_text(nodes, inputs.get("positive"))
    negative = _encoded_text(nodes, inputs.get("negative")) or ""
    return Found(prompt, negative.strip(), values, extra)


_Z_IMAGE_FILE = re.compile(r"z[-_ ]?image", re.IGNORECASE)
_MODEL_INPUTS = ("unet_name", "ckpt_name")


def _loads_z_image(nodes: dict[str, Any]) -> bool:
    """The graph's model loader loads a Z-Image file (`z_image_turbo_bf16.safetensors`, ...)."""
    names = [_inputs(node).get(name) for node in nodes.values() for name in _MODEL_INPUTS]
    return any(isinstance(name, str) and _Z_IMAGE_FILE.search(name) for name in names)
