"""Compare sides and sweep axes over the image inputs: `strength=` and `lora_scale=`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import ramp_rgb
from tests.test_tiny_img2img import _tiny_lora
from zimage_ui.compare import Side, params_for_side, params_for_sides, run_comparison
from zimage_ui.errors import InvalidParams
from zimage_ui.params import GenerationParams, parse_params
from zimage_ui.sweep import SweepSpec, parse_axis, plan, run_sweep

SIDE = 256


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("override-inputs")
    Image.fromarray(ramp_rgb(SIDE)).save(folder / "in.png")
    _tiny_lora(folder / "tiny.safetensors")
    return {path.stem: path for path in folder.iterdir()}


def _params(**inputs: object) -> GenerationParams:
    extra = {"inputs": inputs} if inputs else {}
    return parse_params(prompt="a red fox", width=SIDE, height=SIDE, seed=7, **extra)


def test_a_side_reads_strength_and_lora_scale_and_writes_them_back():
    side = Side.parse("diffusers-tiny:strength=0.4,lora_scale=-0.8")
    assert (side.strength, side.lora_scale) == (0.4, -0.8)
    assert side.title() == "diffusers-tiny (strength 0.4, lora_scale -0.8)"
    assert Side.parse(side.spec()) == side


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ("diffusers-tiny:strength=1.5", "strength", "outside 0..1"),
        ("diffusers-tiny:strength=lots", "strength", "is not a number, e.g. strength=0.4"),
        ("diffusers-tiny:lora_scale=9", "lora_scale", "outside -4..4"),
    ],
)
def test_bad_input_overrides_are_named(text: str, key: str, words: str):
    with pytest.raises(InvalidParams) as caught:
        Side.parse(text)
    assert words in caught.value.fields[key]


def test_strength_sets_the_image_strength_and_lora_scale_every_loras_scale():
    base = _params(image="in.png", strength=0.6, loras=[{"ref": "a.safetensors"}, {"ref": "b.safetensors"}])
    params = params_for_side(base, Side.parse("diffusers-tiny:strength=0.3,lora_scale=0.5"))
    assert params.strength == 0.3
    assert [lora.scale for lora in params.loras] == [0.5, 0.5]
    assert base.strength == 0.6 and [lora.scale for lora in base.loras] == [1.0, 1.0]


def test_a_run_refuses_a_strength_without_an_image_and_a_lora_scale_without_a_lora():
    sides = [Side.parse("diffusers-tiny:strength=0.3"), Side.parse("diffusers-tiny:lora_scale=2")]
    with pytest.raises(InvalidParams) as caught:
        params_for_sides(sides, _params())
    [(key, problem)] = caught.value.fields.items()
    assert key == "diffusers-tiny (strength 0.3): strength" and "needs an input image" in problem
    with pytest.raises(InvalidParams, match="needs a LoRA"):
        params_for_sides(sides[1:] * 2, _params())
    # a preset's sides are checked leniently: their image comes with the run
    assert params_for_side(_params(), sides[0]) == _params()


async def test_two_sides_differing_only_in_strength_make_different_images(files):
    base = _params(image=str(files["in"]))
    sides = [Side.parse("diffusers-tiny:strength=0.3"), Side.parse("diffusers-tiny:strength=0.9")]
    low, high = await run_comparison(sides, base)
    assert low.ok and high.ok, (low.error, high.error)
    assert low.seed == high.seed == 7
    assert (low.prepared and low.prepared.sent.strength, high.prepared and high.prepared.sent.strength) == (
        0.3,
        0.9,
    )
    a, b = (np.asarray(o.result.images[0], np.float64) for o in (low, high) if o.result)
    assert np.abs(a - b).mean() > 1.0


def test_the_sweep_parses_strength_and_lora_scale_axes():
    assert parse_axis("strength", "0.2-0.8 [4]").values == [0.2, 0.4, 0.6, 0.8]
    assert parse_axis("lora_scale", "-1, 0, 1.5").values == [-1.0, 0.0, 1.5]
    spec = SweepSpec(
        params=_params(loras=[{"ref": "a.safetensors"}]),
        provider="diffusers-tiny",
        x=parse_axis("lora_scale", "0, 1"),
    )
    [[off, on]] = plan(spec)
    assert [lora.scale for lora in off.params.loras] == [0.0]
    assert [lora.scale for lora in on.params.loras] == [1.0]
    without_image = SweepSpec(params=_params(), provider="diffusers-tiny", x=parse_axis("strength", "0.5"))
    with pytest.raises(InvalidParams) as caught:
        plan(without_image)
    assert "Strength: 0.5: strength" in caught.value.fields


async def test_a_lora_scale_sweeps_cells_differ(files):
    spec = SweepSpec(
        params=_params(loras=[{"ref": str(files["tiny"]), "scale": 1.0}]),
        provider="diffusers-tiny",
        x=parse_axis("lora_scale", "0, 1.5"),
    )
    result = await run_sweep(spec)
    [[off, on]] = result.outcomes
    assert off.ok and on.ok, (off.error, on.error)
    a, b = (np.asarray(o.result.images[0], np.float64) for o in (off, on) if o.result)
    assert np.abs(a - b).mean() > 1.0
