"""Reading settings back from an image: our `zimage` record first, else A1111-style infotext.

The infotext parser follows AUTOMATIC1111's `parse_generation_parameters`
(modules/infotext_utils.py), so text written by the webui, Forge or Civitai reads the
same here; Fooocus's JSON and a ComfyUI graph's sampler are read through the same checks
(`foreign_metadata`). Reading never raises: anything not understood is reported, not fatal.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from PIL import Image
from pydantic import ValidationError

from zimage_ui import foreign_metadata
from zimage_ui.errors import InvalidParams
from zimage_ui.foreign_metadata import COMFY_KEYS, FOOOCUS_SCHEME_KEY, Found
from zimage_ui.metadata import (
    CFG_KEY,
    CONTROLNET_KEY,
    PARAMETERS_KEY,
    SAMPLER,
    SCHEDULE_TYPE,
    ZIMAGE_KEY,
    ZIMAGE_SCHEMA,
    guidance_of,
    png_text_chunks,
)
from zimage_ui.params import CONTROL_KINDS, MAX_SEED, MODEL_NAME, GenerationParams, ImageInputs
from zimage_ui.providers import PROVIDERS
from zimage_ui.settings import TABLE

# The webui's own patterns: `Key: value` pairs (values may be JSON-quoted), and WxH sizes.
RE_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
RE_IMAGESIZE = re.compile(r"^(\d+)x(\d+)$")
# A1111's extra-networks syntax for a LoRA in the prompt: <lora:name:scale> (scale optional).
RE_LORA_TAG = re.compile(r"\s*<lora:([^:<>]+)(?::([-+]?[\d.]+))?>")
NEGATIVE_PREFIX = "Negative prompt:"

EXIF_IFD, USER_COMMENT = 0x8769, 0x9286
# What this app writes beside its values: not settings to load, nor to report as unused.
OUR_CONSTANTS = {"Model": MODEL_NAME, "Sampler": SAMPLER, "Schedule type": SCHEDULE_TYPE}
MAX_LISTED = 8  # unused keys named in the message; the rest are counted (all are under Ignored)

Source = Literal["zimage", "parameters", "fooocus", "comfyui"]


@dataclass(frozen=True)
class ReadBack:
    """What an image says about how it was made, in canonical names, and what was left out."""

    params: dict[str, Any] = field(default_factory=dict)  # canonical name -> valid value
    provider: str | None = None
    source: Source | None = None
    ignored: dict[str, str] = field(default_factory=dict)  # infotext key -> value (and why unused)
    message: str = ""
    turbo: bool = False  # made with Z-Image-Turbo (here, or a ComfyUI graph loading it): its steps suit it


def unquote(text: str) -> str:
    """The webui's unquote: JSON-decode a value written in double quotes, else keep it."""
    if not text or text[0] != '"' or text[-1] != '"':
        return text
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, str) else text


def parse_infotext(text: str) -> tuple[str, str, dict[str, str]]:
    """(prompt, negative prompt, {key: value}) exactly as the webui splits its infotext.

    The last line holds the settings only when it has at least three `Key: value` pairs;
    a line starting with `Negative prompt:` begins the negative prompt; every line is
    stripped. Empty values are dropped, as the webui drops them.
    """
    *lines, last = text.strip().split("\n")
    if len(RE_PARAM.findall(last)) < 3:
        lines.append(last)
        last = ""
    prompt: list[str] = []
    negative: list[str] = []
    in_negative = False
    for raw in lines:
        line = raw.strip()
        if line.startswith(NEGATIVE_PREFIX):
            in_negative = True
            line = line[len(NEGATIVE_PREFIX) :].strip()
        (negative if in_negative else prompt).append(line)
    values: dict[str, str] = {}
    for key, value in RE_PARAM.findall(last):
        if value:
            values[key] = unquote(value)
    return "\n".join(prompt), "\n".join(negative), values


