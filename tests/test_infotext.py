import io
import json
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from tests.strategies import PROVIDER_IDS, generation_params, seeds, shifts, sides_px, steps
from zimage_ui.errors import InvalidParams
from zimage_ui.infotext import NEGATIVE_PREFIX, parse_infotext, read_png_settings
from zimage_ui.metadata import infotext, png_bytes
from zimage_ui.params import MAX_PROMPT_CHARS, GenerationParams
from zimage_ui.providers import get_provider
from zimage_ui.providers.base import SentValues

# Real infotext as written by AUTOMATIC1111's webui, Forge and Civitai's generator.
A1111_BASIC = (
    "masterpiece, 1girl\n"
    "Negative prompt: lowres, bad anatomy\n"
    "Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1234567890, Size: 512x768, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Version: v1.6.0"
)
A1111_LORA_HIRES = (
    "masterpiece, best quality, 1girl, solo, looking at viewer, <lora:add_detail:0.8>\n"
    "Negative prompt: (worst quality, low quality:1.4), easynegative, verybadimagenegative_v1.3\n"
    "Steps: 25, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 3098768537, Size: 512x768, "
    "Model hash: 7f96a1a9ca, Model: anything-v5-PrtRE, Denoising strength: 0.45, Clip skip: 2, "
    "Hires upscale: 2, Hires steps: 15, Hires upscaler: R-ESRGAN 4x+ Anime6B, "
    'Lora hashes: "add_detail: 7c6bad76eb54", '
    'TI hashes: "easynegative: c74b4e810b03, verybadimagenegative_v1.3: d70463f870", Version: v1.6.0'
)
A1111_MULTILINE = (
    "(masterpiece:1.2), portrait of a woman,\n"
    "style: art nouveau, by alphonse mucha, intricate: detailed\n"
    "BREAK golden hour, rim light\n"
    "Negative prompt: text, watermark,\n"
    "signature, jpeg artifacts\n"
    "Steps: 28, Sampler: Euler a, Schedule type: Automatic, CFG scale: 6.5, Seed: 42, Size: 768x1024, "
    "Model hash: 31e35c80fc, Model: sd_xl_base_1.0, Version: v1.9.4"
)
A1111_OLD = (  # the example in the webui's own parse_generation_parameters docstring
    "girl with an artist's beret, determined, blue eyes, desert scene, computer monitors, heavy makeup, "
    "by Alphonse Mucha and Charlie Bowater, ((eyeshadow)), (coquettish), detailed, intricate\n"
    "Negative prompt: ugly, fat, obese, chubby, (((deformed))), [blurry], bad anatomy, disfigured, "
    "poorly drawn face, mutation, mutated, (extra_limb), (ugly), (poorly drawn hands), messy drawing\n"
    "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 965400086, Size: 512x512, Model hash: 45dee52b"
)
FORGE_FLUX = (
    "a photo of a tabby cat on a windowsill, soft morning light\n"
    "Steps: 20, Sampler: Euler, Schedule type: Simple, CFG scale: 1, Distilled CFG Scale: 3.5, "
    "Seed: 2821435107, Size: 896x1152, Model hash: bea01d51bd, Model: flux1-dev-bnb-nf4-v2, "
    'Diffusion in Low Bits: "Automatic (fp16 LoRA)", Version: f2.0.1v1.10.1-previous-313-g8a042934'
)
CIVITAI = (
    "cinematic photo of a lighthouse at dusk, dramatic clouds, 35mm\n"
    "Negative prompt: blurry, lowres, cartoon\n"
    "Steps: 30, CFG scale: 5, Sampler: DPM++ 2M Karras, Seed: 2093612281, Size: 832x1216, Clip skip: 2, "
    "Created Date: 2024-05-01T12:05:33.7563573Z, Civitai resources: "
    '[{"type":"checkpoint","modelVersionId":290640,"modelName":"Pony Diffusion V6 XL",'
    '"modelVersionName":"V6 (start with this one)"}], Civitai metadata: {}'
)
A1111_1_10 = (  # webui 1.10: Schedule type, hires fix, a LoRA, a seed above 2147483647
    "score_9, score_8_up, 1girl, solo, red kimono, cherry blossoms, <lora:hanfu_v2:0.7>\n"
    "Negative prompt: worst quality, low quality, watermark\n"
    "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6, Seed: 4123654987, "
    "Size: 832x1216, Model hash: 67ab2fd8ec, Model: ponyDiffusionV6XL_v6StartWithThisOne, "
    "VAE hash: 235745af8d, VAE: sdxl_vae.safetensors, Denoising strength: 0.4, Clip skip: 2, "
    "Hires upscale: 1.5, Hires steps: 12, Hires upscaler: 4x-UltraSharp, "
    'Lora hashes: "hanfu_v2: 3a1f9c0e7b12", '
    "Emphasis: No norm, Version: v1.10.1"
)
FORGE_SDXL = (  # Forge 2.0.1 on the webui 1.10.1 base
    "a cozy reading nook, warm lamp light, rain on the window\n"
    "Negative prompt: people, text\n"
    "Steps: 30, Sampler: DPM++ 2M SDE, Schedule type: Karras, CFG scale: 5.5, Seed: 4294967294, "
    "Size: 1024x1024, Model hash: 31e35c80fc, Model: sd_xl_base_1.0, Version: f2.0.1v1.10.1"
)
CIVITAI_2024 = (  # Civitai's on-site generator: its resources as unquoted JSON
    "masterpiece, a lighthouse on a cliff at dusk, dramatic clouds\n"
    "Negative prompt: blurry, lowres\n"
    "Steps: 25, Sampler: Euler a, CFG scale: 7, Seed: 3765291004, Size: 832x1216, Clip skip: 2, "
    "Created Date: 2024-11-02T09:14:51.2207341Z, Civitai resources: "
    '[{"type":"checkpoint","modelVersionId":128078,"modelName":"SDXL","modelVersionName":"v1.0 VAE fix"},'
    '{"type":"lora","weight":0.8,"modelVersionId":135867,"modelName":"Detail Tweaker XL",'
    '"modelVersionName":"v1.0"}], Civitai metadata: {"remixOfId":31522745}'
)


