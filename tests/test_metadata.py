import io
import json
import struct

import pytest
from PIL import Image

from zimage_ui.infotext import read_png_settings
from zimage_ui.metadata import (
    PNG_SIGNATURE,
    a1111_quote,
    infotext,
    png_bytes,
    png_with_chunks,
    read_provenance,
    read_text_chunks,
    splice_text_chunks,
)
from zimage_ui.params import GenerationParams
from zimage_ui.providers.base import SentValues


def _sent(params: GenerationParams, steps: int | None = 8, negative: bool = False) -> SentValues:
    return SentValues(
        width=params.width,
        height=params.height,
        steps=steps,
        seed=params.seed or 0,
        shift=params.shift,
        guidance=params.guidance_scale,
        negative_sent=negative,
    )


def text_chunk_kinds(png: bytes) -> dict[str, str]:
    """Each text chunk's keyword -> its chunk type (tEXt, zTXt, iTXt), walked from the bytes."""
    kinds, position = {}, len(PNG_SIGNATURE)
    while position + 8 <= len(png):
        length, kind = struct.unpack(">I4s", png[position : position + 8])
        if kind in (b"tEXt", b"zTXt", b"iTXt"):
            body = png[position + 8 : position + 8 + length]
            kinds[body.partition(b"\0")[0].decode("latin-1")] = kind.decode()
        position += 12 + length
    return kinds


def test_infotext_matches_a1111_layout():
    params = GenerationParams(prompt="a red fox", seed=42)
    text = infotext(params, _sent(params), "diffusers-tiny")
    assert text == (
        "a red fox\n"
        "Steps: 8, Sampler: Euler, Schedule type: Simple, Seed: 42, Size: 1024x1024, Shift: 3.0, "
        "Model: Z-Image-Turbo, Provider: diffusers-tiny"
    )


def test_infotext_negative_prompt_and_guidance():
    params = GenerationParams(prompt="fox", negative_prompt="blurry, dark", guidance_scale=4.0, seed=1)
    lines = infotext(params, _sent(params, negative=True), "diffusers").splitlines()
    assert lines[1] == "Negative prompt: blurry, dark"
    assert "CFG scale: 5.0" in lines[2]  # A1111's convention: guidance 4 + 1 (metadata.CFG_KEY)


def test_a_negative_prompt_the_model_never_got_is_not_written():
    params = GenerationParams(prompt="fox", negative_prompt="blurry, dark", seed=1)
    text = infotext(params, _sent(params, negative=False), "evolink")
    assert "Negative prompt" not in text and text.splitlines()[0] == "fox"
    data = png_bytes(Image.new("RGB", (8, 8)), params, _sent(params), "evolink")
    record = read_provenance(data)
    assert record["sent"]["negative_prompt"] is False
    assert record["params"]["negative_prompt"] == "blurry, dark"  # what was asked stays recorded


def test_values_quoted_as_a1111_quotes_them():
    assert a1111_quote("plain") == "plain"
    assert a1111_quote("a, b") == '"a, b"'
    assert a1111_quote("k: v") == '"k: v"'
    assert a1111_quote('say "hi", ok') == '"say \\"hi\\", ok"'


def test_provider_default_steps_are_a_number_for_readers_and_flagged_in_the_record():
    params = GenerationParams(prompt="fox", seed=3, num_inference_steps=4)
    assert "\nSteps: 8, Sampler: Euler," in infotext(params, _sent(params, steps=None), "runpod")
    data = png_bytes(Image.new("RGB", (8, 8)), params, _sent(params, steps=None), "runpod")
    sent = read_provenance(data)["sent"]
    assert (sent["steps"], sent["steps_default"]) == (None, 8)
    read = read_png_settings(data)
    assert read.source == "zimage" and read.params["num_inference_steps"] == 4  # what was asked
    assert "steps chosen by the provider (none sent; the parameters text gives 8" in read.message
    sent_steps = png_bytes(Image.new("RGB", (8, 8)), params, _sent(params, steps=4), "scenario")
    assert "steps_default" not in read_provenance(sent_steps)["sent"]
    assert "4 steps" in read_png_settings(sent_steps).message


CASES = [
    ("a red fox, at: dawn", "tEXt"),
    ("Ünïcödé façade ½ price", "tEXt"),
    ("a fox — at dawn", "iTXt"),
    ("一只红狐狸", "iTXt"),
    ("a fox 🦊", "iTXt"),
]


def _provider_png(size: tuple[int, int] = (16, 16)) -> Image.Image:
    from zimage_ui.net.images import decode_image

    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 20, 30)).save(buffer, format="PNG")
    return decode_image("p", buffer.getvalue())


@pytest.mark.parametrize(("prompt", "kind"), CASES)
@pytest.mark.parametrize("path", ["encoded", "spliced"])
def test_latin_1_text_is_tEXt_and_other_text_iTXt_as_a1111_writes_it(prompt: str, kind: str, path: str):
    params = GenerationParams(prompt=prompt, seed=5)
    image = Image.new("RGB", (16, 16)) if path == "encoded" else _provider_png()
    data = png_bytes(image, params, _sent(params), "diffusers-tiny")
    assert text_chunk_kinds(data) == {"parameters": kind, "zimage": kind}
    assert read_text_chunks(data)["parameters"].startswith(prompt + "\nSteps: 8,")
    with Image.open(io.BytesIO(data)) as reread:  # Pillow (so A1111, sd-parsers...) reads it the same
        assert reread.text["parameters"] == read_text_chunks(data)["parameters"]
    read = read_png_settings(data)
    assert read.source == "zimage" and read.params["prompt"] == prompt


