"""Speed options for the local `ZImagePipeline`: the fastest safe default, every option switchable.

`speed_settings` reads the ZIMAGE_* variables once and validates them against the device and
what is installed: a value that can't be used falls back, with a note for the page and the log,
never a failed run. `apply_speed_settings` switches them on for one pipeline and checks each
(the attention backend runs a small probe), again falling back with a note. `warm_up` compiles
at start-up, `PromptCache` skips the text encoder for a prompt seen before, `vae_tiling_for`
turns tiled decoding on for large images only, and `mask_safe_attention` keeps guidance runs
working with attention kernels that take no mask.

torch and diffusers are imported inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from zimage_ui.providers.local.prompt_cache import PromptCache, TextEncoderShuttle

__all__ = [
    "Installed",
    "PromptCache",
    "SpeedSettings",
    "TextEncoderShuttle",
    "apply_speed_settings",
    "default_attention_backend",
    "describe",
    "detect_installed",
    "effective_settings",
    "mask_safe_attention",
    "speed_settings",
    "vae_tiling_for",
    "warm_up",
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
_REJECTS_MASK = frozenset(
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


def _kind(device: str) -> str:
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
    elif _kind(device) == "cuda":
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
    if _kind(device) != "cuda":
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
    if _kind(device) != "cuda" and value != "native":
        notes.append(f"ZIMAGE_ATTENTION_BACKEND={value}: attention is always native on {_kind(device)}")
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
    if mode != "full" and _kind(device) != "cuda":
        notes.append(f"memory {mode} is for a CUDA GPU: using full on {_kind(device)}")
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
    if _kind(device) == "mps":
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
    wanted = (_kind(device) == "cuda") if asked is None else asked
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
    env = os.environ if environ is None else environ
    notes: list[str] = []
    if installed is None:
        installed = detect_installed(device, on_zero_gpu) if _kind(device) == "cuda" else Installed()
    backend = _attention(env, device, installed, notes)
    fp8 = _fp8(env, device, notes)
    compile_ = _compile(env, device, on_zero_gpu, fp8, notes)
    settings = SpeedSettings(
        device=device,
        attention_backend=backend,
        compile=compile_,
        memory=_memory(env, device, on_zero_gpu, installed, notes),
        fp8=fp8,
        vae_tiling_above=_count(env, "ZIMAGE_VAE_TILING_ABOVE", DEFAULT_TILING_ABOVE, 2**40, notes),
        prompt_cache=_count(env, "ZIMAGE_PROMPT_CACHE", DEFAULT_PROMPT_CACHE, MAX_PROMPT_CACHE, notes),
        compile_cache=_compile_cache(env, notes) if compile_ else None,
        zero_gpu=on_zero_gpu,
    )
    for note in notes:
        log.info("speed: %s", note)
    return settings, notes


def prompt_cache_size(environ: Mapping[str, str] | None = None) -> int:
    """ZIMAGE_PROMPT_CACHE: how many prompts' embeddings the local models keep (0: none)."""
    env = os.environ if environ is None else environ
    return _count(env, "ZIMAGE_PROMPT_CACHE", DEFAULT_PROMPT_CACHE, MAX_PROMPT_CACHE, [])


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


# ---- applying them ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Applied:
    settings: SpeedSettings  # what is really on, fallbacks folded in
    takes_mask: bool  # the attention backend honours an attention mask


_APPLIED: weakref.WeakKeyDictionary[Any, _Applied] = weakref.WeakKeyDictionary()


def effective_settings(pipeline: Any) -> SpeedSettings | None:
    """The settings `apply_speed_settings` really switched on for this pipeline (None: never applied)."""
    applied = _APPLIED.get(pipeline)
    return applied.settings if applied else None


def _set_backend(transformer: Any, name: str) -> None:
    """`set_attention_backend`, keeping the process-wide default where it was.

    diffusers also makes the backend the process default (modeling_utils.py `set_attention_backend`
    ends with `_AttentionBackendRegistry.set_active_backend`), which every processor without its
    own backend follows: another pipeline in this process (the tiny CPU model) would run flash on
    the CPU. The transformer's processors hold the backend themselves, so the default can go back.
    """
    from diffusers.models import attention_dispatch

    registry = getattr(attention_dispatch, "_AttentionBackendRegistry", None)
    previous = getattr(registry, "_active_backend", None)
    chatty = logging.getLogger("diffusers.models.modeling_utils")  # "experimental feature", every call
    level = chatty.level
    chatty.setLevel(logging.ERROR)
    try:
        transformer.set_attention_backend(name)
    finally:
        chatty.setLevel(level)
        if registry is not None and previous is not None:
            registry.set_active_backend(previous)


