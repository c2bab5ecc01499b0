"""Speed options: settings validated once with visible fallbacks, applied on the tiny pipeline."""

from __future__ import annotations

import inspect
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from zimage_ui.providers.local import speed, speed_apply
from zimage_ui.providers.local.speed import (
    DEFAULT_TILING_ABOVE,
    Installed,
    PromptCache,
    SpeedSettings,
    TextEncoderShuttle,
    default_attention_backend,
    describe,
    speed_settings,
)
from zimage_ui.providers.local.speed_apply import (
    apply_speed_settings,
    effective_settings,
    mask_safe_attention,
    vae_tiling_for,
    warm_up,
)
from zimage_ui.providers.local.tiny_model import build_tiny_pipeline

HOPPER = Installed(capability=(9, 0), kernels=True, accelerate=True)
CPU = SpeedSettings()
LONG = "a lighthouse on a cliff at dusk, waves below, gulls overhead, warm light in the windows, film grain"


def _pixels(pipeline, steps: int = 2, size: tuple[int, int] = (256, 256), **kwargs) -> np.ndarray:
    width, height = size
    kwargs.setdefault("guidance_scale", 0.0)
    if "prompt_embeds" not in kwargs:
        kwargs.setdefault("prompt", "a red fox")
    output = pipeline(
        width=width,
        height=height,
        num_inference_steps=steps,
        generator=torch.Generator("cpu").manual_seed(7),
        **kwargs,
    )
    return np.asarray(output.images[0])


@pytest.fixture(scope="module")
def baseline() -> np.ndarray:
    return _pixels(build_tiny_pipeline())


@pytest.fixture
def cache_dir(tmp_path: Path) -> dict[str, str]:
    return {"ZIMAGE_COMPILE_CACHE": str(tmp_path / "compile")}


# ---- settings ---------------------------------------------------------------------------------


def test_defaults_on_the_cpu_are_plain_and_quiet():
    settings, notes = speed_settings("cpu", False, environ={})
    assert notes == []
    assert settings == SpeedSettings(device="cpu")
    assert describe(settings) == (
        "attention: native · compiled: no · memory: full · VAE tiling above 1536² · prompt cache: 32"
    )


def test_defaults_on_a_hopper_gpu_are_the_fast_ones(cache_dir):
    settings, notes = speed_settings("cuda", False, environ=cache_dir, installed=HOPPER)
    assert notes == []
    assert (settings.attention_backend, settings.compile, settings.memory) == ("_flash_3_hub", True, "full")
    assert settings.compile_cache == cache_dir["ZIMAGE_COMPILE_CACHE"]
    assert Path(settings.compile_cache).is_dir()
    assert describe(settings) == (
        "attention: _flash_3_hub · compiled: repeated blocks · memory: full · VAE tiling above 1536² · "
        "prompt cache: 32"
    )