def test_the_chunk_type_follows_pillows_add_text_for_any_text():
    for value, _ in CASES:
        from PIL import PngImagePlugin

        info = PngImagePlugin.PngInfo()
        info.add_text("k", value)
        buffer = io.BytesIO()
        Image.new("RGB", (4, 4)).save(buffer, format="PNG", pnginfo=info)
        pillow = text_chunk_kinds(buffer.getvalue())["k"]
        ours = text_chunk_kinds(png_with_chunks(Image.new("RGB", (4, 4)), {"k": value}))["k"]
        spliced = text_chunk_kinds(splice_text_chunks(buffer.getvalue(), {"k": value}))["k"]
        assert pillow == ours == spliced


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


def test_a_providers_png_gets_provenance_without_re_encoding():
    import io

    from PIL import Image, PngImagePlugin

    from zimage_ui.metadata import png_bytes, read_provenance
    from zimage_ui.net.images import SOURCE_BYTES, decode_image
    from zimage_ui.params import GenerationParams
    from zimage_ui.providers.base import SentValues

    original = Image.effect_noise((64, 48), 40).convert("RGB")
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "the provider's own text")
    buffer = io.BytesIO()
    original.save(buffer, format="PNG", pnginfo=info, compress_level=9)
    sent_png = buffer.getvalue()
    image = decode_image("p", sent_png)
    assert image.info[SOURCE_BYTES] == sent_png
    params = GenerationParams(prompt="a fox, at dawn", seed=3)
    out = png_bytes(image, params, SentValues(64, 48, None, 3), "p")
    # the pixel data is the provider's, byte for byte; only the text chunks changed
    assert sent_png[sent_png.index(b"IDAT") - 4 :] in out
    with Image.open(io.BytesIO(out)) as reread:
        reread.verify()
    with Image.open(io.BytesIO(out)) as reread:
        assert reread.convert("RGB").tobytes() == original.tobytes()
        assert reread.text["parameters"].startswith("a fox, at dawn\nSteps:")
    assert read_provenance(out)["params"]["prompt"] == "a fox, at dawn"
    assert b"the provider's own text" not in out


def test_png_info_reads_a_huge_image_without_decoding_it():
    import resource
    import struct
    import zlib

    from zimage_ui.infotext import read_png_settings
    from zimage_ui.metadata import PNG_SIGNATURE, splice_text_chunks

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    # 12000 x 12000 (144 MP, between 1x and 2x Pillow's bomb limit), pixel data cut short
    header = struct.pack(">IIBBBBB", 12_000, 12_000, 8, 2, 0, 0, 0)
    png = (
        PNG_SIGNATURE
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 9))
        + chunk(b"IEND", b"")
    )
    png = splice_text_chunks(png, {"parameters": "a kite\nSteps: 8, Seed: 5, Size: 12000x12000"})
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = read_png_settings(png)
    assert result.params["seed"] == 5 and result.params["prompt"] == "a kite"
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KiB: nothing decoded


def test_only_a_providers_png_is_spliced_a_jpeg_is_encoded():
    import io

    from PIL import Image

    from zimage_ui.metadata import spliceable_png
    from zimage_ui.net.images import decode_image

    for fmt, spliced in (("PNG", True), ("JPEG", False)):
        buffer = io.BytesIO()
        Image.new("RGB", (16, 16), (10, 20, 30)).save(buffer, format=fmt)
        image = decode_image("p", buffer.getvalue())
        assert (spliceable_png(image) is not None) is spliced


def test_the_record_keeps_file_names_never_server_paths() -> None:
    from zimage_ui.metadata import provenance
    from zimage_ui.params import GenerationParams
    from zimage_ui.providers.base import SentValues

    params = GenerationParams(
        prompt="a kite",
        seed=3,
        inputs={
            "image": "/tmp/gradio/0f3a/holiday photo.png",
            "mask": "/tmp/gradio/0f3a/mask.png",
            "strength": 0.4,
            "loras": [
                {"ref": "/home/owner/loras/ink.safetensors", "scale": 0.8},
                {"ref": "https://loras.example.test/pen.safetensors", "scale": 0.5},
                {"ref": "someone/watercolour", "scale": 1.0},
            ],
        },
    )
    record = provenance(params, SentValues(width=1024, height=1024, steps=8, seed=3), "diffusers-tiny")
    inputs = record["params"]["inputs"]
    assert (inputs["image"], inputs["mask"], inputs["strength"]) == ("holiday photo.png", "mask.png", 0.4)
    assert [lora["ref"] for lora in inputs["loras"]] == [
        "ink.safetensors",
        "https://loras.example.test/pen.safetensors",
        "someone/watercolour",
    ]
    assert "/tmp/gradio" not in str(record) and "/home/owner" not in str(record)


def test_images_are_written_with_zlibs_run_length_strategy_same_pixels_fewer_bytes():
    """Level 1 with Z_RLE (`metadata.PNG_STRATEGY`): the same pixels; fewer bytes than Pillow's
    level 1 for what a model draws (smooth colour, fine grain), about as many for flat shapes."""
    import numpy as np

    from benchmarks.png_level import flat, photo_like

    rng = np.random.default_rng(7)
    for image, most in ((photo_like(256, rng), 0.9), (flat(256, rng), 1.1)):
        ours = png_with_chunks(image, {"parameters": "a fox"})
        pillows = io.BytesIO()
        image.save(pillows, format="PNG", compress_level=1)
        assert len(ours) < most * len(pillows.getvalue())
        with Image.open(io.BytesIO(ours)) as back:
            assert back.tobytes() == image.tobytes()
            assert back.text["parameters"] == "a fox"
