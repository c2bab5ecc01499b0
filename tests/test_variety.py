"""Seed variety on the tiny model: one seed makes one image, variety 0 is the usual image exactly,
it is written to the PNG and read back, a sweep can vary it, and hosted providers refuse it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from zimage_ui.errors import InvalidParams
from zimage_ui.infotext import read_png_settings
from zimage_ui.metadata import read_text_chunks
from zimage_ui.params import GenerationParams
from zimage_ui.providers import get_provider
from zimage_ui.providers.local.generation import with_variety
from zimage_ui.runner import generate_one
from zimage_ui.sweep import SweepSpec, parse_axis, plan

ROOT = Path(__file__).resolve().parent.parent


def params(**values: object) -> GenerationParams:
    base = {"prompt": "a red fox", "seed": 7, "width": 256, "height": 256, "num_inference_steps": 2}
    return GenerationParams(**{**base, **values})  # type: ignore[arg-type]


async def pixels_and_png(p: GenerationParams) -> tuple[np.ndarray, bytes]:
    outcome = await generate_one("diffusers-tiny", p)
    assert outcome.ok and outcome.result is not None, outcome.error
    return np.asarray(outcome.result.images[0]), outcome.pngs[0]


async def test_one_seed_one_image_and_zero_is_todays_image():
    varied, png = await pixels_and_png(params(variety=0.5))
    again, _ = await pixels_and_png(params(variety=0.5))
    zero, plain_png = await pixels_and_png(params(variety=0.0))
    today, _ = await pixels_and_png(params())  # no variety given: the image as it always was
    assert np.array_equal(varied, again)
    assert not np.array_equal(varied, zero)
    assert np.array_equal(zero, today)
    text = read_text_chunks(png)["parameters"]
    assert "Variety: 0.5" in text and "Variety" not in read_text_chunks(plain_png)["parameters"]
    back = read_png_settings(png)
    assert back.params["variety"] == 0.5  # PNG info reads it back


def test_the_noise_follows_the_seed_and_scales_with_variety():
    embedding = [torch.randn(12, 32, generator=torch.Generator().manual_seed(1))]
    assert with_variety(embedding, 0.0, 7) is embedding  # untouched
    one, same, other = (with_variety(embedding, 0.5, seed)[0] for seed in (7, 7, 8))
    assert torch.equal(one, same) and not torch.equal(one, other)
    small = with_variety(embedding, 0.1, 7)[0] - embedding[0]
    large = with_variety(embedding, 0.8, 7)[0] - embedding[0]
    assert large.std() == pytest.approx(8 * small.std(), rel=1e-4)


@pytest.mark.parametrize("provider", ["runpod", "evolink", "scenario"])
def test_hosted_providers_say_they_take_no_variety(provider: str):
    with pytest.raises(InvalidParams, match=f"{provider} takes no seed variety"):
        get_provider(provider).prepare(params(variety=0.3))
    get_provider(provider).prepare(params(variety=0.0))  # 0 is what they always draw


def test_a_sweep_varies_variety():
    axis = parse_axis("variety", "0, 0.25, 0.5")
    spec = SweepSpec(params=params(), provider="diffusers-tiny", x=axis, y=None)
    [row] = plan(spec)
    assert [cell.params.variety for cell in row] == [0.0, 0.25, 0.5]
    with pytest.raises(InvalidParams, match=r"variety 2\.0 is outside 0\.\.1"):
        plan(SweepSpec(params=params(), provider="diffusers-tiny", x=parse_axis("variety", "2"), y=None))


def test_the_cli_takes_variety(tmp_path: Path):
    run = subprocess.run(
        [
            sys.executable, "-m", "zimage_ui", "generate", "--provider", "diffusers-tiny",
            "--prompt", "a red fox", "--seed", "7", "--width", "256", "--height", "256", "--steps", "2",
            "--variety", "0.5", "--out", str(tmp_path), "--quiet",
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    [png] = tmp_path.glob("*.png")
    assert "Variety: 0.5" in read_text_chunks(png.read_bytes())["parameters"]
    assert Image.open(png).size == (256, 256)
