"""Provenance in every PNG: an AUTOMATIC1111-style `parameters` chunk and a `zimage` JSON chunk.

Neither ever holds a key: they are built from `GenerationParams` and the values sent,
which carry none.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from typing import Any

from PIL import Image, PngImagePlugin

from zimage_ui.net.images import SOURCE_BYTES
from zimage_ui.params import MODEL_NAME, GenerationParams, lora_source, shareable_ref
from zimage_ui.providers.base import SentValues
from zimage_ui.settings import TABLE, Table

PARAMETERS_KEY = "parameters"
ZIMAGE_KEY = "zimage"
ZIMAGE_SCHEMA = 1
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TEXT_CHUNKS = {b"tEXt", b"zTXt", b"iTXt"}


def a1111_quote(value: object) -> str:
    """Quote a value the way AUTOMATIC1111's webui does in its infotext line."""
    text = str(value)
    if "," not in text and "\n" not in text and ":" not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


# Z-Image-Turbo samples with diffusers' FlowMatchEulerDiscreteScheduler (the checkpoint's own
# scheduler config; the hosted APIs serve the same checkpoint and name no other): a first-order,
# deterministic Euler step along the flow, over sigmas spaced evenly from 1 to 0 and then shifted.
# A1111 and Forge write their flow-matching Euler (SD3, Flux) as `Sampler: Euler` with
# `Schedule type: Simple`, and ComfyUI calls the same even spacing "simple": the truest names
# readers already know. "Euler a" would be wrong (ancestral: it adds noise each step), and
# diffusers' class name is recognised by no reader. sd-parsers' A1111 parser needs a Sampler.
SAMPLER = "Euler"
SCHEDULE_TYPE = "Simple"
# A ComfyUI graph names its own sampler and scheduler: A1111's words where A1111 has the same one
# (its sd_samplers_kdiffusion and sd_schedulers names), else ComfyUI's own (res_multistep has none).
A1111_SAMPLERS = {
    "euler": "Euler",
    "euler_ancestral": "Euler a",
    "heun": "Heun",
    "dpm_2": "DPM2",
    "dpm_2_ancestral": "DPM2 a",
    "lms": "LMS",
    "dpmpp_2m": "DPM++ 2M",
    "dpmpp_2m_sde": "DPM++ 2M SDE",
    "dpmpp_sde": "DPM++ SDE",
    "dpmpp_2s_ancestral": "DPM++ 2S a",
    "dpmpp_3m_sde": "DPM++ 3M SDE",
    "lcm": "LCM",
    "ddim": "DDIM",
    "uni_pc": "UniPC",
}
A1111_SCHEDULES = {
    "simple": "Simple",
    "normal": "Normal",
    "karras": "Karras",
    "exponential": "Exponential",
    "sgm_uniform": "SGM Uniform",
    "beta": "Beta",
    "ddim_uniform": "DDIM",
    "kl_optimal": "KL Optimal",
}

# sd-webui-controlnet's infotext: one `ControlNet N` entry per unit, its settings in one quoted
# value, `Module` (the preprocessor: here what the control image shows, already made), `Model`,
# `Weight`; the image is resized to the size asked, which it calls "Just Resize".
CONTROLNET_KEY = "ControlNet 0"
CONTROLNET_RESIZE = "Just Resize"


def controlnet_unit(kind: str, scale: float, model: str = "") -> str:
    """The `ControlNet 0` value: `Module: canny, Model: <name>, Weight: 0.75, Resize Mode: ...`."""
    name = model or "None"  # what sd-webui-controlnet writes for no model; a hosted API names none
    return f"Module: {kind}, Model: {name}, Weight: {scale:g}, Resize Mode: {CONTROLNET_RESIZE}"


# Guidance, one convention both ways. Z-Image's pipeline computes `pos + g * (pos - neg)`
# (diffusers' `guidance_scale` g, 0: off); AUTOMATIC1111 and ComfyUI compute
# `neg + cfg * (pos - neg)`, the same formula at cfg = g + 1 (1: off). So `CFG scale` in the
# `parameters` text is g + 1, what Civitai and A1111 show for the same strength, and reading one
# takes 1 off; the `zimage` record keeps g itself (`params.guidance_scale`, `sent.guidance`).
CFG_KEY = "CFG scale"


