"""The mask editor, bounded: Gradio's own ImageEditor decodes every layer a client sends before a
handler sees it (ten 10 KB layers of 9000x9000 take gigabytes). `mask_editor` hands the handler the
layers as files, undecoded, and `mask_from_editor` reads each one's size from its header, refuses
it past the input's pixel cap, then decodes one layer at a time into the mask.
"""

from __future__ import annotations

import io
import types
from typing import Any

import gradio as gr
import numpy as np
from gradio.data_classes import FileData
from PIL import Image

from zimage_ui.errors import InvalidParams
from zimage_ui.image_inputs import MAX_INPUT_PIXELS

MAX_LAYERS = 4  # the page shows one ("Mask"); a client sending more gets the first four read


def mask_editor(**options: Any) -> gr.ImageEditor:
    """A gr.ImageEditor whose value reaches the handler as `{"layers": [path or bytes, ...]}`: no
    background, no composite (the mask is made from the layers alone), nothing decoded. (Its
    preprocess is replaced on the instance: a subclass of a Gradio component would make Gradio
    write a `.pyi` file beside this module at import.)"""
    editor = gr.ImageEditor(**options)
    editor.preprocess = types.MethodType(_layers_undecoded, editor)  # type: ignore[method-assign]
    return editor


def _layers_undecoded(editor: gr.ImageEditor, payload: Any) -> dict[str, Any] | None:
    if payload is None:
        return None
    layers: list[Any] = list(payload.layers or [])
    if payload.id is not None:
        cached = editor.blob_storage.pop(payload.id, None)
        layers = list(cached.layers) if cached is not None else []
    kept = [layer.path if isinstance(layer, FileData) else layer for layer in layers if layer]
    return {"background": None, "layers": kept[:MAX_LAYERS], "composite": None}


def _layer(value: Any, max_pixels: int) -> Image.Image | None:
    """One painted layer, its size checked from the header before any pixel is decoded."""
    if isinstance(value, Image.Image):
        return value
    if isinstance(value, np.ndarray):
        return Image.fromarray(value)
    if isinstance(value, (bytes, bytearray)):
        source: Any = io.BytesIO(value)
    elif isinstance(value, str):
        source = value
    else:
        return None
    try:
        picture = Image.open(source)
    except (OSError, ValueError, Image.DecompressionBombError):
        raise InvalidParams(
            {"mask": "a painted layer is not a readable image: paint the mask again"}
        ) from None
    if picture.width * picture.height > max_pixels:
        size = f"{picture.width}x{picture.height}"
        raise InvalidParams({"mask": f"a painted layer is {size}, more than {max_pixels:,} pixels: refused"})
    return picture


def mask_from_editor(value: Any, max_pixels: int = MAX_INPUT_PIXELS) -> Image.Image | None:
    """The mask painted in the editor (`{"background", "layers", "composite"}`): white where any
    layer is painted, black elsewhere; None when nothing is painted. InvalidParams naming `mask`
    for a layer past `max_pixels` or unreadable."""
    if not isinstance(value, dict):
        return None
    painted: np.ndarray | None = None
    for layer in (value.get("layers") or [])[:MAX_LAYERS]:
        picture = _layer(layer, max_pixels)
        if picture is None:
            continue
        try:
            alpha = np.asarray(picture.convert("RGBA").getchannel("A")) > 0
        except (OSError, ValueError, Image.DecompressionBombError):
            raise InvalidParams({"mask": "a painted layer is not a readable image: paint again"}) from None
        painted = alpha if painted is None or painted.shape != alpha.shape else painted | alpha
    if painted is None or not painted.any():
        return None
    return Image.fromarray(np.where(painted, 255, 0).astype(np.uint8), "L")