def test_compile_on_the_cpu_is_opt_in_and_an_inductor_cache_dir_already_set_is_kept(tmp_path):
    environ = {"ZIMAGE_COMPILE": "1", "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "mine")}
    settings, notes = speed_settings("cpu", False, environ=environ)
    assert (settings.compile, settings.compile_cache, notes) == (True, str(tmp_path / "mine"), [])
    ours = {**environ, "ZIMAGE_COMPILE_CACHE": str(tmp_path / "ours")}
    assert speed_settings("cpu", False, environ=ours)[0].compile_cache == str(tmp_path / "ours")


def test_the_default_compile_cache_is_under_the_user_cache_dir(monkeypatch, tmp_path):
    import platformdirs

    monkeypatch.setattr(platformdirs, "user_cache_dir", lambda app: str(tmp_path / app))
    settings, _ = speed_settings("cuda", False, environ={}, installed=HOPPER)
    assert settings.compile_cache == str(tmp_path / "zimage-ui" / "torch-compile")


@pytest.mark.parametrize(
    ("device", "installed", "expected"),
    [
        ("cuda", Installed(capability=(9, 0), flash_attn_3=True, kernels=True), "_flash_3"),
        ("cuda:1", Installed(capability=(9, 0), kernels=True, flash_attn=True), "_flash_3_hub"),
        ("cuda", Installed(capability=(9, 0), flash_attn=True), "flash"),
        ("cuda", Installed(capability=(9, 0)), "native"),
        ("cuda", Installed(capability=(8, 9), flash_attn=True, kernels=True), "flash"),
        ("cuda", Installed(capability=(8, 0), flash_attn=True), "flash"),
        ("cuda", Installed(capability=(8, 9), kernels=True), "native"),  # FA3 is for Hopper only
        ("cuda", Installed(capability=(7, 5), flash_attn=True), "native"),  # FA2 needs Ampere
        ("cuda", Installed(capability=None, flash_attn=True), "native"),
        ("cpu", Installed(capability=(9, 0), flash_attn=True, flash_attn_3=True, kernels=True), "native"),
        ("mps", Installed(flash_attn=True), "native"),
    ],
)
def test_backend_choice_follows_the_gpu_and_what_is_installed(device, installed, expected):
    assert default_attention_backend(device, installed) == expected


def test_bad_values_fall_back_with_a_note_each(cache_dir):
    environ = {
        **cache_dir,
        "ZIMAGE_ATTENTION_BACKEND": "flsh",
        "ZIMAGE_COMPILE": "maybe",
        "ZIMAGE_MEMORY": "32gb",
        "ZIMAGE_FAST": "turbo",
        "ZIMAGE_VAE_TILING_ABOVE": "big",
        "ZIMAGE_PROMPT_CACHE": "-3",
    }
    settings, notes = speed_settings("cuda", False, environ=environ, installed=HOPPER)
    assert settings == SpeedSettings(
        device="cuda",
        attention_backend="_flash_3_hub",
        compile=True,
        compile_cache=cache_dir["ZIMAGE_COMPILE_CACHE"],
    )
    assert notes == [
        "ZIMAGE_ATTENTION_BACKEND=flsh is not a backend: using _flash_3_hub",
        "ZIMAGE_FAST=turbo is not fp8: off",
        "ZIMAGE_COMPILE=maybe is not 0 or 1: using the default",
        "ZIMAGE_MEMORY=32gb is not full, 16gb or offload: using full",
        "ZIMAGE_VAE_TILING_ABOVE=big is not a whole number from 0 to 1099511627776: using 2359296",
        "ZIMAGE_PROMPT_CACHE=-3 is not a whole number from 0 to 4096: using 32",
    ]


def test_a_backend_whose_package_is_missing_falls_back_to_the_best_installed():
    environ = {"ZIMAGE_ATTENTION_BACKEND": "FLASH", "ZIMAGE_COMPILE": "0"}
    settings, notes = speed_settings("cuda", False, environ=environ, installed=HOPPER)
    assert settings.attention_backend == "_flash_3_hub"
    assert notes == [
        "ZIMAGE_ATTENTION_BACKEND=flash needs flash-attn>=2.6.3, which is not installed: using _flash_3_hub"
    ]
    ok, notes = speed_settings(
        "cuda", False, environ={**environ, "ZIMAGE_ATTENTION_BACKEND": "sage_hub"}, installed=HOPPER
    )
    assert (ok.attention_backend, notes) == ("sage_hub", [])


def test_on_the_cpu_attention_is_native_and_gpu_memory_modes_do_not_apply():
    environ = {"ZIMAGE_ATTENTION_BACKEND": "flash", "ZIMAGE_MEMORY": "16gb"}
    settings, notes = speed_settings("cpu", False, environ=environ, installed=HOPPER)
    assert (settings.attention_backend, settings.memory) == ("native", "full")
    assert notes == [
        "ZIMAGE_ATTENTION_BACKEND=flash: attention is always native on cpu",
        "memory 16gb is for a CUDA GPU: using full on cpu",
    ]


def test_zero_gpu_refuses_jit_compilation_and_moving_weights():
    settings, notes = speed_settings("cuda", True, environ={"ZIMAGE_MEMORY": "offload"}, installed=HOPPER)
    assert (settings.compile, settings.memory, settings.zero_gpu) == (False, "full", True)
    assert settings.compile_cache is None
    assert any(note.startswith("torch.compile is off on ZeroGPU") for note in notes)
    assert "memory offload is not for ZeroGPU (the pipeline stays on the GPU it lends): using full" in notes


def test_zero_gpu_is_taken_as_hopper_without_touching_cuda():
    assert speed.detect_installed("cuda", True).capability == (9, 0)
    assert speed.detect_installed("cpu", False).capability is None


def test_cpu_offload_1_still_means_offload_and_needs_accelerate():
    legacy = {"ZIMAGE_CPU_OFFLOAD": "1", "ZIMAGE_COMPILE": "0"}
    settings, notes = speed_settings("cuda", False, environ=legacy, installed=HOPPER)
    assert (settings.memory, notes) == ("offload", [])
    without = Installed(capability=(9, 0), kernels=True, accelerate=False)
    settings, notes = speed_settings("cuda", False, environ=legacy, installed=without)
    assert settings.memory == "16gb"
    assert notes == ["memory offload needs the accelerate package (pip install accelerate): using 16gb"]
    settings, notes = speed_settings(
        "cuda", False, environ={**legacy, "ZIMAGE_MEMORY": "full"}, installed=HOPPER
    )
    assert (settings.memory, notes) == ("full", ["ZIMAGE_CPU_OFFLOAD=1 ignored: ZIMAGE_MEMORY=full decides"])


def test_fp8_is_opt_in_states_its_cost_and_turns_compile_off(cache_dir):
    environ = {**cache_dir, "ZIMAGE_FAST": "fp8", "ZIMAGE_MEMORY": "16GB"}
    settings, notes = speed_settings("cuda", False, environ=environ, installed=HOPPER)
    assert (settings.fp8, settings.compile, settings.memory) == (True, False, "16gb")
    assert "quality" in notes[0] and "half its memory" in notes[0]
    assert notes[1] == "torch.compile is off with ZIMAGE_FAST=fp8: it cannot trace the per-layer weight casts"
    assert "weights: fp8" in describe(settings)
    on_mac, notes = speed_settings("mps", False, environ={"ZIMAGE_FAST": "fp8"})
    assert not on_mac.fp8 and notes == ["ZIMAGE_FAST=fp8 is not available on mps (no float8 there): off"]


def test_sizes_and_counts_parse_and_show():
    environ = {"ZIMAGE_VAE_TILING_ABOVE": "2048x1024", "ZIMAGE_PROMPT_CACHE": "0"}
    settings, notes = speed_settings("cpu", False, environ=environ)
    assert (settings.vae_tiling_above, settings.prompt_cache, notes) == (2048 * 1024, 0, [])
    assert describe(settings).endswith("VAE tiling above 2097152 px · prompt cache: off")


def test_an_unwritable_compile_cache_falls_back_to_torchs_default(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    environ = {"ZIMAGE_COMPILE_CACHE": str(blocker / "cache")}
    settings, notes = speed_settings("cuda", False, environ=environ, installed=HOPPER)
    assert settings.compile and settings.compile_cache is None
    assert len(notes) == 1 and "is not writable" in notes[0]


def test_backend_tables_match_diffusers():
    from diffusers.models import attention_dispatch as dispatch

    names = tuple(member.value for member in dispatch.AttentionBackendName)
    assert names == speed.ATTENTION_BACKENDS
    installed = speed.detect_installed("cpu", False)
    for name in names:
        try:
            dispatch._check_attention_backend_requirements(dispatch.AttentionBackendName(name))
            usable = True
        except RuntimeError:
            usable = False
        assert usable == (speed._missing(name, installed) is None), name
        source = inspect.getsource(
            dispatch._AttentionBackendRegistry._backends[dispatch.AttentionBackendName(name)]
        )
        assert ("`attn_mask` is not supported" in source) == (name in speed.REJECTS_MASK), name


# ---- applying them on the tiny pipeline ------------------------------------------------------


def test_native_on_the_cpu_changes_nothing(baseline):
    pipeline = build_tiny_pipeline()
    assert apply_speed_settings(pipeline, CPU, "cpu") == []
    assert effective_settings(pipeline) == CPU
    assert np.array_equal(_pixels(pipeline), baseline)


def test_a_backend_that_cannot_load_falls_back_to_native_and_still_generates(baseline):
    pipeline = build_tiny_pipeline()
    notes = apply_speed_settings(pipeline, SpeedSettings(attention_backend="flash"), "cpu")
    assert len(notes) == 1
    assert notes[0].startswith(
        "attention flash is not usable here (Flash Attention backend 'flash' is not usable"
    )
    assert notes[0].endswith(": using native")
    assert effective_settings(pipeline).attention_backend == "native"
    assert np.array_equal(_pixels(pipeline), baseline)


def test_a_backend_that_loads_but_fails_its_probe_falls_back_to_native(baseline):
    pipeline = build_tiny_pipeline()  # cuDNN attention sets fine on a CPU, then has no kernel to run
    notes = apply_speed_settings(pipeline, SpeedSettings(attention_backend="_native_cudnn"), "cpu")
    assert len(notes) == 1 and notes[0].startswith("attention _native_cudnn is not usable here (")
    processor = pipeline.transformer.layers[0].attention.processor
    assert processor._attention_backend.value == "native"
    assert np.array_equal(_pixels(pipeline), baseline)


def test_a_working_backend_stays_and_leaves_the_process_default_alone(baseline):
    from diffusers.models.attention_dispatch import _AttentionBackendRegistry

    before = _AttentionBackendRegistry._active_backend
    pipeline = build_tiny_pipeline()
    notes = apply_speed_settings(pipeline, SpeedSettings(attention_backend="_native_math"), "cpu")
    assert notes == ["attention: _native_math"]
    assert pipeline.transformer.layers[0].attention.processor._attention_backend.value == "_native_math"
    assert _AttentionBackendRegistry._active_backend == before  # other pipelines keep their default
    image = _pixels(pipeline)  # another SDPA kernel: the same image up to rounding
    assert np.abs(image.astype(int) - baseline).max() <= 2 and image.std() > 1


def test_guidance_with_a_maskless_backend_switches_to_native_for_that_call():
    pipeline = build_tiny_pipeline()  # PyTorch's flash SDPA runs on a CPU and, like flash-attn, takes no mask
    assert apply_speed_settings(pipeline, SpeedSettings(attention_backend="_native_flash"), "cpu") == [
        "attention: _native_flash"
    ]
    cache = PromptCache(4)
    positive, negative = cache.encode(pipeline, LONG, "", True)
    assert len(positive[0]) > 32 >= len(negative[0])  # pads to 64 and 32 tokens: the batch needs a mask
    call = {"prompt_embeds": positive, "negative_prompt_embeds": negative, "guidance_scale": 4.0}
    with pytest.raises(ValueError, match="attn_mask"):
        _pixels(pipeline, **call)
    with mask_safe_attention(pipeline, positive, negative) as note:
        assert note is not None and note.startswith("attention: native for this run (_native_flash")
        image = _pixels(pipeline, **call)
    assert image.std() > 1
    assert pipeline.transformer.layers[0].attention.processor._attention_backend.value == "_native_flash"
    same, other = cache.encode(pipeline, "a fox", "a cat", True)
    with mask_safe_attention(pipeline, same, other) as note:
        assert note is None  # equal padded lengths: no mask, the fast backend stays


def test_fp8_weights_on_the_cpu_still_generate(baseline):
    pipeline = build_tiny_pipeline()
    assert apply_speed_settings(pipeline, SpeedSettings(fp8=True), "cpu") == []
    assert pipeline.transformer.layers[0].attention.to_q.weight.dtype == torch.float8_e4m3fn
    assert pipeline.transformer.t_embedder.mlp[0].weight.dtype == torch.float32  # kept precise
    image = _pixels(pipeline)
    assert image.std() > 1 and not np.array_equal(image, baseline)


def test_a_gpu_memory_mode_on_the_cpu_is_full():
    pipeline = build_tiny_pipeline()
    apply_speed_settings(pipeline, SpeedSettings(memory="16gb"), "cpu")
    assert effective_settings(pipeline).memory == "full"


@pytest.mark.parametrize("room", [True, False])
def test_the_text_encoder_shuttle_encodes_the_same_wherever_it_runs(room):
    plain, shuttled = build_tiny_pipeline(), build_tiny_pipeline()
    shuttle = TextEncoderShuttle(shuttled.text_encoder, "cpu", fits=lambda: room)
    want, _ = PromptCache(0).encode(plain, "a red fox", None, False)
    got, _ = PromptCache(0).encode(shuttled, "a red fox", None, False)
    assert torch.equal(got[0], want[0])
    assert (shuttle.visits, shuttle.cpu_runs) == ((1, 0) if room else (0, 1))


def test_compiled_blocks_do_not_recompile_for_new_prompts_or_sizes(monkeypatch, tmp_path):
    import torch._dynamo
    from torch._dynamo.utils import counters

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "elsewhere"))  # restored after
    monkeypatch.setenv("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")
    monkeypatch.setenv("TORCHINDUCTOR_AUTOGRAD_CACHE", "1")
    torch._dynamo.reset()
    try:
        pipeline = build_tiny_pipeline()
        settings = SpeedSettings(compile=True, compile_cache=str(tmp_path / "inductor"))
        notes = apply_speed_settings(pipeline, settings, "cpu")
        assert notes == ["compiled: the transformer's repeated blocks (compiles at warm-up, then reused)"]
        assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "inductor")
        notes = warm_up(pipeline, settings, [(256, 256), (320, 256)])
        assert len(notes) == 1 and notes[0].startswith("warmed up 2 sizes in ")
        graphs = counters["stats"]["unique_graphs"]
        assert graphs >= 1
        with torch._dynamo.config.patch(error_on_recompile=True):
            image = _pixels(pipeline, prompt=LONG, size=(256, 320))  # another caption length, another size
        assert counters["stats"]["unique_graphs"] == graphs
        assert image.std() > 1
    finally:
        torch._dynamo.reset()


