"""Reading a run's image inputs: the input image, the mask, the ControlNet control image and the
LoRA files its params name.

`GenerationParams.inputs` holds references only (a path or an https URL), so params stay plain
values (presets, links, ZeroGPU's pickling). Just before a local run the references are read:
`fetch_remote` downloads the URLs (the HTTP engine's size cap, redirects, retries), then
`load_inputs` reads the files, checks each image's size in bytes and, from its header, in
pixels before any pixel is decoded, checks the mask against the image, and resizes both to the
size asked (the way A1111's "Just resize" does). Every problem is an InvalidParams naming the
field. LoRA files are hashed (sha256, 12 hex digits as in A1111's `Lora hashes`): the hash names
the adapter, so one file is loaded once, and goes into the PNG's provenance.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, ImageOps

from zimage_ui.errors import InvalidParams, ProviderError
from zimage_ui.lora_downloads import MAX_LORA_BYTES, display_name
from zimage_ui.params import MAX_SIDE, GenerationParams, ImageInputs, LoraRef, lora_source

if TYPE_CHECKING:
    from zimage_ui.net.http import HttpEngine

MAX_INPUT_BYTES = 50 * 2**20
MAX_INPUT_PIXELS = MAX_SIDE * MAX_SIDE * 4  # a 4096x4096 photo, resized down to the size asked
HASH_CHARS = 12

# An image past Pillow's bomb threshold is refused, never decoded with a warning (as in http.py).
warnings.simplefilter("error", Image.DecompressionBombWarning)


@dataclass(frozen=True)
class LoraFile:
    """One LoRA as a run applies it: its file, A1111 name (the file's stem), scale and short hash."""

    path: str
    name: str
    scale: float
    hash: str

    @property
    def adapter(self) -> str:
        """The adapter name in the pipeline: from the file's contents, so a file loads once."""
        return f"lora_{self.hash}"


@dataclass(frozen=True)
class LoadedInputs:
    """The decoded inputs of one run (picklable: ZeroGPU's worker gets them as they are)."""

    image: Image.Image | None = None  # RGB, the size asked
    mask: Image.Image | None = None  # L, the size asked; white: redraw
    loras: tuple[LoraFile, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)
    control: Image.Image | None = None  # ControlNet's control image: RGB, the size asked


def _is_url(ref: str) -> bool:
    return ref.lower().startswith("https://")


def read_input_file(name: str, ref: str, cap: int) -> bytes:
    """A local input file's bytes, its size checked before reading (InvalidParams naming `name`)."""
    path = Path(ref).expanduser()
    try:
        size = path.stat().st_size
        if size > cap:
            raise InvalidParams(
                {name: f"{size / 2**20:.1f} MB is over the {cap // 2**20} MB limit: not read"}
            )
        return path.read_bytes()
    except OSError as exc:
        reason = "a folder, not a file" if path.is_dir() else (exc.strerror or str(exc)).lower()
        raise InvalidParams({name: f"can't read {ref[:200]!r}: {reason}"}) from None


def decode_input(name: str, data: bytes, max_pixels: int = MAX_INPUT_PIXELS) -> Image.Image:
    """Check then decode: bytes capped, pixels counted from the header before decoding; turned
    upright as its EXIF orientation says (a phone photo), so the mask is compared as shown."""
    if len(data) > MAX_INPUT_BYTES:
        raise InvalidParams({name: f"the image is larger than {MAX_INPUT_BYTES // 2**20} MB: refused"})
    try:
        with Image.open(io.BytesIO(data)) as probe:
            if probe.width * probe.height > max_pixels:
                raise InvalidParams(
                    {name: f"{probe.width}x{probe.height} has more than {max_pixels:,} pixels: refused"}
                )
            probe.verify()
        opened = Image.open(io.BytesIO(data))
        opened.load()
        image = ImageOps.exif_transpose(opened)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise InvalidParams({name: "the image is a decompression bomb: refused"}) from None
    except (OSError, SyntaxError, ValueError):
        raise InvalidParams({name: "not a readable image (PNG, JPEG or WebP)"}) from None
    return image


async def fetch_remote(inputs: ImageInputs | None, engine: HttpEngine | None = None) -> dict[str, bytes]:
    """The https references' bytes by reference, downloaded by the HTTP engine (size-capped, pixels
    counted before decoding, GETs retried; never a provider's key). `engine`: for tests."""
    from zimage_ui.net.http import HttpEngine
    from zimage_ui.net.images import SOURCE_BYTES

    fetched: dict[str, bytes] = {}
    refs = (inputs.image, inputs.mask, inputs.control_image) if inputs else ()
    urls = [ref for ref in refs if ref and _is_url(ref)]
    if inputs is None or not urls:
        return fetched
    engine = engine or HttpEngine(max_image_bytes=MAX_INPUT_BYTES)
    async with engine.session(
        "input image", headers={}, secrets=(), key_hint="", max_pixels=MAX_INPUT_PIXELS, public_only=True
    ) as session:
        for url in dict.fromkeys(urls):
            try:
                image = await session.download_image(url)
            except ProviderError as exc:
                raise InvalidParams({_url_field(inputs, url): exc.detail}) from None
            data = image.info.get(SOURCE_BYTES)
            fetched[url] = data if isinstance(data, bytes) else b""
    return fetched


def _url_field(inputs: ImageInputs, url: str) -> str:
    """The params field a downloaded URL came from (for the error naming it)."""
    if url == inputs.image:
        return "image"
    return "control_image" if url == inputs.control_image else "mask"


def lora_file(ref: str, scale: float, downloaded: Mapping[str, str] | None = None) -> LoraFile:
    """A LoRA file checked and hashed (InvalidParams naming `loras` when it can't be read).

    An https URL or hub id is read from its downloaded copy (`downloaded`, from
    `lora_downloads.download_loras`), named after the URL's file or the repo, not the cache file.
    """
    if lora_source(ref) != "file":
        copy = (downloaded or {}).get(ref)
        if copy is None:
            raise InvalidParams(
                {"loras": f"the LoRA {ref[:200]!r} was not downloaded: the local model downloads it first"}
            )
        read = lora_file(copy, scale)
        return replace(read, name=display_name(LoraRef(ref=ref, scale=scale)))
    path = Path(ref).expanduser()
    try:
        size = path.stat().st_size
        if size > MAX_LORA_BYTES:
            raise InvalidParams({"loras": f"{ref[:200]!r} is over {MAX_LORA_BYTES // 2**30} GB: not read"})
        digest = hashlib.sha256()
        with path.open("rb") as file:
            while chunk := file.read(1 << 20):
                digest.update(chunk)
    except OSError as exc:
        reason = "a folder, not a file" if path.is_dir() else (exc.strerror or str(exc)).lower()
        raise InvalidParams({"loras": f"can't read {ref[:200]!r}: {reason}"}) from None
    return LoraFile(str(path), path.stem, scale, digest.hexdigest()[:HASH_CHARS])


def _image(name: str, ref: str, fetched: dict[str, bytes]) -> Image.Image:
    data = fetched.get(ref) if _is_url(ref) else read_input_file(name, ref, MAX_INPUT_BYTES)
    if data is None:
        raise InvalidParams({name: f"{ref[:200]!r} was not downloaded"})
    return decode_input(name, data)


def load_inputs(
    params: GenerationParams,
    fetched: dict[str, bytes] | None = None,
    *,
    skip_urls: bool = False,
    lora_paths: Mapping[str, str] | None = None,
) -> LoadedInputs:
    """The params' image inputs read, checked and sized for the run (InvalidParams on a problem).

    `fetched`: the URLs' bytes from `fetch_remote`; a URL not in it is refused, or with
    `skip_urls` (checking local files before any work, as the CLI does) left for the run.
    `lora_paths`: the downloaded copies of URL and hub-id LoRAs (`lora_downloads.download_loras`).
    """
    inputs = params.inputs
    if inputs is None:
        return LoadedInputs()
    if skip_urls and any(ref and _is_url(ref) for ref in (inputs.image, inputs.mask)):
        inputs = inputs.model_copy(update={"image": None, "mask": None})
    if skip_urls and inputs.control_image and _is_url(inputs.control_image):
        inputs = inputs.model_copy(update={"control_image": None})
    fetched = fetched or {}
    loras = tuple(
        lora_file(lora.ref, lora.scale, lora_paths)
        for lora in inputs.loras
        if not (skip_urls and lora.source != "file")  # downloaded by the run, or a provider's own
    )
    if inputs.control_image is not None:  # never with an input image (the params refuse both)
        control, control_notes = _control(inputs.control_image, fetched, params)
        return LoadedInputs(loras=loras, notes=control_notes, control=control)
    if inputs.image is None:
        return LoadedInputs(loras=loras)
    source = _image("image", inputs.image, fetched)
    size = (params.width, params.height)
    notes: list[str] = []
    mask = None
    if inputs.mask is not None:
        mask = _image("mask", inputs.mask, fetched)
        if mask.size != source.size:
            raise InvalidParams(
                {
                    "mask": f"{mask.width}x{mask.height} does not match the input image's "
                    f"{source.width}x{source.height}: give a mask of the image's size"
                }
            )
        mask = mask.convert("L")
        if mask.size != size:
            mask = mask.resize(size, Image.Resampling.NEAREST)
    image = source.convert("RGB")
    if image.size != size:
        notes.append(f"input image {source.width}x{source.height} resized to {params.size}")
        image = image.resize(size, Image.Resampling.LANCZOS)
    return LoadedInputs(image, mask, loras, tuple(notes))


def _control(
    ref: str, fetched: dict[str, bytes], params: GenerationParams
) -> tuple[Image.Image, tuple[str, ...]]:
    """The control image read and checked like the input image (same caps), RGB at the size asked."""
    source = _image("control_image", ref, fetched)
    control = source.convert("RGB")
    size = (params.width, params.height)
    if control.size == size:
        return control, ()
    note = f"control image {source.width}x{source.height} resized to {params.size}"
    return control.resize(size, Image.Resampling.LANCZOS), (note,)