def _problem(values: dict[str, Any]) -> str | None:
    """GenerationParams' own verdict on these values, or None when they are fine."""
    try:
        GenerationParams.model_validate({"prompt": "probe", **values})
    except ValidationError as exc:
        return "; ".join(f"{k} {v}" for k, v in InvalidParams.from_validation(exc).fields.items())
    return None


# infotext key -> (canonical names, how to read each part of the value): the table's keys, and
# Size, which A1111 writes as one `WxH` pair for two settings.
SIZE_KEY = "Size"
_MAPPED: dict[str, tuple[tuple[str, ...], type]] = {
    **{key: ((setting.name,), setting.kind) for key, setting in TABLE.infotext_keys().items()},
    SIZE_KEY: (("width", "height"), int),
}
# canonical name -> how the message that lists what was read names it
_LABELS = {
    **{setting.name: setting.label.lower() for setting in TABLE if setting.kind is str},
    **{setting.name: (setting.infotext or setting.label).lower() for setting in TABLE if setting.infotext},
    "guidance_scale": "CFG scale",
    "width": "size",
    "height": "size",
}


def _candidate(key: str, value: str) -> dict[str, Any]:
    """Canonical values for one mapped infotext pair; ValueError when it is not a number."""
    names, kind = _MAPPED[key]
    if key == CFG_KEY:
        return {"guidance_scale": guidance_of(float(value))}
    parts: tuple[str, ...] = (value,)
    if key == SIZE_KEY:
        match = RE_IMAGESIZE.match(value.strip())
        if match is None:
            raise ValueError(value)
        parts = match.groups()
    return {name: kind(part.strip()) for name, part in zip(names, parts, strict=True)}


def _our_inputs(prompt: str | None, values: dict[str, str]) -> tuple[str | None, dict[str, Any], list[str]]:
    """This app's own image inputs written as A1111 does: `Denoising strength`, and `<lora:...>` tags
    in the prompt with `Lora hashes`. (prompt without the tags, `inputs` values, keys used).

    Read only from our own images: another model's LoRAs and strength don't apply to Z-Image. A
    LoRA comes back as `<name>.safetensors`: the file's path is not in A1111's text (our zimage
    record has it).
    """
    inputs: dict[str, Any] = {}
    used: list[str] = []
    if "Denoising strength" in values:
        try:
            strength = float(values["Denoising strength"])
        except ValueError:
            strength = -1.0
        if 0.0 <= strength <= 1.0:
            inputs["strength"] = strength
            used.append("Denoising strength")
    if prompt is not None and RE_LORA_TAG.search(prompt):
        loras = []
        for name, scale in RE_LORA_TAG.findall(prompt):
            try:
                loras.append({"ref": f"{name.strip()}.safetensors", "scale": float(scale or 1.0)})
            except ValueError:
                continue
        if loras and _problem({"inputs": {"loras": loras}}) is None:
            inputs["loras"] = loras
            prompt = RE_LORA_TAG.sub("", prompt).strip()
            used.append("Lora hashes")
    control = _controlnet_unit(values.get(CONTROLNET_KEY, ""))
    if control and _problem({"inputs": control}) is None:
        inputs.update(control)
        used.append(CONTROLNET_KEY)
    return prompt, inputs, used


def _controlnet_unit(value: str) -> dict[str, Any]:
    """`control_kind` and `control_scale` from sd-webui-controlnet's `ControlNet 0` value
    (`Module: canny, Model: ..., Weight: 0.75, ...`); {} when it names neither. The control image
    itself is not in the text."""
    parts = dict(part.partition(": ")[::2] for part in value.split(", ") if ": " in part)
    found: dict[str, Any] = {}
    if parts.get("Module", "").strip() in CONTROL_KINDS:
        found["control_kind"] = parts["Module"].strip()
        with contextlib.suppress(ValueError):
            found["control_scale"] = float(parts.get("Weight", ""))
    return found


def _seed_note(seed: object) -> str:
    """A read seed that only the local model takes is kept, and said so."""
    if isinstance(seed, int) and seed > MAX_SEED:
        hosted = f"{MAX_SEED}, which the hosted providers take"
        return f" Seed {seed} is above {hosted}: the local model can use it."
    return ""


