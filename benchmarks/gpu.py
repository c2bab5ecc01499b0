"""The local backend's speed, one row per speed option against plain bf16, through its own code.

Each row builds a fresh pipeline, makes it ready as the app does (`loading.configure`: the
speed settings of that row, then the warm-up), and times images through the provider's own
generation path (`generation.run_pipeline`: prompt embeddings, steps with previews, the
VAE decode), then PNG encoding with provenance (`metadata.png_bytes`). Medians of `--repeats`
runs after one warm-up run, split into text encoding, denoising, VAE decode and PNG, with peak
memory. Every run encodes its prompt, except the "prompt cache" row (a re-roll of one prompt).

The model: `ZIMAGE_MODEL_ID` when it is a local folder (loaded by `loading.from_pretrained`);
else on a GPU the full-size architecture with random weights (the `ZImageTransformer2DModel()`
defaults are the real configuration, a Qwen3-4B-shaped text encoder, the 16-channel Flux VAE:
time per step does not depend on the weights' values); on the CPU the tiny model.

    python -m benchmarks.gpu                            # a GPU: 1024x1024, 8 steps
    python -m benchmarks.gpu --device cpu --size 256    # here: the tiny model, same code path
    python -m benchmarks.gpu ... --write                # also append the table to RESULTS.md
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import resource
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks._machine import machine
from zimage_ui.cancel import CancelToken
from zimage_ui.params import GenerationParams
from zimage_ui.providers.base import Progress, SentValues
from zimage_ui.providers.local import generation, loading
from zimage_ui.providers.local.devices import DeviceChoice
from zimage_ui.providers.local.prompt_cache import PromptCache
from zimage_ui.providers.local.speed import speed_settings

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
SPEED_VARIABLES = (
    "ZIMAGE_ATTENTION_BACKEND",
    "ZIMAGE_COMPILE",
    "ZIMAGE_MEMORY",
    "ZIMAGE_CPU_OFFLOAD",
    "ZIMAGE_FAST",
    "ZIMAGE_PROMPT_CACHE",
)
PLAIN = {"ZIMAGE_ATTENTION_BACKEND": "native", "ZIMAGE_COMPILE": "0"}


@dataclass(frozen=True)
class Option:
    name: str
    environ: dict[str, str]
    gpu_only: bool = False
    cached_prompt: bool = False  # a re-roll: the prompt's embeddings are already cached


OPTIONS = (
    Option("plain (native attention, eager)", PLAIN),
    Option("default (chosen attention + compile)", {}),
    Option("attention only", {"ZIMAGE_COMPILE": "0"}, gpu_only=True),
    Option("compile only", {"ZIMAGE_ATTENTION_BACKEND": "native", "ZIMAGE_COMPILE": "1"}, gpu_only=True),
    Option("fp8 weights (ZIMAGE_FAST=fp8)", {"ZIMAGE_FAST": "fp8"}, gpu_only=True),
    Option("16 GB mode (ZIMAGE_MEMORY=16gb)", {"ZIMAGE_MEMORY": "16gb"}, gpu_only=True),
    Option("default + prompt cache (a re-roll)", {}, cached_prompt=True),
)


@dataclass
class Phases:
    encode: list[float] = field(default_factory=list)
    denoise: list[float] = field(default_factory=list)
    decode: list[float] = field(default_factory=list)
    png: list[float] = field(default_factory=list)

    def total(self) -> float:
        return sum(statistics.median(values) for values in (self.encode, self.denoise, self.decode, self.png))


@contextlib.contextmanager
def speed_environ(values: dict[str, str]) -> Iterator[None]:
    """Exactly this row's speed variables set, the others unset, for the block's life."""
    saved = {name: os.environ.get(name) for name in SPEED_VARIABLES}
    for name in SPEED_VARIABLES:
        os.environ.pop(name, None)
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def build(choice: DeviceChoice) -> tuple[Any, str]:
    """A pipeline to time and what it is: the local checkpoint, full size random, or tiny."""
    folder = Path(loading.model_id())
    if folder.is_dir():
        notes: list[str] = []
        return loading.from_pretrained(str(folder), choice, on_device=False, notes=notes), str(folder)
    if choice.device == "cpu":
        from zimage_ui.providers.local.tiny_model import build_tiny_pipeline

        return build_tiny_pipeline(), "the tiny model"
    return full_size_random(choice), "full-size architecture, random weights"


def full_size_random(choice: DeviceChoice) -> Any:
    """Z-Image-Turbo's architecture with random weights, built on the device in its dtype."""
    import torch
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        ZImagePipeline,
        ZImageTransformer2DModel,
    )
    from transformers import Qwen3Config, Qwen3Model

    from zimage_ui.providers.local.tiny_model import build_tokenizer

    dtype = choice.torch_dtype()
    with torch.device(choice.device):
        transformer = ZImageTransformer2DModel().to(dtype)  # the defaults are the real configuration
        text_encoder = Qwen3Model(
            Qwen3Config(  # Qwen3-4B's shape
                hidden_size=2560,
                intermediate_size=9728,
                num_hidden_layers=36,
                num_attention_heads=32,
                num_key_value_heads=8,
                head_dim=128,
                vocab_size=151936,
                max_position_embeddings=40960,
                rope_theta=1_000_000.0,
                rms_norm_eps=1e-6,
            )
        ).to(dtype)
        vae = AutoencoderKL(  # the Flux VAE
            in_channels=3,
            out_channels=3,
            down_block_types=["DownEncoderBlock2D"] * 4,
            up_block_types=["UpDecoderBlock2D"] * 4,
            block_out_channels=[128, 256, 512, 512],
            layers_per_block=2,
            latent_channels=16,
            norm_num_groups=32,
            sample_size=1024,
            scaling_factor=0.3611,
            shift_factor=0.1159,
            use_quant_conv=False,
            use_post_quant_conv=False,
        ).to(dtype)
    return ZImagePipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=False),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=build_tokenizer(),
        transformer=transformer,
    )


