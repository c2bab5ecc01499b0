"""Annotated image sheets: a side-by-side row of a comparison, or an X/Y sweep grid."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from functools import cache

from PIL import Image, ImageDraw, ImageFont

BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)
FAILED = (235, 235, 235)
PAD = 8


@cache
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def placeholder(size: tuple[int, int], message: str) -> Image.Image:
    """A grey cell standing in for a side or cell that produced no image, with its error."""
    image = Image.new("RGB", size, FAILED)
    draw = ImageDraw.Draw(image)
    font = _font(max(12, size[0] // 24))
    width_chars = max(10, size[0] // max(7, size[0] // 40))
    text = "\n".join(textwrap.wrap(message, width_chars)[:12])
    draw.multiline_text((PAD, PAD), text, fill=(150, 20, 20), font=font)
    return image


def _label_height(labels: Sequence[str], font_size: int, width: int) -> int:
    lines = max(
        (len(textwrap.wrap(label, max(8, width // (font_size // 2 + 1)))) for label in labels), default=0
    )
    return lines * (font_size + 4) + 2 * PAD if lines else 0


def render_grid(
    cells: Sequence[Sequence[Image.Image | None]],
    column_labels: Sequence[str],
    row_labels: Sequence[str] = (),
    *,
    errors: Sequence[Sequence[str | None]] | None = None,
) -> Image.Image:
    """Rows x columns of images with column labels on top and row labels on the left.

    Every cell is drawn at the size of the largest image so differently sized sides line up;
    a missing image becomes a grey cell carrying its error message.
    """
    images = [image for row in cells for image in row if image is not None]
    cell_w = max((image.width for image in images), default=256)
    cell_h = max((image.height for image in images), default=256)
    font_size = max(14, cell_w // 20)
    font = _font(font_size)
    top = _label_height(column_labels, font_size, cell_w)
    left = (
        (max((int(font.getlength(label)) for label in row_labels), default=0) + 2 * PAD)
        if any(row_labels)
        else 0
    )
    columns = max(len(row) for row in cells)
    sheet = Image.new("RGB", (left + columns * cell_w, top + len(cells) * cell_h), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    wrap = max(8, cell_w // (font_size // 2 + 1))
    for index, label in enumerate(column_labels):
        text = "\n".join(textwrap.wrap(label, wrap))
        draw.multiline_text((left + index * cell_w + PAD, PAD), text, fill=INK, font=font)
    for row_index, row in enumerate(cells):
        y = top + row_index * cell_h
        if row_index < len(row_labels):
            draw.text((PAD, y + cell_h // 2 - font_size // 2), row_labels[row_index], fill=INK, font=font)
        for column_index, image in enumerate(row):
            x = left + column_index * cell_w
            if image is None:
                message = (errors[row_index][column_index] if errors else None) or "no image"
                image = placeholder((cell_w, cell_h), message)
            offset = ((cell_w - image.width) // 2, (cell_h - image.height) // 2)
            sheet.paste(image.convert("RGB"), (x + offset[0], y + offset[1]))
    return sheet