def test_a_failed_warm_up_leaves_the_pipeline_uncompiled_and_working(baseline):
    pipeline = build_tiny_pipeline()
    pipeline.transformer.compile_repeated_blocks(fullgraph=False, dynamic=True)
    speed_apply._APPLIED[pipeline] = speed_apply._Applied(SpeedSettings(compile=True), True)
    notes = warm_up(pipeline, SpeedSettings(compile=True), [(250, 250)])  # not a multiple of 16: raises
    assert len(notes) == 1 and notes[0].startswith("torch.compile failed at warm-up (ValueError")
    assert effective_settings(pipeline).compile is False
    assert all(layer._compiled_call_impl is None for layer in pipeline.transformer.layers)
    assert np.array_equal(_pixels(pipeline), baseline)


def test_warm_up_does_nothing_when_compile_is_off():
    assert warm_up(build_tiny_pipeline(), CPU) == []


# ---- the prompt cache -------------------------------------------------------------------------


@pytest.mark.parametrize(("guidance", "negative"), [(0.0, None), (4.0, "blurry, low quality")])
def test_cached_embeddings_give_the_same_pixels_as_the_prompt_text(guidance, negative):
    pipeline = build_tiny_pipeline()
    by_text = _pixels(pipeline, prompt="a red fox", negative_prompt=negative, guidance_scale=guidance)
    cache = PromptCache(8)
    positive, negatives = cache.encode(pipeline, "a red fox", negative, guidance > 0)
    assert positive[0].device == pipeline._execution_device
    by_embeds = _pixels(
        pipeline, prompt_embeds=positive, negative_prompt_embeds=negatives, guidance_scale=guidance
    )
    assert np.array_equal(by_text, by_embeds)
    assert by_text.std() > 1