_INTROS: dict[Source, str] = {
    "parameters": "Loaded from the image's AUTOMATIC1111-style parameters",
    "fooocus": "Loaded from the image's Fooocus metadata",
    "comfyui": "This image carries a ComfyUI graph, which can't be run here. Read from its sampler node",
}


def _from_values(found: Found, source: Source, prefix: str = "") -> ReadBack:
    """Check what a tool recorded (A1111 keys) against GenerationParams; report the rest."""
    prompt, negative, values = found.prompt, found.negative, found.values
    ours = values.get("Model") == MODEL_NAME
    inputs: dict[str, Any] = {}
    used: list[str] = []
    if ours:
        prompt, inputs, used = _our_inputs(prompt, values)
    params: dict[str, Any] = {}
    ignored: dict[str, str] = {}
    unusable: list[str] = []
    problem = _problem({"prompt": prompt}) if prompt is not None else None
    if prompt is not None and problem:
        ignored["Prompt"] = f"{len(prompt)} characters (not usable as-is: {problem})"
        unusable.append(f"the prompt ({problem})")
    elif prompt is not None:
        params["prompt"] = prompt
    if prompt is not None or negative:  # a graph with no prompt text leaves the form's negative alone
        params["negative_prompt"] = negative
    provider = None
    for key, value in values.items():
        if key in used:
            continue
        if key in _MAPPED:
            try:
                candidate = _candidate(key, value)
            except ValueError:
                why = "the provider chose it" if value == "provider default" else "not a number"
                ignored[key] = f"{value} ({why})"
                unusable.append(f"{key} ({why})")
                continue
            if problem := _problem(candidate):
                ignored[key] = f"{value} (not usable as-is: {problem})"
                unusable.append(f"{key} {value} ({problem})")
            else:
                params.update(candidate)
        elif key == "Provider" and value in PROVIDERS:
            provider = value
        elif not (ours and OUR_CONSTANTS.get(key) == value):
            ignored[key] = value if key != "Provider" else f"{value} (not a provider this app knows)"
    ignored.update(found.extra)
    if ours and "CFG scale" not in values:
        params["guidance_scale"] = 0.0  # this app writes CFG scale only when it is above 0
    if inputs:
        params["inputs"] = inputs
    shown = [_LABELS[name] for name in params if name in _LABELS and (name != "negative_prompt" or negative)]
    shown += (
        ["strength"] * ("strength" in inputs)
        + ["ControlNet kind and weight"] * ("control_kind" in inputs)
        + [f"LoRA {lora['ref']}" for lora in inputs.get("loras", [])]
    )
    loaded = ", ".join(dict.fromkeys(shown))
    message = f"{_INTROS[source]}: {loaded or 'nothing usable'}."
    if unusable:
        message += " Not loaded: " + "; ".join(unusable) + "."
    if rest := [key for key in ignored if key not in _MAPPED and key != "Prompt"]:
        listed = ", ".join(rest[:MAX_LISTED])
        more = f" and {len(rest) - MAX_LISTED} more" if len(rest) > MAX_LISTED else ""
        message += f" Not used here: {listed}{more}."
    message += _seed_note(params.get("seed"))
    if "loras" in inputs:
        message += " LoRA files are looked for by name (NAME.safetensors): give their paths if elsewhere."
    if "strength" in inputs:
        message += " Give the input image again: its file is not in the text."
    if "control_kind" in inputs:
        message += " Give the control image again: its file is not in the text."
    model = values.get("Model")
    if model and model != MODEL_NAME:
        message += f" Made with {model}, not {MODEL_NAME}: its steps and CFG scale suit that model."
    return ReadBack(params, provider, source, ignored, prefix + message, turbo=ours or provider is not None)


