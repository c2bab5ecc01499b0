"""What the PNG compression costs: encode time and file size of one generated image.

For each size and content, the median time to encode with the app's own writer
(`metadata.png_with_chunks`, provenance chunks included): the app's setting (level 1, zlib's
run-length strategy), then levels 1, 3 and 6 (Pillow's default) with Pillow's own strategy,
and each file's time and size against level 6's, measured in one run. "photo-like" is smooth
colour with fine grain (what a diffusion model draws); "flat" is solid shapes and text (a
poster, a logo); "noise" is the worst case (the tiny model's untrained output).

    python -m benchmarks.png_level [--repeats 5]
"""

from __future__ import annotations

import argparse
from functools import partial

import numpy as np
from PIL import Image, ImageDraw

from benchmarks._machine import machine, median_ms
from zimage_ui import metadata

PILLOWS_STRATEGY = metadata.SHEET_STRATEGY  # Pillow's own choice for PNG (Z_FILTERED)
WRITERS = (  # (label, level, zlib strategy)
    ("1 + RLE (the app's)", metadata.PNG_COMPRESS_LEVEL, metadata.PNG_STRATEGY),
    ("1", 1, PILLOWS_STRATEGY),
    ("3", 3, PILLOWS_STRATEGY),
    ("6", 6, PILLOWS_STRATEGY),
)
SIZES = (512, 1024, 2048)
CHUNKS = {"parameters": "a red fox in snow\nSteps: 8, Sampler: Euler, Seed: 7, Size: 1024x1024"}


def photo_like(size: int, rng: np.random.Generator) -> Image.Image:
    """Soft shapes (blurred noise at a few scales) over a colour gradient, with faint grain."""
    y, x = np.mgrid[0:size, 0:size] / size
    image = np.stack([0.6 * x + 0.2, 0.5 * y + 0.25, 0.7 - 0.4 * x * y], axis=-1)
    for scale in (64, 16, 4):
        blobs = Image.fromarray(rng.integers(0, 256, (size // scale, size // scale, 3), dtype=np.uint8))
        soft = blobs.resize((size, size), Image.Resampling.BICUBIC)
        image += (np.asarray(soft) / 255 - 0.5) * (0.5 / (64 // scale + 1))
    image += rng.normal(0, 0.004, image.shape)
    return Image.fromarray((image.clip(0, 1) * 255).astype(np.uint8))


def flat(size: int, rng: np.random.Generator) -> Image.Image:
    """Solid shapes on a plain ground, with a line of text."""
    image = Image.new("RGB", (size, size), (240, 230, 200))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x, y = rng.integers(0, size, 2)
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        draw.ellipse((int(x), int(y), int(x) + size // 4, int(y) + size // 5), fill=colour)
    draw.text((size // 10, size * 9 // 10), "OPEN 24 HOURS " * 3, fill=(10, 10, 10))
    return image


def noise(size: int, rng: np.random.Generator) -> Image.Image:
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    print(f"machine: {machine()}")
    print(f"medians of {args.repeats}; size and time ratios against level 6 in the same run\n")
    print("| content | size | writer | encode ms | x level 6 time | KiB | x level 6 size |")
    print("|---|---|---|---|---|---|---|")
    for name, make in (("photo-like", photo_like), ("flat", flat), ("noise", noise)):
        for size in SIZES:
            image = make(size, rng)
            measured = {}
            for label, level, strategy in WRITERS:
                encode = partial(metadata.png_with_chunks, image, CHUNKS, level, strategy)
                measured[label] = (median_ms(encode, args.repeats), len(encode()))
            base_ms, base_bytes = measured["6"]
            for label, (ms, length) in measured.items():
                print(
                    f"| {name} | {size}² | {label} | {ms:.0f} | {ms / base_ms:.2f} | {length / 1024:.0f} "
                    f"| {length / base_bytes:.2f} |"
                )


if __name__ == "__main__":
    main()
