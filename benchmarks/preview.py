"""What a live preview costs beside the step it follows, on the tiny model's real pipeline code.

For each size: the median time of one latent -> RGB preview (the projection alone, and with
the x0 estimate the step callback makes first), against the median time of one denoising step
of the tiny pipeline at that size, measured in the same run. The real model's steps are far
slower (about 94 ms per transformer pass at 1024² on an H100), so the ratio here is an upper
bound of what previews add.

    python -m benchmarks.preview [--repeats 30]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import torch

from benchmarks._machine import machine, median_ms
from zimage_ui.providers.local.preview import estimate_clean_latents, latent_to_rgb
from zimage_ui.providers.local.tiny_model import build_tiny_pipeline

SIZES = (512, 1024, 2048)
STEPS = 8


def step_ms(pipeline: object, size: int) -> float:
    """The median wall time between step callbacks of one tiny-pipeline call at `size`."""
    stamps: list[float] = []

    def on_step(_pipe: object, _step: int, _t: object, tensors: dict[str, object]) -> dict[str, object]:
        stamps.append(time.perf_counter())
        return tensors

    pipeline(  # type: ignore[operator]
        prompt="a lighthouse",
        height=size,
        width=size,
        num_inference_steps=STEPS,
        guidance_scale=0.0,
        generator=torch.Generator("cpu").manual_seed(1),
        callback_on_step_end=on_step,
    )
    return statistics.median((b - a) * 1000 for a, b in itertools.pairwise(stamps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    pipeline = build_tiny_pipeline()
    print(f"machine: {machine()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| size | preview ms | with x0 estimate ms | tiny step ms | preview / step |")
    print("|---|---|---|---|---|")
    for size in SIZES:
        generator = torch.Generator().manual_seed(0)
        before = torch.randn(1, 16, size // 8, size // 8, generator=generator)
        after = before * 0.9
        project = median_ms(lambda after=after: latent_to_rgb(after), args.repeats)
        estimate = median_ms(
            lambda before=before, after=after: latent_to_rgb(estimate_clean_latents(before, after, 0.9, 0.8)),
            args.repeats,
        )
        step = step_ms(pipeline, size)
        print(f"| {size}² | {project:.2f} | {estimate:.2f} | {step:.1f} | {estimate / step:.1%} |")


if __name__ == "__main__":
    main()