def png_with(chunks: dict[str, str], size: tuple[int, int] = (8, 8)) -> bytes:
    """A PNG as the webui writes one: `PngInfo.add_text` (tEXt for Latin-1 text, else iTXt)."""
    info = PngImagePlugin.PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    Image.new("RGB", size, "gray").save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def sent_for(params: GenerationParams, steps: int | None = None) -> SentValues:
    """What a provider that takes every setting got (the negative prompt too, where there is one)."""
    return SentValues(
        width=params.width,
        height=params.height,
        steps=params.num_inference_steps if steps is None else steps,
        seed=params.seed or 0,
        shift=params.shift,
        guidance=params.guidance_scale,
        negative_sent=bool(params.negative_prompt.strip()),
    )


@pytest.mark.parametrize(
    ("text", "params", "ignored_keys"),
    [
        (
            A1111_BASIC,
            {
                "prompt": "masterpiece, 1girl",
                "negative_prompt": "lowres, bad anatomy",
                "num_inference_steps": 20,
                "guidance_scale": 6.0,  # CFG scale 7 - 1
                "seed": 1234567890,
                "width": 512,
                "height": 768,
            },
            ["Sampler", "Model hash", "Model", "Version"],
        ),
        (
            A1111_LORA_HIRES,
            {
                "prompt": A1111_LORA_HIRES.split("\n")[0],
                "negative_prompt": "(worst quality, low quality:1.4), easynegative, "
                "verybadimagenegative_v1.3",
                "num_inference_steps": 25,
                "guidance_scale": 6.0,
                "seed": 3098768537,
                "width": 512,
                "height": 768,
            },
            [
                "Sampler",
                "Model hash",
                "Model",
                "Denoising strength",
                "Clip skip",
                "Hires upscale",
                "Hires steps",
                "Hires upscaler",
                "Lora hashes",
                "TI hashes",
                "Version",
            ],
        ),
        (
            A1111_MULTILINE,
            {
                "prompt": "(masterpiece:1.2), portrait of a woman,\n"
                "style: art nouveau, by alphonse mucha, intricate: detailed\nBREAK golden hour, rim light",
                "negative_prompt": "text, watermark,\nsignature, jpeg artifacts",
                "num_inference_steps": 28,
                "guidance_scale": 5.5,
                "seed": 42,
                "width": 768,
                "height": 1024,
            },
            ["Sampler", "Schedule type", "Model hash", "Model", "Version"],
        ),
        (
            A1111_OLD,
            {
                "num_inference_steps": 20,
                "guidance_scale": 6.0,
                "seed": 965400086,
                "width": 512,
                "height": 512,
            },
            ["Sampler", "Model hash"],
        ),
        (
            FORGE_FLUX,
            {
                "prompt": "a photo of a tabby cat on a windowsill, soft morning light",
                "negative_prompt": "",
                "num_inference_steps": 20,
                "guidance_scale": 0.0,
                "seed": 2821435107,
                "width": 896,
                "height": 1152,
            },
            [
                "Sampler",
                "Schedule type",
                "Distilled CFG Scale",
                "Model hash",
                "Model",
                "Diffusion in Low Bits",
                "Version",
            ],
        ),
        (
            CIVITAI,
            {
                "prompt": "cinematic photo of a lighthouse at dusk, dramatic clouds, 35mm",
                "negative_prompt": "blurry, lowres, cartoon",
                "num_inference_steps": 30,
                "guidance_scale": 4.0,
                "seed": 2093612281,
                "width": 832,
                "height": 1216,
            },
            ["Sampler", "Clip skip", "Created Date", "Civitai resources", "Civitai metadata"],
        ),
        (
            A1111_1_10,
            {
                "prompt": A1111_1_10.split("\n")[0],
                "negative_prompt": "worst quality, low quality, watermark",
                "num_inference_steps": 28,
                "guidance_scale": 5.0,
                "seed": 4123654987,
                "width": 832,
                "height": 1216,
            },
            [
                "Sampler",
                "Schedule type",
                "Model hash",
                "Model",
                "VAE hash",
                "VAE",
                "Denoising strength",
                "Clip skip",
                "Hires upscale",
                "Hires steps",
                "Hires upscaler",
                "Lora hashes",
                "Emphasis",
                "Version",
            ],
        ),
        (
            FORGE_SDXL,
            {
                "prompt": "a cozy reading nook, warm lamp light, rain on the window",
                "negative_prompt": "people, text",
                "num_inference_steps": 30,
                "guidance_scale": 4.5,
                "seed": 4294967294,
                "width": 1024,
                "height": 1024,
            },
            ["Sampler", "Schedule type", "Model hash", "Model", "Version"],
        ),
        (
            CIVITAI_2024,
            {
                "prompt": "masterpiece, a lighthouse on a cliff at dusk, dramatic clouds",
                "negative_prompt": "blurry, lowres",
                "num_inference_steps": 25,
                "guidance_scale": 6.0,
                "seed": 3765291004,
                "width": 832,
                "height": 1216,
            },
            ["Sampler", "Clip skip", "Created Date", "Civitai resources", "Civitai metadata"],
        ),
    ],
    ids=[
        "a1111",
        "a1111-lora-hires",
        "a1111-multiline",
        "a1111-2022",
        "forge-flux",
        "civitai",
        "a1111-1.10",
        "forge-2.0.1",
        "civitai-2024",
    ],
)
def test_real_infotext(text: str, params: dict, ignored_keys: list[str]):
    read = read_png_settings(png_with({"parameters": text}))
    assert read.source == "parameters"
    assert {key: read.params[key] for key in params} == params
    assert list(read.ignored) == ignored_keys
    assert read.provider is None
    assert "Loaded from the image's AUTOMATIC1111-style parameters" in read.message


