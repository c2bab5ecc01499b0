"""Speed options for the local `ZImagePipeline`: the fastest safe default, every option switchable.

`speed_settings` reads the ZIMAGE_* variables once and validates them against the device and
what is installed: a value that can't be used falls back, with a note for the page and the log,
never a failed run. `speed_apply.apply_speed_settings` switches them on for one pipeline and checks each
(the attention backend runs a small probe), again falling back with a note. `warm_up` compiles
at start-up, `PromptCache` skips the text encoder for a prompt seen before, `vae_tiling_for`
turns tiled decoding on for large images only, and `mask_safe_attention` keeps guidance runs
working with attention kernels that take no mask.

torch and diffusers are imported inside the functions that need them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from zimage_ui import env
from zimage_ui.providers.local.prompt_cache import PromptCache, TextEncoderShuttle

__all__ = [
    "Installed",
    "PromptCache",
    "SpeedSettings",
    "TextEncoderShuttle",
    "default_attention_backend",
    "describe",
    "detect_installed",
    "speed_settings",
]

log = logging.getLogger(__name__)

# diffusers 0.42 `AttentionBackendName` values (models/attention_dispatch.py); a test keeps them in step.
ATTENTION_BACKENDS = (
    "flash", "flash_hub", "flash_varlen", "flash_varlen_hub", "flash_4_hub", "_flash_3",
    "_flash_varlen_3", "_flash_3_hub", "_flash_3_varlen_hub", "aiter_fa2_hub", "flex", "native",
    "_native_cudnn", "_native_efficient", "_native_flash", "_native_math", "_native_npu", "_native_xla",
    "sage", "sage_hub", "sage_blackwell_hub", "sage_varlen", "_sage_qk_int8_pv_fp8_cuda",
    "_sage_qk_int8_pv_fp8_cuda_sm90", "_sage_qk_int8_pv_fp16_cuda", "_sage_qk_int8_pv_fp16_triton",
    "xformers",
)  # fmt: skip
# Backends whose function raises on `attn_mask` (attention_dispatch.py, "`attn_mask` is not supported").
REJECTS_MASK = frozenset(
    {"flash", "flash_hub", "flash_4_hub", "_flash_3", "_flash_3_hub", "aiter_fa2_hub", "_native_flash",
     "_native_xla", "sage", "sage_hub", "sage_blackwell_hub", "_sage_qk_int8_pv_fp8_cuda",
     "_sage_qk_int8_pv_fp8_cuda_sm90", "_sage_qk_int8_pv_fp16_cuda", "_sage_qk_int8_pv_fp16_triton"}
)  # fmt: skip
MEMORY_MODES = ("full", "16gb", "offload")
DEFAULT_TILING_ABOVE = 1536 * 1536
DEFAULT_PROMPT_CACHE = 32
MAX_PROMPT_CACHE = 4096
SEQ_MULTI_OF = 32  # Z-Image pads every caption to a multiple of 32 tokens (transformer_z_image.py)
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Installed:
    """What the backend choice depends on; `detect_installed` fills it, tests pass their own."""

    capability: tuple[int, int] | None = None  # CUDA compute capability, e.g. (9, 0) for an H100/H200
    flash_attn: bool = False  # flash-attn >= 2.6.3 (diffusers' minimum)
    flash_attn_3: bool = False  # FlashAttention-3 built from source (`flash_attn_3`)
    kernels: bool = False  # `kernels` >= 0.12: the *_hub backends download their kernel from the Hub
    sageattention: bool = False
    xformers: bool = False
    accelerate: bool = False  # diffusers' model CPU offload needs it


# backend -> (Installed field, what to install), as diffusers' `_check_attention_backend_requirements`
# has it; native, flex and the other _native_* backends need nothing beyond torch.
_FA2 = ("flash_attn", "flash-attn>=2.6.3")
_FA3 = ("flash_attn_3", "FlashAttention-3 (built from source)")
_KERNELS = ("kernels", "kernels>=0.12")
_SAGE = ("sageattention", "sageattention>=2.1.1")
_NEEDS = {
    "flash": _FA2,
    "flash_varlen": _FA2,
    "_flash_3": _FA3,
    "_flash_varlen_3": _FA3,
    **{name: _KERNELS for name in ATTENTION_BACKENDS if name.endswith("_hub")},
    **{name: _SAGE for name in ATTENTION_BACKENDS if "sage" in name and not name.endswith("_hub")},
    "xformers": ("xformers", "xformers>=0.0.29"),
    "_native_npu": ("", "torch_npu (an Ascend NPU)"),
    "_native_xla": ("", "torch_xla (a TPU)"),
}


@dataclass(frozen=True)
class SpeedSettings:
    """The speed options for one device, validated once (see `speed_settings`)."""

    device: str = "cpu"
    attention_backend: str = "native"
    compile: bool = False  # regional torch.compile of the transformer's repeated blocks
    memory: str = "full"  # "full" | "16gb" | "offload"
    fp8: bool = False  # transformer weights stored as float8_e4m3fn (diffusers' layerwise casting)
    vae_tiling_above: int = DEFAULT_TILING_ABOVE  # tiled VAE decode for width*height above this
    prompt_cache: int = DEFAULT_PROMPT_CACHE  # prompt embeddings kept (LRU); 0: off
    compile_cache: str | None = None  # TORCHINDUCTOR_CACHE_DIR when compiling
    zero_gpu: bool = False


def device_kind(device: str) -> str:
    return device.split(":", 1)[0].strip().lower() or "cpu"


def _shown(value: str) -> str:
    """An environment value as a note shows it: printable and short."""
    text = "".join(ch for ch in value.strip() if ch.isprintable())
    return text if len(text) <= 40 else text[:39] + "…"


def detect_installed(device: str, on_zero_gpu: bool) -> Installed:
    """The compute capability and attention packages present, as diffusers itself checks them."""
    from diffusers.utils import (
        is_accelerate_available,
        is_accelerate_version,
        is_flash_attn_3_available,
        is_flash_attn_available,
        is_flash_attn_version,
        is_kernels_available,
        is_kernels_version,
        is_sageattention_available,
        is_sageattention_version,
        is_xformers_available,
        is_xformers_version,
    )

    capability: tuple[int, int] | None = None
    if on_zero_gpu:
        capability = (9, 0)  # ZeroGPU lends H200 slices; CUDA is only attached inside `spaces.GPU` calls
    elif device_kind(device) == "cuda":
        try:
            import torch

            major, minor = torch.cuda.get_device_capability(device)
            capability = (major, minor)
        except Exception:  # no driver, a bad index: the backend choice falls back to native
            log.debug("no compute capability for %s", device, exc_info=True)
    return Installed(
        capability=capability,
        flash_attn=is_flash_attn_available() and is_flash_attn_version(">=", "2.6.3"),
        flash_attn_3=is_flash_attn_3_available(),
        kernels=is_kernels_available() and is_kernels_version(">=", "0.12"),
        sageattention=is_sageattention_available() and is_sageattention_version(">=", "2.1.1"),
        xformers=is_xformers_available() and is_xformers_version(">=", "0.0.29"),
        accelerate=is_accelerate_available() and is_accelerate_version(">=", "0.17.0"),
    )


def default_attention_backend(device: str, installed: Installed) -> str:
    """FlashAttention-3 on Hopper (a local build, else the Hub kernel), FA2 on Ampere+, else native."""
    if device_kind(device) != "cuda":
        return "native"
    capability = installed.capability
    if capability is not None and capability[0] == 9:
        if installed.flash_attn_3:
            return "_flash_3"
        if installed.kernels:
            return "_flash_3_hub"
    if capability is not None and capability >= (8, 0) and installed.flash_attn:
        return "flash"
    return "native"


def _missing(backend: str, installed: Installed) -> str | None:
    if backend not in _NEEDS:
        return None
    field, package = _NEEDS[backend]
    return None if field and getattr(installed, field) else package


def _flag(environ: Mapping[str, str], name: str, notes: list[str]) -> bool | None:
    raw = environ.get(name, "")
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    if value:
        notes.append(f"{name}={_shown(raw)} is not 0 or 1: using the default")
    return None


def _count(environ: Mapping[str, str], name: str, default: int, top: int, notes: list[str]) -> int:
    """A whole number 0..top; also "WxH" (for pixels). Anything else: the default, with a note."""
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        parts = raw.lower().replace("*", "x").split("x")
        if len(parts) > 2:
            raise ValueError(raw)
        value = 1
        for part in parts:
            value *= int(part.replace("_", ""))
        if not 0 <= value <= top:
            raise ValueError(raw)
    except ValueError:
        notes.append(f"{name}={_shown(raw)} is not a whole number from 0 to {top}: using {default}")
        return default
    return value


def _attention(environ: Mapping[str, str], device: str, installed: Installed, notes: list[str]) -> str:
    default = default_attention_backend(device, installed)
    raw = environ.get("ZIMAGE_ATTENTION_BACKEND", "")
    value = raw.strip().lower()
    if value in ("", "auto"):
        return default
    if value not in ATTENTION_BACKENDS:
        notes.append(f"ZIMAGE_ATTENTION_BACKEND={_shown(raw)} is not a backend: using {default}")
        return default
    if device_kind(device) != "cuda" and value != "native":
        notes.append(f"ZIMAGE_ATTENTION_BACKEND={value}: attention is always native on {device_kind(device)}")
        return "native"
    missing = _missing(value, installed)
    if missing:
        notes.append(
            f"ZIMAGE_ATTENTION_BACKEND={value} needs {missing}, which is not installed: using {default}"
        )
        return default
    return value


def _memory(
    environ: Mapping[str, str], device: str, zero_gpu: bool, installed: Installed, notes: list[str]
) -> str:
    raw = environ.get("ZIMAGE_MEMORY", "")
    legacy = environ.get("ZIMAGE_CPU_OFFLOAD", "").strip()
    if legacy not in ("", "0", "1"):
        notes.append(f"ZIMAGE_CPU_OFFLOAD={_shown(legacy)} is not 0 or 1: ignored")
    mode = raw.strip().lower()
    if not mode:
        mode = "offload" if legacy == "1" else "full"  # the README's older switch
    elif mode not in MEMORY_MODES:
        fallback = "offload" if legacy == "1" else "full"
        notes.append(f"ZIMAGE_MEMORY={_shown(raw)} is not full, 16gb or offload: using {fallback}")
        mode = fallback
    elif legacy == "1" and mode != "offload":
        notes.append(f"ZIMAGE_CPU_OFFLOAD=1 ignored: ZIMAGE_MEMORY={mode} decides")
    if mode != "full" and device_kind(device) != "cuda":
        notes.append(f"memory {mode} is for a CUDA GPU: using full on {device_kind(device)}")
        return "full"
    if mode != "full" and zero_gpu:
        notes.append(f"memory {mode} is not for ZeroGPU (the pipeline stays on the GPU it lends): using full")
        return "full"
    if mode == "offload" and not installed.accelerate:
        notes.append("memory offload needs the accelerate package (pip install accelerate): using 16gb")
        return "16gb"
    return mode


def _fp8(environ: Mapping[str, str], device: str, notes: list[str]) -> bool:
    raw = environ.get("ZIMAGE_FAST", "")
    value = raw.strip().lower()
    if value in ("", "0", "off", "none", "no"):
        return False
    if value != "fp8":
        notes.append(f"ZIMAGE_FAST={_shown(raw)} is not fp8: off")
        return False
    if device_kind(device) == "mps":
        notes.append("ZIMAGE_FAST=fp8 is not available on mps (no float8 there): off")
        return False
    notes.append(
        "ZIMAGE_FAST=fp8: the transformer's weights are stored in float8 (e4m3) and cast back to bf16 "
        "layer by layer: about half its memory, a little slower per step, and a small loss of quality "
        "(each weight keeps 3 mantissa bits); its embedders and norms stay bf16"
    )
    return True


def _compile(environ: Mapping[str, str], device: str, zero_gpu: bool, fp8: bool, notes: list[str]) -> bool:
    asked = _flag(environ, "ZIMAGE_COMPILE", notes)
    wanted = (device_kind(device) == "cuda") if asked is None else asked
    if wanted and zero_gpu:
        notes.append(
            "torch.compile is off on ZeroGPU: it compiles just in time, and each ZeroGPU call runs in a "
            "fresh worker that would compile again (ZeroGPU speeds up with ahead-of-time compilation)"
        )
        return False
    if wanted and fp8:
        notes.append("torch.compile is off with ZIMAGE_FAST=fp8: it cannot trace the per-layer weight casts")
        return False
    return wanted


def _compile_cache(environ: Mapping[str, str], notes: list[str]) -> str | None:
    """ZIMAGE_COMPILE_CACHE, else a TORCHINDUCTOR_CACHE_DIR already set, else the user cache folder."""
    raw = (
        environ.get("ZIMAGE_COMPILE_CACHE", "").strip() or environ.get("TORCHINDUCTOR_CACHE_DIR", "").strip()
    )
    if raw:
        folder = Path(raw).expanduser()
    else:
        from platformdirs import user_cache_dir

        folder = Path(user_cache_dir("zimage-ui")) / "torch-compile"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK):
            raise PermissionError(str(folder))
    except OSError as exc:
        notes.append(
            f"compile cache {_shown(str(folder))} is not writable ({type(exc).__name__}): torch's default"
        )
        return None
    return str(folder)


def speed_settings(
    device: str,
    on_zero_gpu: bool,
    *,
    environ: Mapping[str, str] | None = None,
    installed: Installed | None = None,
) -> tuple[SpeedSettings, list[str]]:
    """Read and validate the ZIMAGE_* speed variables for `device`; never raises.

    Returns the settings and the notes to show on the page and log: each setting that could
    not be used as given, what was used instead and why.
    """
    variables = env.snapshot() if environ is None else environ
    notes: list[str] = []
    if installed is None:
        installed = detect_installed(device, on_zero_gpu) if device_kind(device) == "cuda" else Installed()
    backend = _attention(variables, device, installed, notes)
    fp8 = _fp8(variables, device, notes)
    compile_ = _compile(variables, device, on_zero_gpu, fp8, notes)
    settings = SpeedSettings(
        device=device,
        attention_backend=backend,
        compile=compile_,
        memory=_memory(variables, device, on_zero_gpu, installed, notes),
        fp8=fp8,
        vae_tiling_above=_count(variables, "ZIMAGE_VAE_TILING_ABOVE", DEFAULT_TILING_ABOVE, 2**40, notes),
        prompt_cache=_count(variables, "ZIMAGE_PROMPT_CACHE", DEFAULT_PROMPT_CACHE, MAX_PROMPT_CACHE, notes),
        compile_cache=_compile_cache(variables, notes) if compile_ else None,
        zero_gpu=on_zero_gpu,
    )
    for note in notes:
        log.info("speed: %s", note)
    return settings, notes


def prompt_cache_size(environ: Mapping[str, str] | None = None) -> int:
    """ZIMAGE_PROMPT_CACHE: how many prompts' embeddings the local models keep (0: none)."""
    variables = env.snapshot() if environ is None else environ
    return _count(variables, "ZIMAGE_PROMPT_CACHE", DEFAULT_PROMPT_CACHE, MAX_PROMPT_CACHE, [])


def describe(settings: SpeedSettings) -> str:
    """One line for the page: "attention: _flash_3_hub · compiled: repeated blocks · memory: full · …"."""
    side = int(settings.vae_tiling_above**0.5)
    tiling = f"{side}²" if side * side == settings.vae_tiling_above else f"{settings.vae_tiling_above} px"
    parts = [
        f"attention: {settings.attention_backend}",
        f"compiled: {'repeated blocks' if settings.compile else 'no'}",
        f"memory: {settings.memory}",
        *(["weights: fp8"] if settings.fp8 else []),
        f"VAE tiling above {tiling}",
        f"prompt cache: {settings.prompt_cache or 'off'}",
    ]
    return " · ".join(parts)
