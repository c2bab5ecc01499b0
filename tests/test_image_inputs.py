"""Image inputs and LoRAs, without the pipeline: params, reading the files, provenance, refusals."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from zimage_ui.cli import main
from zimage_ui.errors import InvalidParams, PresetError
from zimage_ui.image_inputs import MAX_INPUT_PIXELS, fetch_remote, load_inputs
from zimage_ui.infotext import read_png_settings
from zimage_ui.metadata import infotext, png_with_chunks, provenance
from zimage_ui.net.http import HttpEngine
from zimage_ui.params import GenerationParams, ImageInputs, parse_params
from zimage_ui.presets import preset_from_params, validate_preset
from zimage_ui.providers import get_provider
from zimage_ui.providers.base import SentValues
from zimage_ui.providers.hosted import HOSTED_PROVIDERS


def _png(path: Path, size: tuple[int, int], value: int = 128, mode: str = "RGB") -> Path:
    Image.new(mode, size, value if mode == "L" else (value, 50, 200)).save(path)
    return path


def _params(**inputs: object) -> GenerationParams:
    return parse_params(prompt="a fox", width=256, height=256, seed=7, inputs=inputs)


# -- params ----------------------------------------------------------------------------------


def test_params_without_inputs_serialise_as_before():
    params = parse_params(prompt="a fox", seed=7)
    assert "inputs" not in params.model_dump()
    assert "inputs" not in params.model_dump_json()
    assert parse_params(prompt="a fox", seed=7, inputs={}).inputs is None  # empty inputs: none
    assert params.strength is None and params.steps_run == params.num_inference_steps


def test_strength_defaults_to_0_6_with_an_image_and_cuts_the_steps_as_diffusers_does():
    params = _params(image="in.png")
    assert params.strength == 0.6
    assert params.steps_run == 5  # diffusers: 8 - int(8 - 8 * 0.6)
    assert _params(image="in.png", strength=0.3).steps_run == 3
    assert _params(image="in.png", strength=1.0).steps_run == 8
    assert _params(strength=0.3).strength is None  # no image: text-to-image, strength unused


@pytest.mark.parametrize(
    ("inputs", "field", "words"),
    [
        ({"image": "in.png", "strength": 1.5}, "inputs.strength", "outside 0..1"),
        ({"image": "in.png", "strength": 0.0}, "input", "runs no step"),
        ({"mask": "mask.png"}, "inputs", "a mask needs an input image"),
        ({"image": "http://example.com/a.png"}, "inputs.image", "https URL"),
        # https LoRA URLs pass here (inference.sh fetches them); the local model refuses them at the run
        ({"loras": [{"ref": "http://example.com/x.safetensors"}]}, "inputs.loras.0.ref", "are not read"),
        ({"loras": [{"ref": "org/some lora"}]}, "inputs.loras.0.ref", "neither a .safetensors file"),
        ({"image": "a.png", "control_image": "c.png"}, "inputs", "can't be used together"),
        ({"control_image": "c.png", "control_scale": 3}, "inputs.control_scale", "outside 0..2"),
        ({"control_image": "c.png", "control_kind": "normal"}, "inputs.control_kind", "canny"),
        ({"loras": [{"ref": "x.safetensors", "scale": 9}]}, "inputs.loras.0.scale", "outside -4..4"),
        ({"image": "in.png", "colour": 1}, "inputs.colour", "unknown field"),
    ],
)
def test_bad_inputs_are_refused_with_a_clear_message(inputs, field, words):
    with pytest.raises(InvalidParams) as caught:
        _params(**inputs)
    assert field in caught.value.fields
    assert words in caught.value.fields[field]


def test_presets_leave_local_files_out_and_refuse_them_on_import():
    left_out: list[str] = []
    preset = preset_from_params(_params(image="in.png", strength=0.4), "diffusers-tiny", left_out=left_out)
    assert preset.inputs is not None and preset.inputs.image is None and preset.inputs.strength == 0.4
    assert left_out == [
        "input image 'in.png' left out of the preset: it is a local file; presets carry images as https URLs"
    ]
    with pytest.raises(PresetError, match=r"input image 'in\.png' is a local path: presets carry"):
        validate_preset({"prompt": "p", "provider": "diffusers-tiny", "inputs": {"image": "in.png"}})


# -- reading the files -----------------------------------------------------------------------


def test_inputs_are_read_resized_and_the_mask_checked(tmp_path: Path):
    image = _png(tmp_path / "in.png", (320, 320))
    mask = _png(tmp_path / "mask.png", (320, 320), 255, "L")
    loaded = load_inputs(_params(image=str(image), mask=str(mask)))
    assert loaded.image is not None and loaded.image.size == (256, 256) and loaded.image.mode == "RGB"
    assert loaded.mask is not None and loaded.mask.size == (256, 256) and loaded.mask.mode == "L"
    assert loaded.notes == ("input image 320x320 resized to 256x256",)


def test_a_mask_of_another_size_is_refused(tmp_path: Path):
    image = _png(tmp_path / "in.png", (256, 256))
    mask = _png(tmp_path / "mask.png", (128, 256), 255, "L")
    with pytest.raises(InvalidParams) as caught:
        load_inputs(_params(image=str(image), mask=str(mask)))
    assert caught.value.fields["mask"] == (
        "128x256 does not match the input image's 256x256: give a mask of the image's size"
    )


def test_inputs_are_size_checked_before_decoding(tmp_path: Path):
    side = int(MAX_INPUT_PIXELS**0.5) + 16
    huge = tmp_path / "huge.png"
    Image.new("1", (side, side)).save(huge)  # a few KB on disk, too many pixels to decode
    with pytest.raises(InvalidParams, match="pixels: refused"):
        load_inputs(_params(image=str(huge)))
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(InvalidParams, match="not a readable image"):
        load_inputs(_params(image=str(tmp_path / "text.png")))
    with pytest.raises(InvalidParams, match="can't read"):
        load_inputs(_params(image=str(tmp_path / "missing.png")))
    with pytest.raises(InvalidParams, match="can't read"):
        load_inputs(_params(loras=[{"ref": str(tmp_path / "missing.safetensors")}]))


async def test_an_https_image_is_downloaded_through_the_http_engine(tmp_path: Path):
    buffer = io.BytesIO()
    Image.new("RGB", (256, 256), (1, 2, 3)).save(buffer, format="PNG")
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, content=buffer.getvalue(), headers={"content-type": "image/png"})

    params = _params(image="https://images.example/in.png")
    engine = HttpEngine(transport=httpx.MockTransport(answer))
    fetched = await fetch_remote(params.inputs, engine)
    loaded = load_inputs(params, fetched)
    assert seen == ["https://images.example/in.png"]
    assert loaded.image is not None and loaded.image.getpixel((0, 0)) == (1, 2, 3)


# -- provenance ------------------------------------------------------------------------------


def test_provenance_records_strength_and_loras_in_a1111_words_and_reads_them_back():
    params = _params(image="in.png", loras=[{"ref": "styles/tiny.safetensors", "scale": 0.8}])
    sent = SentValues(
        width=256,
        height=256,
        steps=8,
        seed=7,
        shift=3.0,
        strength=0.6,
        loras=(("tiny", 0.8, "abcdef123456"),),
    )
    text = infotext(params, sent, "diffusers-tiny")
    assert text.startswith("a fox <lora:tiny:0.8>\n")
    assert "Denoising strength: 0.6" in text
    assert 'Lora hashes: "tiny: abcdef123456"' in text
    record = provenance(params, sent, "diffusers-tiny")
    assert record["sent"]["strength"] == 0.6
    assert record["sent"]["loras"] == [{"name": "tiny", "scale": 0.8, "hash": "abcdef123456"}]
    read = read_png_settings(png_with_chunks(Image.new("RGB", (8, 8)), {"parameters": text}))
    assert read.params["prompt"] == "a fox"
    assert read.params["inputs"] == {"strength": 0.6, "loras": [{"ref": "tiny.safetensors", "scale": 0.8}]}
    assert "Lora hashes" not in read.ignored and "Denoising strength" not in read.ignored
    assert ImageInputs.model_validate(read.params["inputs"]).strength == 0.6


def test_text_to_image_provenance_is_unchanged():
    params = parse_params(prompt="a fox", seed=7)
    sent = SentValues(width=1024, height=1024, steps=8, seed=7, shift=3.0)
    assert "strength" not in provenance(params, sent, "diffusers-tiny")["sent"]
    assert "Denoising" not in infotext(params, sent, "diffusers-tiny")


# -- hosted providers and the CLI ------------------------------------------------------------


TEXT_ONLY = ("aimlapi", "evolink")  # Scenario, RunPod, inference.sh: test_hosted_image_inputs.py


@pytest.mark.parametrize(
    "provider", [p for p in HOSTED_PROVIDERS if p.id in TEXT_ONLY], ids=lambda provider: provider.id
)
def test_a_hosted_provider_refuses_image_inputs_in_prepare(provider):
    with pytest.raises(InvalidParams) as caught:
        provider.prepare(_params(image="in.png"))
    assert str(caught.value) == f"image: {provider.id} takes no input image: text-to-image only"
    with pytest.raises(InvalidParams) as caught:
        provider.prepare(_params(loras=[{"ref": "x.safetensors"}]))
    assert str(caught.value) == (
        f"loras: {provider.id} takes no LoRA (text-to-image only): use the local model for LoRAs"
    )
    assert not provider.capabilities.image_input and not provider.capabilities.lora
    assert get_provider("diffusers-tiny").capabilities.image_input


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--image", "missing.png"], "error: image: can't read 'missing.png'"),
        (["--mask", "mask.png"], "a mask needs an input image"),
        (["--image", "in.png", "--strength", "2"], "strength 2.0 is outside 0..1"),
        (["--image", "in.png", "--mask", "small.png"], "error: mask: 64x64 does not match"),
        (["--lora", "x.bin:0.5"], "is not a .safetensors file"),
        (["--image", "in.png", "--provider", "aimlapi"], "error: image: aimlapi takes no input image"),
    ],
)
def test_cli_bad_image_inputs_exit_2_with_one_line(tmp_path: Path, monkeypatch, capsys, flags, words):
    monkeypatch.chdir(tmp_path)
    _png(tmp_path / "in.png", (256, 256))
    _png(tmp_path / "small.png", (64, 64), 255, "L")
    argv = ["generate", "--provider", "diffusers-tiny", "--prompt", "fox", "--out", "out", *flags]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own refusal (--lora's type): also exit 2, one line
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert words in err
    assert not (tmp_path / "out").exists()


def test_cli_lora_scale_after_the_last_colon():
    from zimage_ui.cli import parse_lora

    assert parse_lora("C:/loras/a.safetensors:0.8").model_dump() == {
        "ref": "C:/loras/a.safetensors",
        "scale": 0.8,
    }
    assert parse_lora("a.safetensors").scale == 1.0
    assert np.isclose(parse_lora("a.safetensors:-0.5").scale, -0.5)