def _probe_attention(name: str, transformer: Any, device: str) -> tuple[bool, bool]:
    """(works, honours a mask): the backend against native SDPA on a small batch of this model's shape."""
    import torch
    from diffusers.models.attention_dispatch import AttentionBackendName, dispatch_attention_fn

    heads = int(transformer.config.n_heads)
    head_dim = int(transformer.config.dim) // heads
    dtype = transformer.dtype if transformer.dtype in (torch.bfloat16, torch.float16) else torch.float32
    generator = torch.Generator("cpu").manual_seed(0)
    q, k, v = (torch.randn(2, 96, heads, head_dim, generator=generator).to(device, dtype) for _ in range(3))
    mask = torch.ones(2, 1, 1, 96, dtype=torch.bool, device=device)
    mask[1, ..., 40:] = False
    tolerance = 1e-3 if dtype == torch.float32 else 0.1  # catches broken kernels, allows int8/fp8 ones
    backend, native = AttentionBackendName(name), AttentionBackendName.NATIVE

    def close(masked: bool) -> bool:
        attn_mask = mask if masked else None
        with torch.no_grad():
            got = dispatch_attention_fn(q, k, v, attn_mask=attn_mask, backend=backend)
            want = dispatch_attention_fn(q, k, v, attn_mask=attn_mask, backend=native)
        return bool(got.shape == want.shape and (got.float() - want.float()).abs().max() < tolerance)

    works = close(masked=False)
    try:
        takes_mask = works and close(masked=True)
    except Exception:  # the flash family raises on any mask
        takes_mask = False
    return works, takes_mask


def _apply_attention(
    pipeline: Any, settings: SpeedSettings, device: str, notes: list[str]
) -> tuple[str, bool]:
    name = settings.attention_backend
    transformer = pipeline.transformer
    if name == "native":
        return name, True
    try:
        _set_backend(transformer, name)
        if settings.zero_gpu:  # no GPU outside `spaces.GPU` calls: trust the source instead of a probe
            works, takes_mask = True, name not in _REJECTS_MASK
        else:
            works, takes_mask = _probe_attention(name, transformer, device)
        if not works:
            raise RuntimeError("its output differs from native attention")
    except Exception as exc:
        reason = " ".join(str(exc).split())[:160] or type(exc).__name__
        notes.append(f"attention {name} is not usable here ({reason}): using native")
        with contextlib.suppress(Exception):
            _set_backend(transformer, "native")
        return "native", True
    notes.append(f"attention: {name}")
    return name, takes_mask


def _place(pipeline: Any, settings: SpeedSettings, device: str, notes: list[str]) -> str:
    mode = settings.memory if _kind(device) == "cuda" else "full"
    if mode == "offload":
        try:
            pipeline.enable_model_cpu_offload(device=device)
            notes.append(
                "memory offload: each model visits the GPU only while it runs (diffusers' model offload)"
            )
            return mode
        except Exception as exc:
            notes.append(f"memory offload failed ({type(exc).__name__}: {str(exc)[:120]}): using 16gb")
            mode = "16gb"
    if mode == "16gb":
        pipeline.text_encoder.to("cpu")
        pipeline.transformer.to(device)
        pipeline.vae.to(device)
        shuttle = TextEncoderShuttle(pipeline.text_encoder, device)
        notes.append(
            f"memory 16gb: transformer and VAE stay on {device}; the text encoder "
            f"({shuttle.weight_bytes / 2**30:.1f} GiB) waits on the CPU and visits the GPU to encode a new "
            "prompt, or encodes on the CPU when the GPU has no room for it"
        )
        return mode
    pipeline.to(device)
    return "full"


def _uncompile(transformer: Any) -> None:
    """Undo `compile_repeated_blocks`: `nn.Module.compile` keeps the compiled call in `_compiled_call_impl`"""
    for module in transformer.modules():
        if module.__class__.__name__ in (getattr(transformer, "_repeated_blocks", None) or ()):
            module._compiled_call_impl = None


def _apply_compile(pipeline: Any, settings: SpeedSettings, notes: list[str]) -> bool:
    """Regional compilation: each repeated block once, with dynamic shapes.

    The sequence a block sees changes with every prompt (the caption is padded to a multiple of
    32 tokens) and every size, and the same block class runs three ways (noise refiner, caption
    refiner without modulation, main layers). With `dynamic=False` each new length recompiles
    until torch's recompile limit (8), then fails hard under fullgraph=True (measured on the tiny
    model); `dynamic=True` traces the lengths symbolically: 3 graphs, none added by new prompts or
    sizes (guidance adds its own: batch 2, maybe a mask). `fullgraph=False`: the blocks have no
    graph breaks (fullgraph=True compiles them too), but if a guard ever exceeds the recompile
    limit that call runs eagerly instead of failing.
    """
    if settings.compile_cache:  # torch's persistent caches, as its compile-caching recipe configures them
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = settings.compile_cache
        os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")
        os.environ.setdefault("TORCHINDUCTOR_AUTOGRAD_CACHE", "1")
    try:
        pipeline.transformer.compile_repeated_blocks(fullgraph=False, dynamic=True)
    except Exception as exc:
        notes.append(f"torch.compile not applied ({type(exc).__name__}: {str(exc)[:120]})")
        return False
    notes.append("compiled: the transformer's repeated blocks (compiles at warm-up, then reused)")
    return True


