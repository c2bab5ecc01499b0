"""Reading our own PNG brings back its LoRAs (URLs, hub ids) with scales and its strength as settings;
a local file comes back by name with a note; real A1111 readers see the same LoRAs and strength."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image
from sd_parsers import ParserManager
from sd_parsers.data import Generators
from sd_prompt_reader.image_data_reader import ImageDataReader

from tests.test_lora_downloads import Hub, _listing, hub  # noqa: F401  (the loopback hub fixture)
from zimage_ui.infotext import read_png_settings
from zimage_ui.metadata import png_bytes
from zimage_ui.params import parse_params
from zimage_ui.providers.base import SentValues
from zimage_ui.runner import generate_one

URL = "https://loras.example.test/files/ink.safetensors"


def _png(**inputs: object) -> bytes:
    params = parse_params(prompt="a red fox", width=256, height=256, seed=7, inputs=inputs)
    loras = tuple((Path(lora.ref).stem, lora.scale, "abcdef012345") for lora in params.loras)
    sent = SentValues(256, 256, 8, 7, 3.0, False, strength=params.strength, loras=loras)
    return png_bytes(Image.new("RGB", (256, 256)), params, sent, "diffusers-tiny")


def test_url_and_hub_id_loras_come_back_with_their_scales_and_the_strength():
    read = read_png_settings(
        _png(image="https://images.example.test/in.png", strength=0.45, loras=[
            {"ref": URL, "scale": -0.5}, {"ref": "owner/pack/b.safetensors", "scale": 0.7},
        ])
    )  # fmt: skip
    assert read.source == "zimage"
    inputs = read.params["inputs"]
    assert inputs["loras"] == [{"ref": URL, "scale": -0.5}, {"ref": "owner/pack/b.safetensors", "scale": 0.7}]
    assert (inputs["image"], inputs["strength"]) == ("https://images.example.test/in.png", 0.45)
    assert "LoRA owner/pack/b.safetensors (0.7)" in read.message and "strength 0.45" in read.message
    assert parse_params(**read.params).inputs is not None  # usable as settings as they are


def test_a_local_lora_comes_back_by_name_with_a_note_and_a_local_image_not_at_all():
    read = read_png_settings(
        _png(image="/tmp/gradio/abc/in.png", mask="/tmp/gradio/abc/m.png", strength=0.6,
             loras=[{"ref": "/home/me/loras/tiny.safetensors", "scale": 0.8}])
    )  # fmt: skip
    inputs = read.params["inputs"]
    assert inputs["loras"] == [{"ref": "tiny.safetensors", "scale": 0.8}]
    assert (inputs["image"], inputs["mask"], inputs["strength"]) == (None, None, 0.6)
    assert (
        "The LoRA 'tiny.safetensors' was a local file: give it again if it isn't found here." in read.message
    )
    assert "Give the input image again: it was a local file ('in.png')." in read.message
    assert "/home/me" not in str(read.params) and "/tmp/gradio" not in str(read.params)


def test_a_record_without_inputs_reads_as_before():
    read = read_png_settings(_png())
    assert "inputs" not in read.params and "LoRA" not in read.message


async def test_a_hub_lora_run_reads_back_here_and_in_real_a1111_readers(hub: Hub, tmp_path: Path):  # noqa: F811
    from tests.test_tiny_img2img import _tiny_lora

    _tiny_lora(tmp_path / "tiny.safetensors")
    hub.files["/api/models/me/tiny"] = _listing("tiny.safetensors")
    hub.files["/me/tiny/resolve/main/tiny.safetensors"] = (tmp_path / "tiny.safetensors").read_bytes()
    ramp = (np.indices((256, 256)).sum(0) % 256).astype(np.uint8)
    Image.fromarray(np.stack([ramp] * 3, -1)).save(tmp_path / "in.png")
    inputs = {"image": str(tmp_path / "in.png"), "strength": 0.5, "loras": [{"ref": "me/tiny", "scale": 0.5}]}
    params = parse_params(prompt="a red fox", width=256, height=256, seed=7, inputs=inputs)
    outcome = await generate_one("diffusers-tiny", params)
    assert outcome.ok, outcome.error
    png = outcome.pngs[0]

    read = read_png_settings(png)
    assert read.params["inputs"]["loras"] == [{"ref": "me/tiny", "scale": 0.5}]
    assert read.params["inputs"]["strength"] == 0.5 and read.params["inputs"]["image"] is None

    info = ParserManager().parse(io.BytesIO(png))
    assert info is not None and info.generator is Generators.AUTOMATIC1111
    assert [p.value for p in info.prompts] == ["a red fox <lora:tiny:0.5>"]
    assert info.metadata["Denoising strength"] == "0.5"
    reader = ImageDataReader(io.BytesIO(png))
    assert reader.positive == "a red fox <lora:tiny:0.5>" and reader.parameter["seed"] == "7"
