"""The local backend on any device: ZIMAGE_DEVICE checked (a note and the default, never a crash),
bf16 where the device has it and float32 elsewhere (never fp16), loading straight onto the
device, prompt embeddings from one place, and the `diffusers` provider on the CPU pixel for pixel
the tiny model."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from tests.cli_runs import cli
from zimage_ui.params import GenerationParams
from zimage_ui.providers import get_provider
from zimage_ui.providers.base import KeyRing
from zimage_ui.providers.local import devices, diffusers_local, generation, loading
from zimage_ui.providers.local.devices import DeviceChoice, choose_device

ROOT = Path(__file__).resolve().parent.parent
USE = "use cuda, cuda:N, mps or cpu"


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch):
    """A pretend machine: `gpus` CUDA GPUs of compute capability `capability`, MPS or not."""

    def make(gpus: int = 0, capability: tuple[int, int] = (9, 0), mps: bool = False, mps_bf16: bool = True):
        monkeypatch.setattr(devices, "_cuda_count", lambda: gpus)
        monkeypatch.setattr(devices, "_cuda_capability", lambda _index: capability)
        monkeypatch.setattr(devices, "_mps_available", lambda: mps)
        monkeypatch.setattr(devices, "_mps_bf16", lambda: mps_bf16)
        monkeypatch.setattr(diffusers_local, "cuda_available", lambda: gpus > 0)
        return gpus > 0

    return make


def test_the_default_is_the_first_gpu_else_mps_else_the_cpu(machine):
    assert choose_device(None, cuda_present=machine(gpus=2)).label == "cuda:0, bf16"
    assert choose_device("", cuda_present=machine(mps=True)).label == "MPS, bf16"
    assert choose_device(" ", cuda_present=machine(mps=True, mps_bf16=False)).label == "MPS, float32"
    assert choose_device(None, cuda_present=machine()) == DeviceChoice("cpu", "float32")


def test_each_device_asked_for_is_used_where_it_exists(machine):
    cuda = machine(gpus=2)
    assert choose_device("cuda:1", cuda_present=cuda).label == "cuda:1, bf16"
    assert choose_device("CUDA", cuda_present=cuda).label == "cuda:0, bf16"
    assert choose_device("cpu", cuda_present=cuda).label == "CPU, float32"
    assert choose_device("cuda:0", cuda_present=machine(gpus=1, capability=(7, 5))).label == "cuda:0, float32"
    assert choose_device("mps", cuda_present=machine(mps=True)).label == "MPS, bf16"


@pytest.mark.parametrize(
    ("raw", "gpus", "expected"),
    [
        ("gpu", 1, "ZIMAGE_DEVICE='gpu' is not a device (use cuda, cuda:N, mps or cpu): using cuda:0, bf16"),
        (
            "cuda:3",
            2,
            "ZIMAGE_DEVICE=cuda:3, but this machine has 2 CUDA GPUs (cuda:0..cuda:1): using cuda:0, bf16",
        ),
        ("cuda", 0, "ZIMAGE_DEVICE=cuda, but this machine has no CUDA GPU torch can use: using CPU, float32"),
        ("mps", 0, "ZIMAGE_DEVICE=mps, but torch has no MPS device here: using CPU, float32"),
        (
            "cuda:-1",
            0,
            "ZIMAGE_DEVICE='cuda:-1' is not a device (use cuda, cuda:N, mps or cpu): using CPU, float32",
        ),
    ],
)
def test_a_device_that_is_not_here_is_a_note_and_the_default(machine, raw, gpus, expected):
    assert choose_device(raw, cuda_present=machine(gpus=gpus)).note == expected


@given(st.text(max_size=12), st.integers(0, 3), st.booleans(), st.booleans())
def test_never_float16_and_never_a_crash(raw, gpus, mps, zero_gpu):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(devices, "_cuda_count", lambda: gpus)
        patch.setattr(devices, "_cuda_capability", lambda _index: (8, 6))
        patch.setattr(devices, "_mps_available", lambda: mps)
        patch.setattr(devices, "_mps_bf16", lambda: True)
        choice = choose_device(raw, cuda_present=gpus > 0, zero_gpu=zero_gpu)
    assert choice.dtype in {"bfloat16", "float32"}
    assert choice.device == "cpu" or choice.device.startswith(("cuda", "mps"))
    assert choice.device != "cpu" or choice.dtype == "float32"


def test_the_provider_says_the_real_device_and_dtype(machine, monkeypatch: pytest.MonkeyPatch):
    provider = get_provider("diffusers")
    machine(gpus=2)
    monkeypatch.setenv("ZIMAGE_DEVICE", "cuda:1")
    assert provider.label == "Local diffusers pipeline (cuda:1, bf16)"
    assert provider.availability(KeyRing()).reason == "runs on cuda:1, bf16"
    prepared = provider.prepare(GenerationParams(prompt="fox", seed=1))
    assert prepared.url.endswith("on cuda:1, bf16") and prepared.notes == ()
    assert provider.device_word == "GPU"
    monkeypatch.setenv("ZIMAGE_DEVICE", "cuda:7")
    status = provider.availability(KeyRing())
    assert status.usable and "ZIMAGE_DEVICE=cuda:7, but this machine has 2 CUDA GPUs" in status.reason
    assert any("cuda:7" in note for note in provider.prepare(GenerationParams(prompt="fox")).notes)
    monkeypatch.setenv("ZIMAGE_DEVICE", "cpu")
    monkeypatch.setattr(diffusers_local, "_total_ram_gib", lambda: 512.0)
    assert provider.label == "Local diffusers pipeline (CPU, float32)"
    assert provider.availability(KeyRing()).reason.startswith("runs on the CPU, float32")
    assert provider.device_word == "CPU"
    assert (
        get_provider("diffusers-tiny").prepare(GenerationParams(prompt="fox")).url.endswith("CPU, float32)")
    )


def test_the_cpu_needs_room_for_float32_weights(monkeypatch: pytest.MonkeyPatch, machine):
    machine()
    monkeypatch.setenv("ZIMAGE_MODEL_ID", "Tongyi-MAI/Z-Image-Turbo")
    assert loading.loaded_gib("bfloat16") == loading.REAL_WEIGHTS_GIB
    assert loading.loaded_gib("float32") == 2 * loading.REAL_WEIGHTS_GIB
    monkeypatch.setattr(diffusers_local, "_total_ram_gib", lambda: 48.0)
    reason = get_provider("diffusers").availability(KeyRing()).reason
    assert "48 GiB of RAM is too little" in reason and "float32 (needs about 55 GiB)" in reason


def test_a_local_folder_is_sized_from_its_safetensors_headers(tiny_checkpoint: Path):
    as_float32 = loading.loaded_gib("float32")
    assert as_float32 == pytest.approx(loading.checkpoint_gib(), rel=0.05)  # saved in float32
    assert loading.loaded_gib("bfloat16") == pytest.approx(as_float32 / 2)


def test_cuda_available_does_not_import_torch_without_a_driver():
    if Path("/proc/driver/nvidia").exists() or Path("/dev/nvidia0").exists():
        pytest.skip("this machine has an NVIDIA driver: torch is looked at there")
    code = (
        "import sys\n"
        "from zimage_ui.providers import availability, get_provider\n"
        "from zimage_ui.providers.local import diffusers_local\n"
        "from zimage_ui.providers.base import KeyRing\n"
        "assert not diffusers_local.cuda_available()\n"
        "availability(KeyRing()); get_provider('diffusers').label; diffusers_local.device_choice()\n"
        "print('torch' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "ZIMAGE_DEVICE"}
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "False"


def test_the_checkpoint_loads_in_float32_on_the_cpu(tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch):
    import torch

    monkeypatch.setenv("ZIMAGE_DEVICE", "cpu")
    pipeline = get_provider("diffusers")._slot.get()
    assert pipeline.transformer.dtype == torch.float32
    assert next(pipeline.text_encoder.parameters()).device.type == "cpu"


class _Recorder:
    """Stands in for ZImagePipeline.from_pretrained: records how it is called and what is moved."""

    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.moved: list[str] = []
        self.current: int | None = None  # the CUDA device made current around the call

    def from_pretrained(self, source, **kwargs):
        self.calls.append({"source": source, **kwargs, "current": self.current})
        return SimpleNamespace(to=self.moved.append)


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch):
    import diffusers
    import torch

    record = _Recorder()
    monkeypatch.setattr(diffusers.ZImagePipeline, "from_pretrained", record.from_pretrained)

    @contextlib.contextmanager
    def on_device(index):
        record.current = index
        yield
        record.current = None

    monkeypatch.setattr(torch.cuda, "device", on_device)
    return record


def test_weights_load_straight_onto_the_device(recorder, monkeypatch: pytest.MonkeyPatch):
    import torch

    monkeypatch.setattr(loading, "_is_on", lambda _pipeline, _device: True)
    notes: list[str] = []
    loading.from_pretrained("folder", DeviceChoice("cuda:1", "bfloat16"), on_device=True, notes=notes)
    (call,) = recorder.calls
    assert call["device_map"] == "cuda" and call["current"] == 1 and call["dtype"] == torch.bfloat16
    assert recorder.moved == [] and notes == []
    loading.from_pretrained("folder", DeviceChoice("mps", "bfloat16"), on_device=True, notes=notes)
    assert recorder.calls[-1]["device_map"] == "mps" and recorder.moved == []


def test_without_accelerate_weights_load_then_move_with_a_note(recorder, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(loading, "_accelerate_installed", lambda: False)
    notes: list[str] = []
    loading.from_pretrained("folder", DeviceChoice("cuda:0", "bfloat16"), on_device=True, notes=notes)
    assert "device_map" not in recorder.calls[-1] and recorder.moved == ["cuda:0"]
    assert notes[0].startswith("accelerate is not installed")


def test_zerogpu_loads_then_moves_to_cuda_as_it_documents(recorder):
    choice = DeviceChoice("cuda", "bfloat16", zero_gpu=True)
    loading.from_pretrained("folder", choice, on_device=True, notes=[])
    assert "device_map" not in recorder.calls[-1] and recorder.moved == ["cuda"]


def test_cpu_offload_loads_on_the_cpu(recorder, monkeypatch: pytest.MonkeyPatch):
    from zimage_ui.providers.local.speed import Installed, speed_settings

    monkeypatch.setenv("ZIMAGE_CPU_OFFLOAD", "1")
    settings, _notes = speed_settings(
        "cuda:0", False, installed=Installed(capability=(8, 9), accelerate=True)
    )
    assert settings.memory == "offload"  # load_checkpoint then loads on the CPU: the offload places it
    assert speed_settings("cpu", False)[0].memory == "full"
    loading.from_pretrained("folder", DeviceChoice("cuda:0", "bfloat16"), on_device=False, notes=[])
    assert "device_map" not in recorder.calls[-1] and recorder.moved == []


@pytest.mark.parametrize(("guidance", "negative"), [(0.0, ""), (0.0, "blurry"), (2.5, ""), (2.5, "blurry")])
def test_prompt_embeddings_give_the_pixels_of_the_prompt(guidance, negative):
    import torch

    pipeline = diffusers_local._TINY_SLOT.get()
    params = GenerationParams(
        prompt="a red fox", negative_prompt=negative, guidance_scale=guidance, width=256, height=256, seed=3
    )
    prompt_embeds, negative_embeds = generation.encode_prompts(pipeline, params)
    assert isinstance(prompt_embeds, list) and len(prompt_embeds) == 1
    assert len(negative_embeds) == (1 if guidance else 0)
    common = {"height": 256, "width": 256, "num_inference_steps": 2, "guidance_scale": guidance}

    def pixels(**kwargs) -> np.ndarray:
        generator = torch.Generator("cpu").manual_seed(3)
        return np.asarray(pipeline(**common, **kwargs, generator=generator).images[0])

    by_prompt = pixels(prompt="a red fox", negative_prompt=negative or None)
    by_embeddings = pixels(prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_embeds)
    assert np.array_equal(by_prompt, by_embeddings)


def test_the_cli_on_the_cpu_makes_the_tiny_models_pixels(tiny_checkpoint: Path, tmp_path: Path):
    common = ["--prompt", "x", "--seed", "7", "--width", "256", "--height", "256", "--json"]
    env = {**os.environ, "ZIMAGE_DEVICE": "cpu", "ZIMAGE_MODEL_ID": str(tiny_checkpoint)}
    images = []
    for provider in ("diffusers", "diffusers-tiny"):
        run = cli("generate", "--provider", provider, *common, "--out", str(tmp_path / provider), env=env)
        assert run.returncode == 0, run.stderr
        record = json.loads(run.stdout)
        assert record["provider"] == provider and record["error"] is None
        images.append(np.asarray(Image.open(record["images"][0]).convert("RGB")))
    assert images[0].shape == (256, 256, 3)
    assert np.array_equal(images[0], images[1])


def test_what_was_sent_names_a_local_input_by_its_file_name_never_its_server_path(tmp_path: Path) -> None:
    from zimage_ui.params import ImageInputs, LoraRef
    from zimage_ui.providers.local.generation import pipeline_kwargs

    upload = tmp_path / "gradio" / "0123abcd" / "photo.png"
    lora = tmp_path / "gradio" / "4567ef" / "ink.safetensors"
    loras = [LoraRef(ref=str(lora), scale=0.8), LoraRef(ref="owner/ink-wash", scale=1.0)]
    painted = ImageInputs(image=str(upload), mask=str(upload.with_name("mask.png")), loras=loras)
    posed = ImageInputs(control_image=str(upload.with_name("pose.png")))
    linked = ImageInputs(image="https://cdn.test/photo.png")
    shown = {
        name: str(pipeline_kwargs(GenerationParams(prompt="a fox", seed=1, inputs=inputs)))
        for name, inputs in (("painted", painted), ("posed", posed), ("linked", linked))
    }
    assert not [text for text in shown.values() if str(tmp_path) in text], shown
    assert "'photo.png'" in shown["painted"] and "'mask.png'" in shown["painted"]
    assert "ink.safetensors x 0.8" in shown["painted"] and "owner/ink-wash x 1" in shown["painted"]
    assert "'pose.png'" in shown["posed"] and "'https://cdn.test/photo.png'" in shown["linked"]
