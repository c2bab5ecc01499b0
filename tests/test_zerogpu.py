"""The `diffusers` provider on a ZeroGPU Space, through a stand-in `spaces` package that does at
the boundary what ZeroGPU does (tests/stand_ins/spaces: fork, pickled arguments and values,
generator close as Stop, the duration callable), on the CPU with the tiny checkpoint."""

from __future__ import annotations

import asyncio
import inspect
import multiprocessing
import os
import pickle
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from zimage_ui.cancel import CancelToken
from zimage_ui.errors import Cancelled, JobFailed
from zimage_ui.params import GenerationParams
from zimage_ui.providers import get_provider
from zimage_ui.providers.base import KeyRing, Progress
from zimage_ui.providers.local import diffusers_local, zerogpu
from zimage_ui.runner import generate_one

STAND_INS = Path(__file__).parent / "stand_ins"


def _params(**overrides) -> GenerationParams:
    values = {"prompt": "a red fox", "width": 256, "height": 256, "seed": 7, "num_inference_steps": 4}
    return GenerationParams(**{**values, **overrides})


@pytest.fixture
def spaces(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimpleNamespace]:
    """The stand-in `spaces`, imported as on a ZeroGPU Space (SPACES_ZERO_GPU=true first)."""
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    monkeypatch.syspath_prepend(str(STAND_INS))
    sys.modules.pop("spaces", None)
    import spaces as stand_in

    assert Path(stand_in.__file__).is_relative_to(STAND_INS)
    try:
        yield stand_in
    finally:
        sys.modules.pop("spaces", None)


@pytest.fixture
def zero_gpu(spaces, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch):
    """The `diffusers` provider on "ZeroGPU": the tiny checkpoint on the CPU, its generation
    decorated with the stand-in's `spaces.GPU` (as the import does on a Space)."""
    monkeypatch.setenv("ZIMAGE_DEVICE", "cpu")
    monkeypatch.setattr(diffusers_local, "_ZERO_GPU_TASK", diffusers_local._decorate_for_zero_gpu())
    assert hasattr(diffusers_local._ZERO_GPU_TASK, "zerogpu")
    return spaces


def test_the_task_is_a_generator_of_plain_values_with_a_duration_from_its_own_arguments():
    assert inspect.isgeneratorfunction(diffusers_local._gpu_generation)  # ZeroGPU relays its yields
    params = _params().with_concrete_seed()
    request = params.model_dump()
    assert pickle.loads(pickle.dumps(("diffusers", request))) == ("diffusers", request)
    assert GenerationParams.model_validate(request) == params
    assert pickle.loads(pickle.dumps(params)) == params  # the model pickles too
    assert diffusers_local._gpu_duration("diffusers", request) == zerogpu.gpu_seconds(256, 256, 4, 1)


def test_the_duration_grows_with_the_work_between_a_floor_and_a_cap():
    turbo = zerogpu.gpu_seconds(1024, 1024, 8, 1)
    assert turbo == zerogpu.MIN_GPU_S == 15  # far below the 120 s once reserved for every call
    assert zerogpu.gpu_seconds(256, 256, 1, 1) == zerogpu.MIN_GPU_S
    assert turbo < zerogpu.gpu_seconds(1536, 1536, 8, 1) < zerogpu.gpu_seconds(2048, 2048, 8, 1)
    assert zerogpu.gpu_seconds(1024, 1024, 8, 1) < zerogpu.gpu_seconds(1024, 1024, 8, 4)
    assert zerogpu.gpu_seconds(2048, 2048, 50, 4) == zerogpu.MAX_GPU_S


def test_the_stand_in_refuses_what_zerogpu_cannot_pickle(spaces):
    def task(value):
        yield value

    decorated = spaces.GPU(duration=5)(task)
    with pytest.raises((pickle.PicklingError, AttributeError)):
        list(decorated(lambda: 1))  # a closure, as `report` was
    with pytest.raises(TypeError):
        list(decorated(CancelToken()))  # a lock inside, as the old cancel token
    assert list(decorated({"plain": [1, 2]})) == [{"plain": [1, 2]}]
    assert spaces.calls[-1]["duration"] == 5


def test_the_stand_in_runs_the_task_in_another_process(spaces):
    def where():
        yield os.getpid()

    (pid,) = list(spaces.GPU(where)())
    assert pid != os.getpid()


