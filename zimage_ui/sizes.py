"""Size presets, grouped as the official Z-Image-Turbo Space groups them, plus 512 and 768 for
quick drafts."""

from __future__ import annotations

import re
from math import gcd

Sizes = tuple[tuple[int, int], ...]
SIZE_STEP = 16  # the pipeline's sizes are whole multiples of 16 (VAE 8 x patch 2)
_1024: Sizes = (
    (1024, 1024), (1152, 896), (896, 1152), (1152, 864), (864, 1152), (1248, 832),
    (832, 1248), (1280, 720), (720, 1280), (1344, 576), (576, 1344),
)  # fmt: skip


def _scaled(sizes: Sizes, factor: float) -> Sizes:
    """Quick sizes for drafts: the 1024 family's ratios at a smaller scale, on the 16 grid."""
    return tuple(
        (round(w * factor / SIZE_STEP) * SIZE_STEP, round(h * factor / SIZE_STEP) * SIZE_STEP)
        for w, h in sizes
    )


SIZE_FAMILIES: dict[str, Sizes] = {
    "512": _scaled(_1024, 0.5),
    "768": _scaled(_1024, 0.75),
    "1024": _1024,
    "1280": (
        (1280, 1280), (1440, 1120), (1120, 1440), (1472, 1104), (1104, 1472), (1536, 1024),
        (1024, 1536), (1536, 864), (864, 1536), (1680, 720), (720, 1680),
    ),
    "1536": (
        (1536, 1536), (1728, 1344), (1344, 1728), (1728, 1296), (1296, 1728), (1872, 1248),
        (1248, 1872), (2048, 1152), (1152, 2048), (2016, 864), (864, 2016),
    ),
}  # fmt: skip

# Ratios as the official Space names them (some sizes are close to, not exactly, the ratio).
_NAMED_RATIOS = ((1, 1), (9, 7), (7, 9), (4, 3), (3, 4), (3, 2), (2, 3), (16, 9), (9, 16), (21, 9), (9, 21))


def aspect_label(width: int, height: int) -> str:
    """The nearest common ratio, e.g. 1152x896 -> "9:7", 1344x576 -> "21:9"."""
    exact = gcd(width, height)
    if (width // exact, height // exact) in _NAMED_RATIOS:
        return f"{width // exact}:{height // exact}"
    ratio = width / height
    w, h = min(_NAMED_RATIOS, key=lambda pair: abs(pair[0] / pair[1] - ratio))
    return f"{w}:{h}"


def size_label(width: int, height: int) -> str:
    return f"{width}x{height} ({aspect_label(width, height)})"


CUSTOM_SIZE = "custom"  # the Size choice shown when width x height is none of the family's sizes


def family_choices(family: str) -> list[tuple[str, str]]:
    """Dropdown (label, value) pairs for one family; value is "WxH"."""
    return [(size_label(w, h), f"{w}x{h}") for w, h in SIZE_FAMILIES[family]]


def family_of(size: str, current: str) -> str | None:
    """The family that lists a "WxH" size: the current one when it does, else the first that does."""
    for family in (current, *SIZE_FAMILIES):
        if family in SIZE_FAMILIES and size in {value for _label, value in family_choices(family)}:
            return family
    return None


def size_choices(family: str) -> list[tuple[str, str]]:
    """The Size dropdown's choices: the family's sizes, then "Custom" for any other width x height."""
    return [*family_choices(family), ("Custom", CUSTOM_SIZE)]


_SIZE = re.compile(r"\s*(\d{1,6})\s*[xX]\s*(\d{1,6})\s*")


def parse_size(value: str) -> tuple[int, int]:
    """(512, 768) from "512x768" or "512X768"; ValueError for anything else."""
    match = _SIZE.fullmatch(value)
    if not match:
        raise ValueError(f"{value[:40]!r} is not WxH, e.g. 512x512")
    return int(match[1]), int(match[2])