def test_one_text_encoder_run_per_prompt():
    pipeline = build_tiny_pipeline()
    cache = PromptCache(8)
    first = cache.encode(pipeline, "a red fox", None, False)
    for _ in range(3):
        again = cache.encode(pipeline, "a red fox", "ignored without guidance", False)
        assert again[0][0] is first[0][0]
    assert (cache.encodes, cache.hits) == (1, 3)
    cache.encode(pipeline, "a grey wolf", None, False)
    cache.encode(pipeline, "a red fox", None, True)  # guidance on: another entry (it has a negative)
    assert cache.encodes == 3


def test_least_recently_used_goes_first_and_the_size_holds():
    pipeline = build_tiny_pipeline()
    cache = PromptCache(2)
    for prompt in ("a", "b", "a", "c"):  # "a" used again, so "b" is the oldest when "c" arrives
        cache.encode(pipeline, prompt, None, False)
    assert (cache.encodes, len(cache)) == (3, 2)
    cache.encode(pipeline, "a", None, False)
    assert cache.encodes == 3
    cache.encode(pipeline, "b", None, False)
    assert (cache.encodes, len(cache)) == (4, 2)


def test_embeddings_never_cross_models():
    one, two = build_tiny_pipeline(), build_tiny_pipeline()
    two.text_encoder.embed_tokens.weight.data.mul_(2.0)
    cache = PromptCache(8)
    first, _ = cache.encode(one, "a red fox", None, False)
    second, _ = cache.encode(two, "a red fox", None, False)
    assert cache.encodes == 2
    assert not torch.equal(first[0], second[0])


