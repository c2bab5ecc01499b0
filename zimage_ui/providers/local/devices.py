"""Where the local pipeline runs, and in which dtype: `ZIMAGE_DEVICE` = cuda, cuda:N, mps or cpu.

Unset: the first CUDA GPU where there is one, else Apple's MPS where torch has it, else the CPU.
A value that is not a device, or a device this machine lacks, is a note and the default, never a
crash. The dtype is bf16 where the device computes it natively (CUDA compute capability 8.0 and
up, MPS where torch supports bf16 there) and float32 elsewhere (the CPU always): never float16,
which gives Z-Image black images.

torch is imported only to look at a device that may exist: never on a Linux machine without an
NVIDIA driver, so a hosted-only instance starts fast.
"""

from __future__ import annotations

import functools
import re
import sys
from dataclasses import dataclass, replace
from typing import Any

DEVICE_ENV = "ZIMAGE_DEVICE"
DEVICE_VALUES = "cuda, cuda:N, mps or cpu"
_DEVICE = re.compile(r"^(?:cuda(?::(\d+))?|mps|cpu)$")
_SHORT_DTYPE = {"bfloat16": "bf16", "float32": "float32"}


@dataclass(frozen=True)
class DeviceChoice:
    """A device to load onto and the dtype for it, with a note when `ZIMAGE_DEVICE` was not used."""

    device: str  # a torch device: "cuda:0", "cuda:1", "mps", "cpu"; "cuda" on ZeroGPU
    dtype: str  # "bfloat16" or "float32"
    note: str = ""
    zero_gpu: bool = False  # a ZeroGPU Space: the GPU is attached per call, in a forked worker

    @property
    def label(self) -> str:
        """What a person reads: "cuda:1, bf16", "CPU, float32", "ZeroGPU cuda, bf16"."""
        name = {"cpu": "CPU", "mps": "MPS"}.get(self.device, self.device)
        return f"{'ZeroGPU ' if self.zero_gpu else ''}{name}, {_SHORT_DTYPE[self.dtype]}"

    @property
    def accelerated(self) -> bool:
        return self.device != "cpu"

    def torch_dtype(self) -> Any:
        import torch

        return getattr(torch, self.dtype)


def choose_device(raw: str | None, *, cuda_present: bool, zero_gpu: bool = False) -> DeviceChoice:
    """The device `ZIMAGE_DEVICE` (`raw`) asks for, where it exists here; else the default and a note.

    `cuda_present`: this machine has a CUDA GPU torch can use (checked by the caller without
    importing torch where there is no driver). On ZeroGPU the device is "cuda" in bf16 (an H200
    slice, attached per call); `cpu` is honoured there (the forked-worker path, on the CPU).
    """
    text = (raw or "").strip()
    wanted = text.lower()
    if zero_gpu:
        if wanted == "cpu":
            return DeviceChoice("cpu", "float32", zero_gpu=True)
        note = ""
        if wanted not in {"", "cuda", "cuda:0"}:
            note = f"{DEVICE_ENV}={text!r} ignored: ZeroGPU attaches one GPU per generation (cuda)"
        return DeviceChoice("cuda", "bfloat16", note, zero_gpu=True)
    default = _default_device(cuda_present)
    if not wanted:
        return default
    match = _DEVICE.match(wanted)
    if match is None:
        return _instead(default, f"{DEVICE_ENV}={text!r} is not a device (use {DEVICE_VALUES})")
    if wanted == "cpu":
        return DeviceChoice("cpu", "float32")
    if wanted == "mps":
        if _mps_available():
            return _mps()
        return _instead(default, f"{DEVICE_ENV}=mps, but torch has no MPS device here")
    if not cuda_present:
        return _instead(default, f"{DEVICE_ENV}={wanted}, but this machine has no CUDA GPU torch can use")
    index, count = int(match.group(1) or 0), _cuda_count()
    if index >= count:
        gpus = f"{count} CUDA GPU{'s' if count != 1 else ''} (cuda:0..cuda:{count - 1})"
        return _instead(_cuda(0), f"{DEVICE_ENV}={wanted}, but this machine has {gpus}")
    return _cuda(index)


def _instead(choice: DeviceChoice, why: str) -> DeviceChoice:
    return replace(choice, note=f"{why}: using {choice.label}")


def _default_device(cuda_present: bool) -> DeviceChoice:
    if cuda_present:
        return _cuda(0)
    if _mps_available():
        return _mps()
    return DeviceChoice("cpu", "float32")


def _cuda(index: int) -> DeviceChoice:
    major, _minor = _cuda_capability(index)
    return DeviceChoice(f"cuda:{index}", "bfloat16" if major >= 8 else "float32")


def _mps() -> DeviceChoice:
    return DeviceChoice("mps", "bfloat16" if _mps_bf16() else "float32")


@functools.cache
def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count()


@functools.cache
def _cuda_capability(index: int) -> tuple[int, int]:
    """Native bf16 from 8.0 (Ampere) on; older GPUs only emulate it, slowly."""
    import torch

    major, minor = torch.cuda.get_device_capability(index)
    return major, minor


@functools.cache
def _mps_available() -> bool:
    if sys.platform != "darwin":  # MPS is Apple's: no torch import anywhere else
        return False
    try:
        import torch
    except ImportError:
        return False
    return torch.backends.mps.is_available()


@functools.cache
def _mps_bf16() -> bool:
    import torch

    try:
        torch.ones(1, dtype=torch.bfloat16, device="mps")
    except (RuntimeError, TypeError):  # older macOS or torch: no bf16 on MPS
        return False
    return True
