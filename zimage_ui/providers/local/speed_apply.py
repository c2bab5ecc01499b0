"""Switching the speed settings on for one pipeline, each checked (the attention backend runs a
small probe) and falling back with a note: placement and memory modes, torch.compile and its
warm-up, tiled VAE decoding for large images, and mask-safe attention for guidance runs.

torch and diffusers are imported inside the functions that need them."""

from __future__ import annotations

import contextlib
import logging
import time
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from zimage_ui import env
from zimage_ui.providers.local.prompt_cache import PromptCache, TextEncoderShuttle
from zimage_ui.providers.local.speed import REJECTS_MASK, SEQ_MULTI_OF, SpeedSettings, device_kind

# ---- applying them ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Applied:
    settings: SpeedSettings  # what is really on, fallbacks folded in
    takes_mask: bool  # the attention backend honours an attention mask


log = logging.getLogger(__name__)

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
            works, takes_mask = True, name not in REJECTS_MASK
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
    mode = settings.memory if device_kind(device) == "cuda" else "full"
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
        env.set_value("TORCHINDUCTOR_CACHE_DIR", settings.compile_cache)
        env.set_default("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")
        env.set_default("TORCHINDUCTOR_AUTOGRAD_CACHE", "1")
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
