"""Loading the real checkpoint: straight onto its device, in its dtype, with the speed options.

`load_checkpoint(choice, notes)` is the load path: the speed settings (`speed.py`) are read,
checked and applied there once, a note for each one that could not be used as asked. On
ZeroGPU it follows ZeroGPU's own pattern and loads its AoTI blocks (`zerogpu`).
Also the sizes the `diffusers` provider's availability is judged by.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import struct
from pathlib import Path
from typing import Any

from zimage_ui import env
from zimage_ui.errors import ProviderUnavailable
from zimage_ui.providers.local import zerogpu
from zimage_ui.providers.local.devices import DeviceChoice
from zimage_ui.providers.local.speed import SpeedSettings, describe, speed_settings
from zimage_ui.providers.local.speed_apply import apply_speed_settings, effective_settings, warm_up

log = logging.getLogger(__name__)

DEFAULT_MODEL_ID = "Tongyi-MAI/Z-Image-Turbo"
REAL_WEIGHTS_GIB = 20.5  # bf16: 6B transformer + 4B Qwen3 text encoder + VAE


def model_id() -> str:
    return env.raw("ZIMAGE_MODEL_ID") or DEFAULT_MODEL_ID


def checkpoint_gib() -> float:
    """Size of the weights to load: measured for a local folder, the real model's otherwise."""
    folder = Path(model_id())
    if folder.is_dir():
        weights = [p for p in folder.rglob("*") if p.suffix in {".safetensors", ".bin", ".pt", ".gguf"}]
        if weights:
            return sum(p.stat().st_size for p in weights) / 2**30
    return REAL_WEIGHTS_GIB


def loaded_gib(dtype: str) -> float:
    """The weights' size once loaded in `dtype`: a bf16 checkpoint doubles in float32 (the CPU).

    A local folder's safetensors are counted from their headers; other files by their size.
    """
    size = 2 if dtype == "bfloat16" else 4
    folder = Path(model_id())
    if not folder.is_dir():
        return REAL_WEIGHTS_GIB * size / 2
    total = 0
    for path in folder.rglob("*"):
        if path.suffix == ".safetensors":
            numel = _safetensors_numel(path)
            total += path.stat().st_size if numel is None else numel * size
        elif path.suffix in {".bin", ".pt", ".gguf"}:
            total += path.stat().st_size
    return total / 2**30 if total else REAL_WEIGHTS_GIB * size / 2


def _safetensors_numel(path: Path) -> int | None:
    """The number of values in a safetensors file (its JSON header, read alone); None if unreadable."""
    try:
        with path.open("rb") as file:
            (length,) = struct.unpack("<Q", file.read(8))
            if length > 100 * 2**20:
                return None
            header = json.loads(file.read(length))
        numel = 0
        for name, entry in header.items():
            if name != "__metadata__":
                numel += functools.reduce(lambda a, b: a * b, entry["shape"], 1)
        return numel
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        return None


def total_ram_gib() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return 0.0


def load_checkpoint(choice: DeviceChoice, notes: list[str]) -> Any:
    """Load the real checkpoint (hub id or local folder) onto `choice`'s device with the speed
    settings (`speed.py`: checked once, each fallback a note), warmed up when compiled; `notes`
    gets what could not be done as asked (shown with each run, and logged)."""
    settings, setting_notes = speed_settings(choice.device, choice.zero_gpu)
    notes.extend(setting_notes)
    # fp8 casts on the CPU, and the memory modes place parts of the pipeline themselves.
    on_device = settings.memory == "full" and not settings.fp8
    pipeline = from_pretrained(model_id(), choice, on_device=on_device, notes=notes)
    return configure(pipeline, choice, settings, notes)


def configure(
    pipeline: Any,
    choice: DeviceChoice,
    settings: SpeedSettings,
    notes: list[str],
    warm_sizes: list[tuple[int, int]] | None = None,
) -> Any:
    """A loaded pipeline made ready to serve: the speed settings applied, ZeroGPU's AoTI blocks,
    the warm-up (the 1024 sizes unless `warm_sizes`); `notes` gets each fallback.
    (`benchmarks.gpu` runs this on its own models.)"""
    notes.extend(apply_speed_settings(pipeline, settings, choice.device))
    if choice.zero_gpu:
        notes.extend(zerogpu.aoti_blocks(pipeline, choice.device))
    pipeline.set_progress_bar_config(disable=True)
    notes.extend(warm_up(pipeline, settings, warm_sizes))
    for note in notes:
        log.warning("diffusers: %s", note)
    log.info("diffusers: %s ready on %s (%s)", model_id(), choice.label, speed_summary(pipeline))
    return pipeline


def speed_summary(pipeline: Any) -> str:
    """What is on for this pipeline, for the page: "attention: flash · compiled: ... · memory: full"."""
    effective = effective_settings(pipeline)
    return describe(effective) if effective else "no speed options"


def from_pretrained(source: str, choice: DeviceChoice, *, on_device: bool, notes: list[str]) -> Any:
    """`ZImagePipeline.from_pretrained` in the device's dtype, each weight loaded straight onto the
    device (`device_map`, which takes "cuda", "mps" or "cpu": "cuda:N" loads under that device).

    On ZeroGPU, its documented pattern instead: load, then `.to("cuda")`, which its patched torch
    records, and the forked worker finds the weights on its GPU.
    """
    import torch
    from diffusers import ZImagePipeline

    kwargs: dict[str, Any] = {"dtype": choice.torch_dtype()}
    direct = on_device and choice.accelerated and not choice.zero_gpu
    if direct and not _accelerate_installed():
        notes.append(
            f"accelerate is not installed: the weights load on the CPU, then move to {choice.device} "
            "(pip install accelerate loads them straight onto the device)"
        )
        direct = False
    kind, _, index = choice.device.partition(":")
    where: Any = contextlib.nullcontext()
    if direct:
        kwargs["device_map"] = kind
        if kind == "cuda":
            where = torch.cuda.device(int(index or 0))  # "cuda" is the current device while loading
    try:
        with where:
            try:
                pipeline = ZImagePipeline.from_pretrained(source, **kwargs)
            except NotImplementedError as exc:  # a device_map diffusers does not offer here
                notes.append(f"could not load straight onto {choice.device} ({exc}); loaded, then moved")
                kwargs.pop("device_map", None)
                direct = False
                pipeline = ZImagePipeline.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        raise ProviderUnavailable(
            "diffusers",
            f"could not load the checkpoint {source!r} ({type(exc).__name__}). "
            "Set ZIMAGE_MODEL_ID to a local folder holding the pipeline, or allow the download.",
        ) from None
    if on_device and choice.accelerated and not (direct and _is_on(pipeline, choice.device)):
        pipeline.to(choice.device)
    return pipeline


def _accelerate_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("accelerate") is not None


def _is_on(pipeline: Any, device: str) -> bool:
    """Are the transformer's weights on `device` ("cuda:1", "mps")?"""
    import torch

    wanted = torch.device(device)
    placed = next(pipeline.transformer.parameters()).device
    return placed.type == wanted.type and (wanted.index is None or placed.index == wanted.index)