def test_quoted_values_are_unquoted_as_the_webui_does():
    _, _, values = parse_infotext(A1111_LORA_HIRES)
    assert values["Lora hashes"] == "add_detail: 7c6bad76eb54"
    assert values["TI hashes"] == "easynegative: c74b4e810b03, verybadimagenegative_v1.3: d70463f870"
    assert values["Hires upscale"] == "2"
    _, _, forge = parse_infotext(FORGE_FLUX)
    assert forge["Diffusion in Low Bits"] == "Automatic (fp16 LoRA)"


def test_unquoted_json_is_cut_at_commas_as_in_the_webui():
    _, _, values = parse_infotext(CIVITAI)
    assert values["Civitai resources"] == '[{"type":"checkpoint"'
    assert values["Created Date"] == "2024-05-01T12:05:33.7563573Z"


def test_a1111_seeds_above_what_hosted_providers_take_are_kept_and_explained():
    read = read_png_settings(png_with({"parameters": A1111_LORA_HIRES}))
    assert read.params["seed"] == 3098768537 and "Seed" not in read.ignored
    assert (
        "Seed 3098768537 is above 2147483647, which the hosted providers take: the local model can use it."
        in (read.message)
    )
    params = GenerationParams.model_validate(read.params)  # "Use these settings" keeps it
    assert get_provider("diffusers-tiny").prepare(params).sent.seed == 3098768537
    with pytest.raises(InvalidParams, match=r"seed: 3098768537 is above 2147483647, the largest seed runpod"):
        get_provider("runpod").prepare(params)  # refused, never silently changed
    top = read_png_settings(png_with({"parameters": A1111_BASIC.replace("1234567890", "4294967295")}))
    assert top.params["seed"] == 4294967295
    assert "above 2147483647" not in read_png_settings(png_with({"parameters": A1111_BASIC})).message