class TimedPrompts:
    """The provider's prompt cache, timed: every call encodes, unless `cached`."""

    def __init__(self, device: str, cached: bool) -> None:
        self.inner = PromptCache(8 if cached else 0)
        self.device = device
        self.seconds = 0.0

    def encode(self, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        result = self.inner.encode(*args, **kwargs)
        sync(self.device)
        self.seconds = time.perf_counter() - started
        return result


def time_row(pipeline: Any, option: Option, params: GenerationParams, device: str, repeats: int) -> Phases:
    from zimage_ui.metadata import png_bytes

    phases = Phases()
    timed = TimedPrompts(device, option.cached_prompt)
    saved = generation.PROMPTS
    generation.PROMPTS = timed  # type: ignore[assignment]
    try:
        for run in range(repeats + 1):  # the first run warms up
            marks: dict[str, float] = {}

            def report(update: Progress, marks: dict[str, float] = marks) -> None:
                if update.message.startswith("decoding"):
                    sync(device)
                    marks["decoding"] = time.perf_counter()

            started = time.perf_counter()
            images = generation.run_pipeline("diffusers", pipeline, params, report, CancelToken())
            sync(device)
            ended = time.perf_counter()
            assert params.seed is not None
            sent = SentValues(params.width, params.height, params.num_inference_steps, params.seed)
            png_started = time.perf_counter()
            png_bytes(images[0], params, sent, "diffusers")
            png_s = time.perf_counter() - png_started
            if run == 0:
                continue
            phases.encode.append(timed.seconds)
            phases.denoise.append(marks["decoding"] - started - timed.seconds)
            phases.decode.append(ended - marks["decoding"])
            phases.png.append(png_s)
    finally:
        generation.PROMPTS = saved
    return phases


def peak_memory_gib(device: str) -> float:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # the process, KiB on Linux


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--write", action="store_true", help=f"append the table to {RESULTS.name}")
    args = parser.parse_args()
    kind = "cuda" if args.device.startswith("cuda") else args.device
    dtype = "bfloat16" if kind == "cuda" else "float32"
    choice = DeviceChoice(args.device, dtype)
    params = GenerationParams(
        prompt="a red fox in fresh snow, morning light, 35mm photograph",
        width=args.size,
        height=args.size,
        num_inference_steps=args.steps,
        seed=42,
    )
    lines = []
    gpu = torch.cuda.get_device_name(torch.device(args.device)) if kind == "cuda" else "no GPU"
    model = None
    header = [
        f"machine: {machine()}; {gpu}; torch {torch.__version__}",
        f"{args.size}x{args.size}, {args.steps} steps, {dtype} on {args.device}; medians of {args.repeats}",
        "",
        "| option | on | text s | denoise s | decode s | PNG s | total s | vs plain | peak GiB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(header[:2]), flush=True)
    plain_total = None
    for option in OPTIONS:
        if option.gpu_only and kind != "cuda":
            continue
        with speed_environ(option.environ):
            pipeline, model = build(choice)
            settings, notes = speed_settings(choice.device, False)
            loading.configure(pipeline, choice, settings, notes, warm_sizes=[(args.size, args.size)])
            if kind == "cuda":
                torch.cuda.reset_peak_memory_stats()
            phases = time_row(pipeline, option, params, args.device, args.repeats)
            summary = loading.speed_summary(pipeline)
        total = phases.total()
        plain_total = plain_total or total
        median = statistics.median
        lines.append(
            f"| {option.name} | {summary} | {median(phases.encode):.3f} | {median(phases.denoise):.3f} "
            f"| {median(phases.decode):.3f} | {median(phases.png):.3f} | {total:.3f} "
            f"| {plain_total / total:.2f}x | {peak_memory_gib(args.device):.1f} |"
        )
        print(lines[-1], flush=True)
        del pipeline
        gc.collect()
        if kind == "cuda":
            torch.cuda.empty_cache()
    table = "\n".join([*header, *lines])
    print(f"\nmodel: {model}\n\n{table}")
    if args.write:
        with RESULTS.open("a", encoding="utf-8") as out:
            out.write(f"\n## python -m benchmarks.gpu --device {args.device} --size {args.size}\n\n")
            out.write(f"Model: {model}.\n\n{table}\n")


if __name__ == "__main__":
    main()
