"""The real app (`python app.py`) as on a ZeroGPU Space, through its API with gradio_client: the
stand-in `spaces` on PYTHONPATH, SPACES_ZERO_GPU=true, the tiny checkpoint on the CPU."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client
from PIL import Image

from tests.serving import api_url, app_log, running_app

STAND_INS = Path(__file__).parent / "stand_ins"
FOX = {"prompt": "a red fox", "width": 256, "height": 256, "seed": 7, "steps": 4}


@pytest.fixture(scope="module")
def zero_gpu_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from zimage_ui.providers.local.tiny_model import build_tiny_pipeline

    folder = tmp_path_factory.mktemp("checkpoint") / "z-image-tiny"
    build_tiny_pipeline().save_pretrained(folder)
    path = os.pathsep.join(p for p in (str(STAND_INS), os.environ.get("PYTHONPATH", "")) if p)
    env = {
        "PYTHONPATH": path,
        "SPACES_ZERO_GPU": "true",
        "ZIMAGE_DEVICE": "cpu",
        "ZIMAGE_MODEL_ID": str(folder),
        "ZIMAGE_OUTPUT_DIR": "",
    }
    with running_app(env, timeout_s=120) as url:
        yield url


def _wait_for(url: str, text: str, after: int = 0, timeout_s: float = 30) -> int:
    """Where `text` first appears in the app's log past `after`; fails after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while (found := app_log(url).find(text, after)) < 0:
        assert time.monotonic() < deadline, f"{text!r} not in the app's log:\n{app_log(url)[-3000:]}"
        time.sleep(0.1)
    return found


def test_a_generation_runs_in_the_zerogpu_worker(zero_gpu_app: str):
    client = Client(api_url(zero_gpu_app), verbose=False)
    assert "the pipeline runs on cpu" in app_log(zero_gpu_app)  # loaded at start-up, before launch
    gallery, seed_used, status, sent = client.predict(provider="diffusers", **FOX, api_name="/generate")
    assert "Done" in status and seed_used == "7"
    assert sent["request"].endswith("on ZeroGPU CPU, float32")
    _wait_for(zero_gpu_app, "spaces stand-in: _gpu_generation duration=15s")
    _wait_for(zero_gpu_app, "spaces stand-in: _gpu_generation values=7 stopped=False")
    tiny, *_ = client.predict(provider="diffusers-tiny", **FOX, api_name="/generate")
    pixels = [np.asarray(Image.open(g[0]["image"]).convert("RGB")) for g in (gallery, tiny)]
    assert np.array_equal(pixels[0], pixels[1])


def test_progress_reaches_the_client_and_its_cancel_ends_the_worker(zero_gpu_app: str):
    client = Client(api_url(zero_gpu_app), verbose=False)
    start = len(app_log(zero_gpu_app))
    job = client.submit(
        prompt="a red fox",
        provider="diffusers",
        width=1024,
        height=1024,
        seed=7,
        steps=50,
        api_name="/generate",
    )
    deadline, steps = time.monotonic() + 60, []
    while not steps:
        assert time.monotonic() < deadline, "no step progress reached the client"
        units = job.status().progress_data or []
        steps = [u for u in units if u.unit == "steps" and (u.index or 0) >= 1]
        time.sleep(0.05)
    assert steps[0].length == 50 and "step" in (steps[0].desc or "")
    job.cancel()
    ended = _wait_for(zero_gpu_app, "spaces stand-in: _gpu_generation values=", after=start)
    line = app_log(zero_gpu_app)[ended:].splitlines()[0]
    assert line.endswith("stopped=True"), line
    assert int(line.split("values=")[1].split()[0]) < 10  # 50 steps and a decode were asked for
    # The device was handed on when the worker had ended: the next run goes straight through.
    started = time.monotonic()
    _, _, status, _ = client.predict(provider="diffusers", **FOX, api_name="/generate")
    assert "Done" in status and time.monotonic() - started < 30
