"""The `diffusers` provider's real loading path (`ZImagePipeline.from_pretrained` of a folder),
exercised on the CPU with the tiny model saved as a checkpoint."""

from pathlib import Path

import numpy as np
import pytest

from zimage_ui.params import GenerationParams
from zimage_ui.providers import get_provider
from zimage_ui.providers.base import KeyRing
from zimage_ui.providers.local import diffusers_local
from zimage_ui.runner import generate_one


def test_a_small_local_checkpoint_is_usable_without_a_gpu(tiny_checkpoint: Path):
    status = get_provider("diffusers").availability(KeyRing())
    assert status.usable, status.reason
    assert diffusers_local.checkpoint_gib() < 0.1


def test_the_full_size_model_is_refused_for_lack_of_memory(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ZIMAGE_MODEL_ID", "Tongyi-MAI/Z-Image-Turbo")
    monkeypatch.setattr(diffusers_local, "_total_ram_gib", lambda: 24.0)
    monkeypatch.setattr(diffusers_local, "gpu_available", lambda: False)
    monkeypatch.setattr(diffusers_local, "cuda_available", lambda: False)
    monkeypatch.delenv("ZIMAGE_DEVICE", raising=False)
    status = get_provider("diffusers").availability(KeyRing())
    assert not status.usable
    assert "24 GiB of RAM is too little" in status.reason and "diffusers-tiny" in status.reason


async def test_loads_the_folder_and_generates(tiny_checkpoint: Path):
    params = GenerationParams(prompt="a red fox", width=256, height=256, seed=7, num_inference_steps=4)
    outcome = await generate_one("diffusers", params)
    assert outcome.ok, outcome.error
    image = np.asarray(outcome.result.images[0])
    assert image.shape == (256, 256, 3) and image.std() > 1
    assert str(tiny_checkpoint) in outcome.prepared.url


async def test_a_missing_checkpoint_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ZIMAGE_MODEL_ID", str(tmp_path / "nothing-here"))
    monkeypatch.setattr(
        get_provider("diffusers"), "_slot", diffusers_local._PipelineSlot(diffusers_local._load_checkpoint)
    )
    monkeypatch.setattr(diffusers_local, "_total_ram_gib", lambda: 512.0)
    outcome = await generate_one("diffusers", GenerationParams(prompt="fox", width=256, height=256))
    assert not outcome.ok
    assert outcome.error.startswith("diffusers: could not load the checkpoint")
    assert "ZIMAGE_MODEL_ID" in outcome.error