def cfg_scale(guidance: float) -> float:
    """diffusers' guidance as A1111's CFG scale."""
    return round(guidance + 1, 6)


def guidance_of(cfg: float) -> float:
    """A1111's (or ComfyUI's) CFG scale as diffusers' guidance."""
    return round(cfg - 1, 6)


# Keys written from what the provider really got (SentValues), not from the params asked for.
WRITTEN_FROM_SENT = frozenset({"Steps", "CFG scale", "Seed", "Size", "Shift"})


def infotext(params: GenerationParams, sent: SentValues, provider: str, table: Table = TABLE) -> str:
    """`prompt`, `Negative prompt: ...` where one was really used, then one `Key: value, ...` line.

    `Steps` is always a number (Civitai drops an image's metadata otherwise): where the provider
    picks its own steps, the count it is documented to run (`SentValues.steps_written`); the
    `zimage` record says that the provider chose them.
    """
    fields: dict[str, object] = {
        "Steps": sent.steps_written,
        "Sampler": A1111_SAMPLERS.get(sent.sampler, sent.sampler) or SAMPLER,
        "Schedule type": A1111_SCHEDULES.get(sent.schedule, sent.schedule) or SCHEDULE_TYPE,
    }
    if sent.guidance:  # sent, and above 0: what A1111 calls CFG above 1
        fields[CFG_KEY] = cfg_scale(sent.guidance)
    fields["Seed"] = sent.seed
    fields["Size"] = f"{sent.width}x{sent.height}"
    if sent.shift is not None:
        fields["Shift"] = sent.shift
    if sent.strength is not None:
        fields["Denoising strength"] = sent.strength
    if sent.control is not None:
        fields[CONTROLNET_KEY] = controlnet_unit(*sent.control, sent.control_model)
    for key, setting in table.infotext_keys().items():  # the table's others, where not the default
        value = getattr(params, setting.name, setting.default)
        if key not in WRITTEN_FROM_SENT and value != setting.default:
            fields[key] = value
    hashes = [f"{name}: {digest}" for name, _scale, digest in sent.loras if digest]  # URL LoRAs: none
    if hashes:
        fields["Lora hashes"] = ", ".join(hashes)
    fields["Model"] = MODEL_NAME
    fields["Provider"] = provider
    # A1111 names its LoRAs in the prompt, as `<lora:name:scale>` (its extra-networks syntax).
    tags = "".join(f" <lora:{name}:{scale:g}>" for name, scale, _digest in sent.loras)
    lines = [params.prompt + tags]
    if sent.negative_sent and params.negative_prompt.strip():
        lines.append(f"Negative prompt: {params.negative_prompt}")
    lines.append(", ".join(f"{key}: {a1111_quote(value)}" for key, value in fields.items()))
    return "\n".join(lines)


def provenance(params: GenerationParams, sent: SentValues, provider: str) -> dict[str, Any]:
    """The `zimage` record: the full parameters asked for, and what the provider really got.

    `sent.steps` is None where the provider picks its own steps; `sent.steps_default` then holds
    the count the `parameters` text shows for other readers.
    """
    values = sent.record()
    return {
        "schema": ZIMAGE_SCHEMA,
        "model": MODEL_NAME,
        "provider": provider,
        "params": without_server_paths(params.model_dump(mode="json")),
        "sent": values,
    }


def without_server_paths(params: dict[str, Any]) -> dict[str, Any]:
    """Dumped params with each local file reference cut to its file name: a PNG leaves the
    machine, and a path (a visitor's upload folder, the owner's home) must not go with it."""
    inputs = params.get("inputs")
    if not isinstance(inputs, dict):
        return params

    cut = {key: shareable_ref(ref) for key in ("image", "mask", "control_image") if (ref := inputs.get(key))}
    loras = [
        {**lora, "ref": shareable_ref(lora["ref"])} if lora_source(lora["ref"]) != "id" else lora
        for lora in inputs.get("loras") or []
    ]
    return {**params, "inputs": {**inputs, **cut, "loras": loras}}