async def test_a_generation_crosses_the_fork_with_step_progress_and_previews(zero_gpu, capfd):
    updates: list[Progress] = []
    outcome = await generate_one("diffusers", _params(), progress=updates.append)
    assert outcome.ok, outcome.error
    steps = [u.step for u in updates if u.step]
    assert steps == [1, 2, 3, 4]
    assert [u.step for u in updates if u.preview is not None] == [2, 4]
    assert updates[-1].message == "decoding the image (VAE)"
    assert "waiting for ZeroGPU to attach a GPU" in [u.message for u in updates]
    assert zero_gpu.calls[-1] == {"task": "_gpu_generation", "duration": 15}
    assert "spaces stand-in: _gpu_generation values=7 stopped=False" in capfd.readouterr().err
    tiny = await generate_one("diffusers-tiny", _params())  # the same model, in this process
    assert np.array_equal(np.asarray(outcome.result.images[0]), np.asarray(tiny.result.images[0]))
    assert "ZeroGPU CPU, float32" in outcome.prepared.url
    assert not multiprocessing.active_children()


async def test_stop_after_the_first_progress_ends_the_worker(zero_gpu, capfd):
    """A long run (1024x1024, 50 steps: half a minute here) stopped at its first step."""
    provider = get_provider("diffusers")
    prepared = provider.prepare(_params(width=1024, height=1024, num_inference_steps=50))
    token = CancelToken()
    steps: list[int] = []

    def on_progress(update: Progress) -> None:
        if update.step:
            steps.append(update.step)
            token.cancel()

    started = time.monotonic()
    with pytest.raises(Cancelled):
        await provider.run(prepared, keys=KeyRing(), progress=on_progress, cancel=token)
    assert time.monotonic() - started < 30  # not the minute or so 50 steps take here
    assert max(steps) <= 3  # the caller closes at step 1; the worker sees it with its next value
    assert "stopped=True" in capfd.readouterr().err
    assert not multiprocessing.active_children()  # the worker has ended: the device is free
    again = await generate_one("diffusers", _params(num_inference_steps=2))
    assert again.ok, again.error


async def test_cancelling_the_task_stops_the_worker_before_the_device_is_handed_on(zero_gpu, capfd):
    """Gradio's cancel (an API client's job.cancel()) cancels the task, not our token."""
    provider = get_provider("diffusers")
    prepared = provider.prepare(_params(width=1024, height=1024, num_inference_steps=50))
    first_step = asyncio.Event()
    steps: list[int] = []

    def on_progress(update: Progress) -> None:
        if update.step:
            steps.append(update.step)
            first_step.set()

    run = asyncio.ensure_future(provider.run(prepared, keys=KeyRing(), progress=on_progress))
    await first_step.wait()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    # The next generation gets the device only once the abandoned one has really ended.
    again = await generate_one("diffusers", _params(num_inference_steps=2))
    assert again.ok, again.error
    err = capfd.readouterr().err
    assert err.index("values=") < err.rindex("duration=")  # the first worker ended before the next began
    assert "stopped=True" in err
    assert max(steps) < 10


async def test_a_failure_in_the_worker_keeps_its_message(zero_gpu, monkeypatch: pytest.MonkeyPatch):
    def out_of_memory(provider_id, *_args):
        raise JobFailed(provider_id, "the device ran out of memory: try a smaller size or fewer images")

    monkeypatch.setattr(diffusers_local, "run_pipeline", out_of_memory)  # the fork inherits it
    outcome = await generate_one("diffusers", _params())
    assert outcome.error == "diffusers: the device ran out of memory: try a smaller size or fewer images"


async def test_a_bug_in_the_worker_is_an_unexpected_error_with_its_type(zero_gpu, monkeypatch):
    def broken(*_args):
        raise ValueError("boom")

    monkeypatch.setattr(diffusers_local, "run_pipeline", broken)
    outcome = await generate_one("diffusers", _params())
    assert "unexpected error" in outcome.error and "ValueError: boom" in outcome.error


async def test_a_worker_that_dies_is_a_zerogpu_failure(zero_gpu, monkeypatch):
    monkeypatch.setattr(diffusers_local, "run_pipeline", lambda *_args: os._exit(3))
    outcome = await generate_one("diffusers", _params())
    assert outcome.error == "diffusers: ZeroGPU: GPU task aborted"


async def test_the_tiny_model_stays_off_the_gpu_path(zero_gpu):
    before = len(zero_gpu.calls)
    outcome = await generate_one("diffusers-tiny", _params())
    assert outcome.ok and len(zero_gpu.calls) == before


def test_on_zerogpu_the_pipeline_loads_before_the_app_launches(zero_gpu):
    provider = get_provider("diffusers")
    assert not provider._slot.loaded
    provider.warm_up()  # app.py calls it before launch; ZeroGPU packs "cuda" tensors at launch
    assert provider._slot.loaded


def test_zerogpu_texts_say_where_it_runs(spaces, monkeypatch: pytest.MonkeyPatch):
    provider = get_provider("diffusers")
    monkeypatch.delenv("ZIMAGE_DEVICE", raising=False)
    status = provider.availability(KeyRing())
    assert status.usable and "ZeroGPU cuda, bf16" in status.reason
    assert provider.label == "Local diffusers pipeline (ZeroGPU cuda, bf16)"
    monkeypatch.setenv("ZIMAGE_DEVICE", "cuda:2")
    assert "ignored: ZeroGPU attaches one GPU per generation" in provider.availability(KeyRing()).reason


