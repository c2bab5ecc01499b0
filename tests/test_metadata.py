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


def test_a_providers_png_gets_provenance_without_re_encoding():
    import io

    from PIL import Image, PngImagePlugin

    from zimage_ui.metadata import png_bytes, read_provenance
    from zimage_ui.params import GenerationParams
    from zimage_ui.providers.base import SOURCE_BYTES, SentValues
    from zimage_ui.providers.http import decode_image

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
    from zimage_ui.providers.http import decode_image

    for fmt, spliced in (("PNG", True), ("JPEG", False)):
        buffer = io.BytesIO()
        Image.new("RGB", (16, 16), (10, 20, 30)).save(buffer, format=fmt)
        image = decode_image("p", buffer.getvalue())
        assert (spliceable_png(image) is not None) is spliced