# zlib level 1 with the run-length strategy (Z_RLE), not Pillow's default (level 6, Z_FILTERED):
# after PNG's row filters a picture is mostly runs and small differences, which RLE codes about
# as well as deflate's string search, at level 1's speed. On a 2-core EPYC nine sample photos
# (scikit-image's) came out the size level 6 makes in 0.26x its time (level 1 alone: 1.13x the
# bytes); a photo-like 1024² image 0.94x level 6's bytes in 0.13x its time, noise in 0.72x
# (`python -m benchmarks.png_level`, in benchmarks/RESULTS.md). A sheet of many images keeps
# Pillow's strategy (SHEET_STRATEGY): only deflate's string search finds its repeated cells and
# labels (36 like cells: 1.5 MB against RLE's 6 to 13 MB).
PNG_COMPRESS_LEVEL = 1
PNG_STRATEGY = zlib.Z_RLE
SHEET_STRATEGY = -1  # Pillow's own choice for PNG (Z_FILTERED), as when none is given


def png_with_chunks(
    image: Image.Image,
    chunks: dict[str, str],
    compress_level: int = PNG_COMPRESS_LEVEL,
    strategy: int = PNG_STRATEGY,
) -> bytes:
    """Encode as PNG with text chunks: tEXt for Latin-1 text, iTXt (UTF-8) otherwise.

    That is Pillow's `PngInfo.add_text`, which AUTOMATIC1111 uses: readers that know only
    tEXt (exifr, many viewers) find the text of every Latin-1 prompt, and any prompt survives.
    `strategy`: zlib's, passed as Pillow's `compress_type` (its PNG encoder's zlib strategy).
    """
    info = PngImagePlugin.PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info, compress_level=compress_level, compress_type=strategy)
    return buffer.getvalue()


def png_bytes(image: Image.Image, params: GenerationParams, sent: SentValues, provider: str) -> bytes:
    """PNG with both provenance chunks. A provider's own PNG gets the chunks spliced in, pixels
    untouched: no second encoding (a 1024x1024 PNG takes ~100 ms of CPU to encode)."""
    chunks = {
        PARAMETERS_KEY: infotext(params, sent, provider),
        ZIMAGE_KEY: json.dumps(provenance(params, sent, provider), ensure_ascii=False),
    }
    source = spliceable_png(image)
    if source is not None:
        return splice_text_chunks(source, chunks)
    return png_with_chunks(image, chunks)


def spliceable_png(image: Image.Image) -> bytes | None:
    """The provider's own PNG bytes, when provenance can be spliced in without re-encoding."""
    source = image.info.get(SOURCE_BYTES)
    return source if isinstance(source, bytes) and source.startswith(PNG_SIGNATURE) else None


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def text_chunk(key: str, value: str) -> bytes:
    """One uncompressed text chunk, as Pillow's `PngInfo.add_text` writes it: tEXt when the value
    is Latin-1, else iTXt (UTF-8, no language tag)."""
    name = key.encode("latin-1")
    try:
        return _chunk(b"tEXt", name + b"\0" + value.encode("latin-1"))
    except UnicodeEncodeError:
        return _chunk(b"iTXt", name + b"\0\0\0\0\0" + value.encode("utf-8"))


def splice_text_chunks(png: bytes, chunks: dict[str, str]) -> bytes:
    """`png` with its text chunks replaced by `chunks` (placed after IHDR); other chunks as they were."""
    out, position, ihdr_seen = [PNG_SIGNATURE], len(PNG_SIGNATURE), False
    while position + 8 <= len(png):
        length, kind = struct.unpack(">I4s", png[position : position + 8])
        end = position + 12 + length
        if kind not in _TEXT_CHUNKS:
            out.append(png[position:end])
        if kind == b"IHDR" and not ihdr_seen:
            ihdr_seen = True
            out.extend(text_chunk(key, value) for key, value in chunks.items())
        position = end
        if kind == b"IEND":
            break
    return b"".join(out)