def test_seeds_past_32_bits_are_reported_not_loaded():
    text = A1111_BASIC.replace("1234567890", "1063527513434623")  # ComfyUI and Fooocus draw 64-bit seeds
    read = read_png_settings(png_with({"parameters": text}))
    assert "seed" not in read.params
    assert read.ignored["Seed"].startswith(
        "1063527513434623 (not usable as-is: seed 1063527513434623 is outside"
    )
    assert "Not loaded: Seed 1063527513434623" in read.message


def test_sizes_that_are_not_multiples_of_16_are_reported():
    read = read_png_settings(png_with({"parameters": A1111_BASIC.replace("512x768", "500x700")}))
    assert "width" not in read.params and "height" not in read.params
    assert read.ignored["Size"] == (
        "500x700 (not usable as-is: width 500 is not a multiple of 16; use 496 or 512; "
        "height 700 is not a multiple of 16; use 688 or 704)"
    )
    assert "Not loaded: Size 500x700" in read.message
    assert read.params["seed"] == 1234567890  # the rest still loads


def test_other_models_are_named_in_the_message():
    read = read_png_settings(png_with({"parameters": A1111_BASIC}))
    assert "Made with v1-5-pruned-emaonly, not Z-Image-Turbo" in read.message


def test_last_line_with_fewer_than_three_pairs_is_prompt():
    prompt, negative, values = parse_infotext("a cat\nstyle: photo, mood: calm")
    assert (prompt, negative, values) == ("a cat\nstyle: photo, mood: calm", "", {})
    read = read_png_settings(png_with({"parameters": "just a prompt, nothing else"}))
    assert read.params == {"prompt": "just a prompt, nothing else", "negative_prompt": ""}


def test_our_hosted_output_without_steps():
    params = GenerationParams(prompt="fox", negative_prompt="dark", seed=5, width=512, height=512)
    text = infotext(params, SentValues(512, 512, None, 5, None), "runpod")
    assert text == (
        "fox\nSteps: 8, Sampler: Euler, Schedule type: Simple, Seed: 5, Size: 512x512, "
        "Model: Z-Image-Turbo, Provider: runpod"
    )  # RunPod has no negative prompt field: none is written
    read = read_png_settings(png_with({"parameters": text}))
    assert read.provider == "runpod"
    assert read.params == {
        "prompt": "fox",
        "negative_prompt": "",
        "num_inference_steps": 8,
        "seed": 5,
        "width": 512,
        "height": 512,
        "guidance_scale": 0.0,
    }
    assert read.ignored == {}


def test_our_older_provider_default_steps_text_still_reads():
    text = "fox\nSteps: provider default, Seed: 5, Size: 512x512, Model: Z-Image-Turbo, Provider: runpod"
    read = read_png_settings(png_with({"parameters": text}))
    assert read.params["seed"] == 5 and "num_inference_steps" not in read.params
    assert read.ignored == {"Steps": "provider default (the provider chose it)"}