def test_a_request_beyond_what_one_call_reserves_is_noted(zero_gpu):
    provider = get_provider("diffusers")
    assert not any("ZeroGPU" in note for note in provider.prepare(_params()).notes)
    big = provider.prepare(_params(width=2048, height=2048, num_inference_steps=50, num_images=4))
    assert any("at most 120 s for one call" in note for note in big.notes)


class _Transformer:
    def __init__(self, dim: int = 3840, n_layers: int = 30) -> None:
        import torch

        self.config = {"dim": dim, "n_layers": n_layers}
        self.layers = torch.nn.ModuleList()
        self.compiled = False
        self.backend = None

    def compile(self, **_kwargs) -> None:
        self.compiled = True

    def set_attention_backend(self, name: str) -> None:
        if name != "flash":
            raise ValueError(f"{name} is not a backend")
        self.backend = name


def _pipeline(**config) -> SimpleNamespace:
    return SimpleNamespace(transformer=_Transformer(**config))


def test_aoti_blocks_load_as_the_official_space_does(spaces):
    pipeline = _pipeline()
    assert zerogpu.aoti_blocks(pipeline, "cuda") == []
    (call,) = spaces.aoti_calls
    assert call["module"] is pipeline.transformer.layers  # the main layers, not the refiners
    assert call["blocks"] == ["ZImageTransformerBlock"]
    assert (call["repo_id"], call["variant"]) == ("zerogpu-aoti/Z-Image", "fa3")


def test_aoti_falls_back_with_a_note(spaces, monkeypatch: pytest.MonkeyPatch):
    def offline(*_args, **_kwargs):
        raise OSError("no connection to the Hub")

    monkeypatch.setattr(spaces, "aoti_blocks_load", offline)
    pipeline = _pipeline()
    (note,) = zerogpu.aoti_blocks(pipeline, "cuda")
    assert "AoTI blocks not loaded (OSError: no connection to the Hub); running uncompiled" in note
    assert not hasattr(pipeline.transformer.layers, "_repeated_blocks")
    assert "compiled for the full-size" in zerogpu.aoti_blocks(_pipeline(dim=32, n_layers=2), "cuda")[0]
    assert "runs on cpu" in zerogpu.aoti_blocks(_pipeline(), "cpu")[0]
    monkeypatch.delattr(spaces, "aoti_blocks_load")
    assert "has no aoti_blocks_load" in zerogpu.aoti_blocks(_pipeline(), "cuda")[0]
    monkeypatch.setenv("ZIMAGE_AOTI", "0")
    assert zerogpu.aoti_blocks(_pipeline(), "cuda") == []


def test_no_jit_compile_on_zerogpu(monkeypatch: pytest.MonkeyPatch):
    from zimage_ui.providers.local.speed import Installed, speed_settings

    hopper = Installed(capability=(9, 0), flash_attn=True)
    monkeypatch.setenv("ZIMAGE_COMPILE", "1")
    settings, notes = speed_settings("cuda:0", False, installed=hopper)
    assert settings.compile and notes == []
    settings, notes = speed_settings("cuda", True, installed=hopper)
    assert not settings.compile
    assert any(note.startswith("torch.compile is off on ZeroGPU") for note in notes)


async def test_a_local_prompt_rewrite_crosses_the_fork_with_plain_values(
    zero_gpu, monkeypatch: pytest.MonkeyPatch, capfd
):
    """The local enhancer's `spaces.GPU` function: strings in, a tagged string out, its own duration."""
    from zimage_ui.enhancer import EnhancerFailed, enhance
    from zimage_ui.providers.local import prompt_writer

    monkeypatch.setenv("ZIMAGE_ENHANCER_LOCAL", "auto")  # on ZeroGPU, auto means the local encoder
    decorated = zerogpu.gpu_function(prompt_writer._gpu_rewrite, duration=prompt_writer._rewrite_duration)
    monkeypatch.setattr(prompt_writer, "_ZERO_GPU_TASK", decorated)
    enhanced = await enhance("a red fox in snow")
    assert enhanced.prompt and enhanced.original == "a red fox in snow"
    assert zero_gpu.calls[-1] == {"task": "_gpu_rewrite", "duration": prompt_writer.REWRITE_GPU_S}
    assert "spaces stand-in: _gpu_rewrite" in capfd.readouterr().err
    assert not multiprocessing.active_children()
    # A failure in the worker comes back with its message, not as a bare class name.
    monkeypatch.setenv("ZIMAGE_MODEL_ID", "/nonexistent/checkpoint")
    with pytest.raises(EnhancerFailed, match="Set ZIMAGE_MODEL_ID") as raised:
        await enhance("a cat")
    assert "prompt enhancer (" in str(raised.value) and "Error:" not in str(raised.value)
