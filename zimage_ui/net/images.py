"""Reading an image a provider sent: capped in bytes, checked in pixels from its header before any
pixel is decoded (a decompression bomb is a refusal), base64 payloads included."""

from __future__ import annotations

import base64
import binascii
import io
import warnings

from PIL import Image

from zimage_ui.errors import (
    MalformedResponse,
)

MAX_IMAGE_BYTES = 50 * 2**20
PIXEL_HEADROOM = 4  # an image may have up to 4x the pixels asked (providers snap sizes up)
NO_PIXEL_LIMIT = 2048 * 2048 * PIXEL_HEADROOM
SOURCE_BYTES = "zimage-source-bytes"  # Image.info key: the PNG a provider sent, kept to avoid re-encoding

# An image past Pillow's bomb threshold is refused, never decoded with a warning.
warnings.simplefilter("error", Image.DecompressionBombWarning)


def decode_image(
    provider: str, data: bytes, max_bytes: int = MAX_IMAGE_BYTES, max_pixels: int = NO_PIXEL_LIMIT
) -> Image.Image:
    """Validate and load image bytes with Pillow; anything else is a MalformedResponse.

    The pixel count is read from the header and checked before any pixel is decoded.
    """
    if len(data) > max_bytes:
        raise MalformedResponse(provider, f"the image is larger than {max_bytes // 2**20} MB: refused")
    try:
        with Image.open(io.BytesIO(data)) as probe:
            if probe.width * probe.height > max_pixels:
                raise MalformedResponse(
                    provider,
                    f"the image is {probe.width}x{probe.height}, far more pixels than asked: refused",
                )
            probe.verify()
        image = Image.open(io.BytesIO(data))
        image.load()
        image.info[SOURCE_BYTES] = data  # lets the PNG writer add provenance without re-encoding
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise MalformedResponse(provider, "the image is a decompression bomb: refused") from None
    except (OSError, SyntaxError, ValueError):
        raise MalformedResponse(
            provider, "the result is not a readable image: retry; if it persists, report it to the provider"
        ) from None
    return image


def b64_payload(provider: str, text: str, max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
    """The bytes of an image sent inline as base64 (optionally a `data:image/...;base64,` URI)."""
    payload = text.split(",", 1)[1] if text.startswith("data:") else text
    if len(payload) * 3 // 4 > max_bytes:
        raise MalformedResponse(provider, f"the image is larger than {max_bytes // 2**20} MB: refused")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedResponse(provider, "the inline image is not valid base64: retry") from None


def decode_b64_image(
    provider: str, text: str, max_bytes: int = MAX_IMAGE_BYTES, max_pixels: int = NO_PIXEL_LIMIT
) -> Image.Image:
    """An image sent inline as base64, checked like a downloaded one."""
    return decode_image(provider, b64_payload(provider, text, max_bytes), max_bytes, max_pixels)