MAX_TEXT_BYTES = 1 << 20  # a compressed text chunk inflates to at most this (as Pillow caps it)
MAX_TEXT_TOTAL = 4 << 20  # all text chunks of one image together: a few MB, whatever their count
# Pillow's own readers (JPEG/WebP EXIF, PNGs through Image.open) keep to the same total.
PngImagePlugin.MAX_TEXT_MEMORY = MAX_TEXT_TOTAL


def png_text_chunks(data: bytes) -> dict[str, str] | None:
    """A PNG's text chunks (tEXt, zTXt, iTXt) read straight from its bytes; None if not a PNG.

    No pixel is decoded, so an image of any size costs only a walk over its chunks; a compressed
    chunk is inflated to MAX_TEXT_BYTES at most, and all chunks together to MAX_TEXT_TOTAL: the
    chunks past that are left unread (400 chunks of 1 MB each cost 4 MB, not 400).
    """
    if not data.startswith(PNG_SIGNATURE):
        return None
    found: dict[str, str] = {}
    budget = [MAX_TEXT_TOTAL]  # text bytes still allowed
    position = len(PNG_SIGNATURE)
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        end = position + 12 + length
        body = data[position + 8 : end - 4]
        if end > len(data) or struct.unpack(">I", data[end - 4 : end])[0] != zlib.crc32(kind + body):
            break  # truncated or damaged from here on: keep what was read before
        position = end
        if kind == b"IEND" or budget[0] <= 0:
            break
        try:
            if kind == b"tEXt":
                key, _, value = body.partition(b"\0")
                found[key.decode("latin-1")] = _spend(budget, value).decode("latin-1")
            elif kind == b"zTXt":
                key, _, rest = body.partition(b"\0")
                found[key.decode("latin-1")] = _inflate(rest[1:], budget).decode("latin-1")
            elif kind == b"iTXt":
                key, _, rest = body.partition(b"\0")
                compressed, rest = rest[0], rest[2:]
                _language, _, rest = rest.partition(b"\0")
                _translated, _, text = rest.partition(b"\0")
                value = _inflate(text, budget) if compressed else _spend(budget, text)
                found[key.decode("latin-1")] = value.decode("utf-8")
        except (ValueError, IndexError, zlib.error):
            continue  # one unreadable chunk: skip it, keep the rest
    return found


def _spend(budget: list[int], text: bytes) -> bytes:
    """Take `text` from the image's text budget; past it, the chunk is skipped."""
    if len(text) > budget[0]:
        budget[0] = 0
        raise ValueError("the image's text chunks pass the total cap")
    budget[0] -= len(text)
    return text


def _inflate(data: bytes, budget: list[int]) -> bytes:
    inflater = zlib.decompressobj()
    out = inflater.decompress(data, min(MAX_TEXT_BYTES, budget[0]) + 1)
    if inflater.unconsumed_tail or len(out) > MAX_TEXT_BYTES:
        raise ValueError("a text chunk inflates past the cap")
    return _spend(budget, out)


def read_text_chunks(data: bytes) -> dict[str, str]:
    """The PNG's text chunks (tEXt, zTXt and iTXt), read without decoding any pixel; {} if not a PNG."""
    return png_text_chunks(data) or {}


def read_provenance(data: bytes) -> dict[str, Any] | None:
    raw = read_text_chunks(data).get(ZIMAGE_KEY)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def without_metadata(png: bytes) -> bytes:
    """The image's pixels alone, as a PNG without a text chunk: what a blind vote shows, since the
    record and the `parameters` text name the provider and the settings."""
    with Image.open(io.BytesIO(png)) as image:
        image.load()
        pixels = image.copy()
    pixels.info = {}
    buffer = io.BytesIO()
    pixels.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL, compress_type=PNG_STRATEGY)
    return buffer.getvalue()