def test_another_models_euler_is_reported_ours_is_not():
    ours = read_png_settings(
        png_with({"parameters": zimage_chunks(GenerationParams(prompt="x"))["parameters"]})
    )
    assert "Sampler" not in ours.ignored and "Schedule type" not in ours.ignored
    assert list(read_png_settings(png_with({"parameters": FORGE_FLUX})).ignored)[:2] == [
        "Sampler",
        "Schedule type",
    ]


def test_unknown_provider_in_text_is_ignored():
    text = "fox\nSteps: 8, Seed: 1, Size: 512x512, Model: Z-Image-Turbo, Provider: midjourney"
    read = read_png_settings(png_with({"parameters": text}))
    assert read.provider is None
    assert read.ignored == {"Provider": "midjourney (not a provider this app knows)"}


def zimage_chunks(params: GenerationParams, provider: str = "diffusers-tiny") -> dict[str, str]:
    sent = sent_for(params)
    record = {"schema": 1, "provider": provider, "params": params.model_dump(mode="json"), "sent": {}}
    return {"parameters": infotext(params, sent, provider), "zimage": json.dumps(record)}


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda raw: "{not json", "not valid JSON"),
        (lambda raw: raw.replace('"width": 512', '"width": 500'), "unusable values (width)"),
        (lambda raw: raw.replace('"schema": 1', '"schema": 7'), "schema 7, newer than this app reads"),
        (lambda raw: json.dumps({"schema": 1}), "no parameters"),
    ],
)
def test_bad_zimage_record_falls_back_to_parameters(mangle, reason):
    params = GenerationParams(prompt="fox, at: dawn", seed=9, width=512, height=512)
    chunks = zimage_chunks(params)
    chunks["zimage"] = mangle(chunks["zimage"])
    read = read_png_settings(png_with(chunks))
    assert read.source == "parameters"
    assert read.message.startswith("Not using the zimage-ui record: its zimage record")
    assert reason in read.message
    assert (read.params["prompt"], read.params["seed"], read.params["width"]) == ("fox, at: dawn", 9, 512)


def test_zimage_record_with_unknown_provider_keeps_the_settings():
    params = GenerationParams(prompt="fox", seed=1)
    read = read_png_settings(png_with(zimage_chunks(params, provider="gone-provider")))
    assert read.source == "zimage" and read.provider is None
    assert read.ignored == {"provider": "gone-provider (not a provider this app knows)"}


# -- round trips through our own PNG ---------------------------------------------------------


@settings(max_examples=80, deadline=None, database=None)
@given(generation_params(), st.sampled_from(PROVIDER_IDS))
def test_our_png_reads_back_the_same_parameters(params: GenerationParams, provider: str):
    params = params.with_concrete_seed()
    data = png_bytes(Image.new("RGB", (8, 8)), params, sent_for(params), provider)
    read = read_png_settings(data)
    assert read.source == "zimage"
    assert GenerationParams.model_validate(read.params) == params
    assert read.provider == provider
    assert read.ignored == {}


def _a1111_line(text: str) -> str:
    """A line the webui's format can carry: it strips lines and starts negatives with a prefix."""
    line = text.replace("\n", " ").strip()
    return "x" + line if line.startswith(NEGATIVE_PREFIX) else line


# A1111's format can't represent everything: the whole text and each line are stripped (so
# leading/trailing spaces on a line, and blank lines before the prompt, are lost), a prompt line
# starting with "Negative prompt:" starts the negative prompt, and a blank negative prompt is not
# written at all. Texts are drawn within those limits; everything else (commas, colons, quotes,
# blank lines inside, any unicode) is fair game.
a1111_lines = st.text(max_size=400).map(_a1111_line)
a1111_texts = (
    st.lists(a1111_lines, min_size=1, max_size=6)
    .map("\n".join)
    .filter(lambda s: s.strip() and len(s) <= MAX_PROMPT_CHARS)
)
a1111_prompts = a1111_texts.filter(lambda s: s == s.lstrip())