def apply_speed_settings(pipeline: Any, settings: SpeedSettings, device: str) -> list[str]:
    """Move the pipeline to `device` and switch the settings on; never raises for a setting.

    Order: fp8 first (cast on the CPU, so the GPU never holds the bf16 copy), then placement,
    the attention backend (set, then probed against native; failure: native), compilation.
    Returns notes of what is on, and of what fell back and why.
    """
    import torch

    notes: list[str] = []
    fp8 = settings.fp8
    if fp8:
        try:
            compute = pipeline.transformer.dtype
            pipeline.transformer.enable_layerwise_casting(
                storage_dtype=torch.float8_e4m3fn, compute_dtype=compute
            )
        except Exception as exc:
            notes.append(f"fp8 weights not applied ({type(exc).__name__}: {str(exc)[:120]})")
            fp8 = False
    memory = _place(pipeline, settings, device, notes)
    backend, takes_mask = _apply_attention(pipeline, settings, device, notes)
    if settings.compile and fp8:
        notes.append("torch.compile is off with fp8 weights: it cannot trace the per-layer weight casts")
    compiled = settings.compile and not fp8 and _apply_compile(pipeline, settings, notes)
    effective = replace(settings, attention_backend=backend, memory=memory, fp8=fp8, compile=compiled)
    _APPLIED[pipeline] = _Applied(effective, takes_mask)
    for note in notes:
        log.info("speed: %s", note)
    return notes


def warm_up(
    pipeline: Any, settings: SpeedSettings, sizes: Iterable[tuple[int, int]] | None = None
) -> list[str]:
    """One 1-step generation per size, so compilation happens at start-up, not in a visitor's run.

    Only when compile is on (effective settings). Default sizes: the 1024 family. The latents
    are the output (the VAE is not compiled). If compiling fails, the blocks go back to eager
    and a note says so: the pipeline keeps working.
    """
    import torch

    settings = effective_settings(pipeline) or settings
    if not settings.compile:
        return []
    if sizes is None:
        from zimage_ui.sizes import SIZE_FAMILIES

        sizes = SIZE_FAMILIES["1024"]
    sizes = list(sizes)
    started = time.perf_counter()
    try:
        embeds, _ = PromptCache(0).encode(pipeline, "warm-up", None, False)  # one text-encoder run for all
        for width, height in sizes:
            pipeline(
                prompt_embeds=embeds,
                width=width,
                height=height,
                num_inference_steps=1,
                guidance_scale=0.0,
                generator=torch.Generator("cpu").manual_seed(0),
                output_type="latent",
            )
    except Exception as exc:
        _uncompile(pipeline.transformer)
        applied = _APPLIED.get(pipeline)
        if applied is not None:
            _APPLIED[pipeline] = replace(applied, settings=replace(applied.settings, compile=False))
        note = f"torch.compile failed at warm-up ({type(exc).__name__}: {str(exc)[:120]}): running uncompiled"
        log.warning("speed: %s", note, exc_info=True)
        return [note]
    note = f"warmed up {len(sizes)} sizes in {time.perf_counter() - started:.0f} s"
    log.info("speed: %s", note)
    return [note]


def _padded(length: int) -> int:
    return -(-length // SEQ_MULTI_OF) * SEQ_MULTI_OF


@contextlib.contextmanager
def mask_safe_attention(
    pipeline: Any, prompt_embeds: list, negative_prompt_embeds: list | None
) -> Iterator[str | None]:
    """Around one pipeline call: native attention when this batch needs a mask the backend can't take.

    Z-Image masks attention only when captions in one batch pad to different lengths: with
    guidance on (prompt and negative in one batch) and lengths like 40 and 12 tokens (64 vs 32
    padded). The flash family raises on any mask, so such a call would fail; this switches the
    transformer to native for the call and back after. Yields a note when it switched, else None.
    """
    applied = _APPLIED.get(pipeline)
    lengths = {_padded(len(embeds)) for embeds in [*prompt_embeds, *(negative_prompt_embeds or [])]}
    if applied is None or applied.takes_mask or len(lengths) < 2:
        yield None
        return
    backend = applied.settings.attention_backend
    _set_backend(pipeline.transformer, "native")
    try:
        yield (
            f"attention: native for this run ({backend} takes no attention mask, and guidance with "
            "this negative prompt needs one)"
        )
    finally:
        _set_backend(pipeline.transformer, backend)


def vae_tiling_for(pipeline: Any, width: int, height: int, settings: SpeedSettings) -> bool:
    """Tiled VAE decoding above the threshold, whole-image decoding at or below it; returns which."""
    vae = pipeline.vae
    tiled = width * height > settings.vae_tiling_above
    try:
        if tiled:
            vae.enable_tiling()
        else:
            vae.disable_tiling()
    except (AttributeError, NotImplementedError):  # a VAE without tiling decodes whole
        return False
    return tiled