def _from_parameters(text: str, scheme: str | None, prefix: str = "") -> ReadBack:
    """A1111 text, or the JSON Fooocus writes in the same place."""
    fooocus = foreign_metadata.fooocus(text, scheme)
    if isinstance(fooocus, Found):
        return _from_values(fooocus, "fooocus", prefix)
    if isinstance(fooocus, str):
        return ReadBack(ignored={PARAMETERS_KEY: "(JSON: not read)"}, message=f"{prefix}Not read: {fooocus}.")
    return _from_values(Found(*parse_infotext(text)), "parameters", prefix)


def _from_zimage(raw: str) -> ReadBack | str:
    """A ReadBack from our own JSON record, or why it can't be used."""
    try:
        record = json.loads(raw)
    except ValueError:
        return "its zimage record is not valid JSON"
    if not isinstance(record, dict) or not isinstance(record.get("params"), dict):
        return "its zimage record has no parameters"
    schema = record.get("schema")
    if not isinstance(schema, int) or schema > ZIMAGE_SCHEMA:
        return f"its zimage record is schema {schema!r}, newer than this app reads ({ZIMAGE_SCHEMA})"
    try:
        params = GenerationParams.model_validate(record["params"], strict=False)
    except ValidationError as exc:
        fields = ", ".join(InvalidParams.from_validation(exc).fields)
        return f"its zimage record has unusable values ({fields})"
    provider = record.get("provider")
    ignored: dict[str, str] = {}
    if provider not in PROVIDERS:
        ignored["provider"] = f"{provider} (not a provider this app knows)"
        provider = None
    sent = record.get("sent")
    sent = sent if isinstance(sent, dict) else {}
    steps = f"{params.num_inference_steps} steps"
    if "steps" in sent and sent["steps"] is None:  # the provider took no steps value
        default = sent.get("steps_default")
        written = f"; the parameters text gives {default}, {MODEL_NAME}'s documented count" if default else ""
        steps = f"steps chosen by the provider (none sent{written})"
    values = params.model_dump(mode="json")
    inputs, loaded, notes = _recorded_inputs(params.inputs)
    if inputs is None:
        values.pop("inputs", None)
    else:
        values["inputs"] = inputs
    message = (
        f"Loaded from the image's zimage-ui record: seed {params.seed}, {params.size}, "
        f"{steps}{''.join(f', {item}' for item in loaded)}"
        + (f", provider {provider}." if provider else ".")
        + _seed_note(params.seed)
        + "".join(f" {note}" for note in notes)
    )
    if params.enhanced is not None:
        own = params.enhanced.original
        message += f" The prompt is {params.enhanced.model}'s rewrite of: “{own[:300]}”."
    return ReadBack(values, provider, "zimage", ignored, message, turbo=True)


def _recorded_inputs(inputs: ImageInputs | None) -> tuple[dict[str, Any] | None, list[str], list[str]]:
    """The image inputs of our own record as settings: (inputs, what was loaded, notes).

    LoRA URLs and hub ids come back with their scales, as do the strength and the control kind and
    scale; https images come back as they are. A local file comes back by name only (a LoRA), or
    not at all (an image): a path is only good on the machine that made the image.
    """
    if inputs is None:
        return None, [], []
    loaded: list[str] = []
    notes: list[str] = []
    update: dict[str, Any] = {}
    for name, what in (("image", "input image"), ("mask", "mask"), ("control_image", "control image")):
        ref = getattr(inputs, name)
        if ref and not ref.lower().startswith("https://"):
            update[name] = None
            notes.append(f"Give the {what} again: it was a local file ({Path(ref).name[:80]!r}).")
        elif ref:
            loaded.append(f"{what} {ref[:200]}")
    if "image" in update and inputs.mask and "mask" not in update:
        update["mask"] = None
        notes.append("Give the mask again with the input image.")
    loras = []
    for lora in inputs.loras:
        ref = lora.ref
        if lora.source == "file":
            ref = Path(ref).name
            notes.append(f"The LoRA {ref!r} was a local file: give it again if it isn't found here.")
        loras.append({"ref": ref, "scale": lora.scale})
        loaded.append(f"LoRA {ref} ({lora.scale:g})")
    update["loras"] = tuple(loras)
    if inputs.strength is not None:
        loaded.append(f"strength {inputs.strength:g}")
    if inputs.control_scale is not None or inputs.control_image is not None:
        loaded.append(
            f"control {inputs.control_kind} {inputs.effective_control_scale or inputs.control_scale:g}"
        )
    try:
        kept = ImageInputs.model_validate({**inputs.model_dump(), **update})
    except ValidationError:  # a name that is no longer a valid reference on its own: leave inputs out
        return None, [], [*notes, "The record's image inputs could not be used."]
    return (None if kept.empty else kept.model_dump(mode="json")), loaded, notes