def test_size_zero_keeps_nothing():
    pipeline = build_tiny_pipeline()
    cache = PromptCache(0)
    cache.encode(pipeline, "a red fox", None, False)
    cache.encode(pipeline, "a red fox", None, False)
    assert (cache.encodes, len(cache)) == (2, 0)


def test_many_threads_one_prompt_one_encode():
    pipeline = build_tiny_pipeline()
    cache = PromptCache(4)
    results: list = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.encode(pipeline, "a red fox", None, False)))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert cache.encodes == 1 and len(results) == 8
    assert all(result[0][0] is results[0][0][0] for result in results)


# ---- VAE tiling -------------------------------------------------------------------------------


def test_tiling_flips_with_the_threshold_and_leaves_small_images_alone(baseline):
    pipeline = build_tiny_pipeline()
    assert vae_tiling_for(pipeline, 256, 256, CPU) is False
    assert pipeline.vae.use_tiling is False
    assert np.array_equal(_pixels(pipeline), baseline)
    low = SpeedSettings(vae_tiling_above=128 * 128)
    assert vae_tiling_for(pipeline, 256, 256, low) is True
    assert pipeline.vae.use_tiling is True
    assert not np.array_equal(_pixels(pipeline), baseline)  # the tiny VAE's tiles are 32 px: it shows
    assert vae_tiling_for(pipeline, 256, 256, SpeedSettings(vae_tiling_above=256 * 256)) is False
    assert np.array_equal(_pixels(pipeline), baseline)
    assert DEFAULT_TILING_ABOVE == 1536 * 1536