@settings(max_examples=80, deadline=None, database=None)
@given(
    prompt=a1111_prompts,
    negative=st.none() | a1111_texts,
    seed=seeds,
    steps=steps,
    width=sides_px,
    height=sides_px,
    shift=shifts,
    guidance=st.sampled_from([0.0, 1.5, 4.0, 7.25]),
    provider=st.sampled_from(PROVIDER_IDS),
)
def test_parameters_text_alone_reads_back(
    prompt, negative, seed, steps, width, height, shift, guidance, provider
):
    params = GenerationParams(
        prompt=prompt,
        negative_prompt=negative or "",
        seed=seed,
        num_inference_steps=steps,
        width=width,
        height=height,
        shift=shift,
        guidance_scale=guidance,
    )
    text = infotext(params, sent_for(params), provider)
    read = read_png_settings(png_with({"parameters": text}))  # no zimage chunk
    assert read.source == "parameters"
    assert read.provider == provider
    assert read.ignored == {}
    assert read.params == {
        "prompt": prompt,
        "negative_prompt": negative or "",
        "num_inference_steps": steps,
        "seed": seed,
        "width": width,
        "height": height,
        "shift": shift,
        "guidance_scale": guidance,
    }


# -- degradation -----------------------------------------------------------------------------


def _jpeg_with_comment(comment: bytes, kind: str = "JPEG") -> bytes:
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = comment
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "gray").save(buffer, format=kind, exif=exif)
    return buffer.getvalue()


@pytest.mark.parametrize("kind", ["JPEG", "WEBP"])
def test_webui_jpeg_and_webp_user_comment(kind: str):
    data = _jpeg_with_comment(b"UNICODE\x00" + A1111_BASIC.encode("utf-16-be"), kind)
    read = read_png_settings(data)
    assert read.source == "parameters"
    assert (read.params["seed"], read.params["width"]) == (1234567890, 512)


def test_little_endian_and_ascii_user_comments():
    little = read_png_settings(_jpeg_with_comment(b"UNICODE\x00" + A1111_BASIC.encode("utf-16-le")))
    ascii_ = read_png_settings(_jpeg_with_comment(b"ASCII\x00\x00\x00" + A1111_BASIC.encode()))
    assert little.params["prompt"] == ascii_.params["prompt"] == "masterpiece, 1girl"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not an image at all",
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 40,
        png_with({"parameters": A1111_BASIC})[:60],
        json.dumps({"prompt": "fox"}).encode(),
    ],
    ids=["empty", "text", "png-header-only", "truncated-png", "json"],
)
def test_garbage_gives_a_message_not_an_exception(data: bytes):
    read = read_png_settings(data)
    assert (read.source, read.params, read.provider) == (None, {}, None)
    assert "not an image this app can read" in read.message


@settings(max_examples=100, deadline=None, database=None)
@given(st.binary(max_size=2000))
def test_any_bytes_never_raise(data: bytes):
    read = read_png_settings(data)
    assert read.source in {None, "zimage", "parameters", "fooocus", "comfyui"} and read.message


@settings(max_examples=50, deadline=None, database=None)
@given(st.text(max_size=500))
def test_any_parameters_text_never_raises(text: str):
    read = read_png_settings(png_with({"parameters": text}))
    assert read.message
    GenerationParams.model_validate({"prompt": "x", **read.params})  # whatever loads is valid


def test_text_chunk_after_the_image_data():
    """Some writers put tEXt after IDAT; the image has to be read to find it."""
    plain = png_with({})
    body = b"parameters\x00" + A1111_OLD.encode("latin-1")
    chunk = struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", zlib.crc32(b"tEXt" + body))
    end = plain.rindex(b"IEND") - 4
    read = read_png_settings(plain[:end] + chunk + plain[end:])
    assert read.source == "parameters" and read.params["seed"] == 965400086


def test_image_without_metadata():
    read = read_png_settings(png_with({}))
    assert read.source is None
    assert read.message == "This image carries no generation settings, so nothing can be loaded here."


def test_a_comfyui_graph_without_settings_says_it_cant_be_run_and_nothing_was_read():
    read = read_png_settings(png_with({"prompt": '{"3": {"class_type": "KSampler"}}', "workflow": "{}"}))
    assert read.source is None and read.params == {}
    graph = "(ComfyUI graph: can't be run here)"
    assert read.ignored == {"prompt": graph, "workflow": graph}
    assert (
        read.message
        == "This image carries a ComfyUI graph, which can't be run here; nothing was read from it."
    )