def _user_comment(image: Image.Image) -> str | None:
    """EXIF UserComment (how the webui stores infotext in JPEG and WebP; Fooocus puts it in IFD0)."""
    exif = image.getexif()
    raw = exif.get_ifd(EXIF_IFD).get(USER_COMMENT, exif.get(USER_COMMENT))
    if isinstance(raw, str):
        return raw or None
    if not isinstance(raw, bytes) or len(raw) <= 8:
        return None
    head, body = raw[:8], raw[8:]
    if head == b"UNICODE\x00":
        encoding = "utf-16-le" if len(body) > 1 and body[1] == 0 and body[0] != 0 else "utf-16-be"
        return body.decode(encoding, errors="replace")
    return body.decode("utf-8" if head.startswith(b"ASCII") else "latin-1", errors="replace")


def _text_chunks(data: bytes) -> dict[str, str] | None:
    """Text metadata by key, or None when the bytes are not a readable image.

    A PNG's chunks are read from its bytes (no pixel decoded, whatever its size).
    """
    png = png_text_chunks(data)
    if png is not None and ({PARAMETERS_KEY, ZIMAGE_KEY} & set(png)):
        return png
    try:
        with Image.open(io.BytesIO(data)) as image:
            chunks = {str(k): v for k, v in image.info.items() if isinstance(v, str)}
            chunks.update(png or {})
            if PARAMETERS_KEY not in chunks and (comment := _user_comment(image)):
                chunks[PARAMETERS_KEY] = comment
    except Exception:  # any undecodable input (PIL raises many types), or text past Pillow's cap
        return png or None  # a PNG's own text chunks (read within their cap) where it had any
    return chunks


def read_png_settings(data: bytes) -> ReadBack:
    """Settings from an image's metadata (PNG text chunks; JPEG/WebP EXIF too). Never raises."""
    chunks = _text_chunks(data)
    if chunks is None:
        return ReadBack(message="This file is not an image this app can read (PNG, JPEG or WebP).")
    prefix = ""
    if ZIMAGE_KEY in chunks:
        found = _from_zimage(chunks[ZIMAGE_KEY])
        if isinstance(found, ReadBack):
            return found
        prefix = f"Not using the zimage-ui record: {found}. "
    graph = {key: "(ComfyUI graph: can't be run here)" for key in COMFY_KEYS if key in chunks}
    if chunks.get(PARAMETERS_KEY, "").strip():
        read = _from_parameters(chunks[PARAMETERS_KEY], chunks.get(FOOOCUS_SCHEME_KEY), prefix)
        if not graph:
            return read
        message = read.message + " Its ComfyUI graph can't be run here: the settings come from its text."
        return replace(read, ignored={**read.ignored, **graph}, message=message)
    comfy = foreign_metadata.comfyui(chunks.get("prompt"))
    if comfy is not None and (comfy.prompt is not None or comfy.values):
        read = _from_values(comfy, "comfyui", prefix)
        return replace(read, provider=None, ignored={**read.ignored, **graph})
    if graph:
        why = f": {comfy.extra['graph']}" if comfy and "graph" in comfy.extra else ""
        message = (
            f"This image carries a ComfyUI graph, which can't be run here; nothing was read from it{why}."
        )
        return ReadBack(ignored=graph, message=prefix + message)
    nothing = "This image carries no generation settings, so nothing can be loaded here."
    return ReadBack(message=prefix + nothing)
