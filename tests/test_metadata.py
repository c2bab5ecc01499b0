import json

from PIL import Image

from zimage_ui.metadata import a1111_quote, infotext, png_bytes, read_provenance, read_text_chunks
from zimage_ui.params import GenerationParams
from zimage_ui.providers.base import SentValues


def _sent(params: GenerationParams, steps: int | None = 8) -> SentValues:
    return SentValues(
        width=params.width, height=params.height, steps=steps, seed=params.seed or 0, shift=params.shift
    )


def test_infotext_matches_a1111_layout():
    params = GenerationParams(prompt="a red fox", seed=42)
    text = infotext(params, _sent(params), "diffusers-tiny")
    assert text == (
        "a red fox\n"
        "Steps: 8, Seed: 42, Size: 1024x1024, Shift: 3.0, Model: Z-Image-Turbo, Provider: diffusers-tiny"
    )


def test_infotext_negative_prompt_and_guidance():
    params = GenerationParams(prompt="fox", negative_prompt="blurry, dark", guidance_scale=4.0, seed=1)
    lines = infotext(params, _sent(params), "diffusers").splitlines()
    assert lines[1] == "Negative prompt: blurry, dark"
    assert "CFG scale: 4.0" in lines[2]


def test_values_quoted_as_a1111_quotes_them():
    assert a1111_quote("plain") == "plain"
    assert a1111_quote("a, b") == '"a, b"'
    assert a1111_quote("k: v") == '"k: v"'
    assert a1111_quote('say "hi", ok') == '"say \\"hi\\", ok"'


def test_provider_default_steps_in_infotext():
    params = GenerationParams(prompt="fox", seed=3)
    assert "Steps: provider default" in infotext(params, _sent(params, steps=None), "runpod")


def test_png_round_trip_keeps_both_chunks():
    params = GenerationParams(prompt='ünïcode, "quotes"\nand lines: yes', seed=9, width=256, height=256)
    data = png_bytes(Image.new("RGB", (8, 8), "red"), params, _sent(params), "diffusers-tiny")
    chunks = read_text_chunks(data)
    assert chunks["parameters"].startswith(params.prompt)
    record = read_provenance(data)
    assert record is not None
    assert GenerationParams.model_validate(record["params"]) == params
    assert record["provider"] == "diffusers-tiny"
    assert json.loads(chunks["zimage"])["sent"]["seed"] == 9
