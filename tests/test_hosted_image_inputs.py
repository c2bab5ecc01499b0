"""Image inputs on the hosted providers that take them: the pure mapping, refusals, the emulator run."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import httpx
import pytest

from tests.emulators import Emulator
from zimage_ui.errors import InvalidParams
from zimage_ui.metadata import ZIMAGE_KEY, png_bytes, read_text_chunks
from zimage_ui.params import GenerationParams, parse_params
from zimage_ui.providers import PROVIDERS
from zimage_ui.providers.base import KeyRing
from zimage_ui.providers.hosted.inferencesh import inferencesh_body
from zimage_ui.providers.hosted.runpod import runpod_body
from zimage_ui.providers.hosted.scenario import IMAGE_PENDING, scenario_body

URL = "https://images.example.com/in.png"


def params(**inputs: object) -> GenerationParams:
    return parse_params(prompt="a red fox", width=1024, height=1024, seed=42, inputs=inputs)


# -- RunPod: `input.image` (a URL) + `input.strength` 0..1, seed 004 ---------------------------------


def test_runpod_maps_an_image_url_and_the_strength() -> None:
    body, sent, notes = runpod_body(params(image=URL, strength=0.45))
    assert body["input"]["image"] == URL
    assert body["input"]["strength"] == 0.45
    assert sent.strength == 0.45
    assert any("strength 0.45" in note and "URL" in note for note in notes), notes


def test_runpod_sends_our_default_strength_explicitly() -> None:
    body, sent, notes = runpod_body(params(image=URL))  # RunPod's own default (0.8) differs from ours
    assert body["input"]["strength"] == sent.strength == 0.6
    assert any("default is 0.8" in note for note in notes), notes


def test_runpod_text_to_image_body_has_no_image_fields() -> None:
    body, sent, _ = runpod_body(parse_params(prompt="a red fox", seed=42))
    assert "image" not in body["input"] and "strength" not in body["input"]
    assert sent.strength is None


@pytest.mark.parametrize(
    ("inputs", "field", "words"),
    [
        ({"image": "in.png"}, "image", "runpod needs an https URL for the input image"),
        ({"image": "/tmp/upload/in.png"}, "image", "can't receive an uploaded or local file"),
        ({"image": URL, "mask": "https://images.example.com/m.png"}, "mask", "runpod takes no mask"),
        ({"image": URL, "loras": [{"ref": "x.safetensors"}]}, "loras", "runpod takes no LoRA"),
    ],
)
def test_runpod_refuses_what_it_cannot_take(inputs: dict, field: str, words: str) -> None:
    provider = PROVIDERS["runpod"]
    with pytest.raises(InvalidParams) as caught:
        provider.prepare(params(**inputs))
    assert field in caught.value.fields and words in caught.value.fields[field], caught.value.fields
    with pytest.raises(InvalidParams):  # the pure mapping refuses too: nothing is silently dropped
        runpod_body(params(**inputs))


def test_runpod_capabilities_say_url_only() -> None:
    capabilities = PROVIDERS["runpod"].capabilities
    assert capabilities.image_input and capabilities.image_sources == ("url",)
    assert not capabilities.mask_input and not capabilities.lora


async def test_runpod_emulator_receives_the_documented_fields(runpod_emulator: Emulator) -> None:
    provider = PROVIDERS["runpod"]
    prepared = provider.prepare(params(image=URL, strength=0.35))
    result = await provider.run(prepared, keys=KeyRing())
    [submit] = runpod_emulator.calls("POST", "/runsync")
    assert submit.body == prepared.body
    assert submit.body["input"]["image"] == URL and submit.body["input"]["strength"] == 0.35
    assert result.sent.strength == 0.35
    assert any("strength 0.35" in note for note in result.notes)
    png = png_bytes(result.images[0], prepared.params, result.sent, provider.id)
    chunks = read_text_chunks(png)
    assert json.loads(chunks[ZIMAGE_KEY])["sent"]["strength"] == 0.35
    assert "Denoising strength: 0.35" in chunks["parameters"]


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("strength", 1.5, "strength must be <= 1"),
        ("strength", -0.1, "strength must be >= 0"),
        ("strength", "0.5", "strength must be"),
        ("image", "aW1hZ2U=", "image must be the URL of an input image"),
        ("image", 7, "image must be str"),
    ],
)
async def test_runpod_emulator_checks_image_and_strength(
    runpod_emulator: Emulator, field: str, value: object, problem: str
) -> None:
    provider = PROVIDERS["runpod"]
    prepared = provider.prepare(params(image=URL, strength=0.5))
    body = copy.deepcopy(prepared.body)
    body["input"][field] = value
    headers = provider.auth_headers([runpod_emulator.keys[name] for name in provider.key_names])
    async with httpx.AsyncClient() as client:
        response = await client.post(prepared.url, json=body, headers=headers)
    assert response.status_code == 400
    assert problem in response.text


# -- inference.sh: `loras` [{adapter_name, lora_url, lora_multiplier}], seed 001; no image field ----

LORA_URL = "https://loras.example.test/styles/ink-wash.safetensors"  # never fetched: sent as text


def test_inferencesh_maps_lora_urls() -> None:
    body, sent, notes = inferencesh_body(
        params(loras=[{"ref": LORA_URL, "scale": 0.7}, {"ref": "https://civitai.com/api/download/models/9"}])
    )
    assert body["input"]["loras"] == [
        {"adapter_name": "ink_wash_0", "lora_url": LORA_URL, "lora_multiplier": 0.7},
        {
            "adapter_name": "9_1",
            "lora_url": "https://civitai.com/api/download/models/9",
            "lora_multiplier": 1.0,
        },
    ]
    assert sent.loras == (("ink_wash_0", 0.7, ""), ("9_1", 1.0, ""))
    assert any("LoRA ink_wash_0 sent as its URL" in note and "0.7" in note for note in notes), notes


def test_inferencesh_without_loras_sends_no_loras_field() -> None:
    body, sent, _ = inferencesh_body(parse_params(prompt="a red fox", seed=42))
    assert "loras" not in body["input"] and sent.loras == ()


@pytest.mark.parametrize(
    ("inputs", "field", "words"),
    [
        (
            {"loras": [{"ref": "owner/ink-wash"}]},
            "loras",
            "it doesn't know that model id; give a local .safetensors file or an https URL",
        ),
        ({"loras": [{"ref": LORA_URL}, {"ref": "model_abc"}]}, "loras", "can't take the LoRA 'model_abc'"),
        ({"image": URL}, "image", "inferencesh takes no input image: text-to-image only"),
        ({"image": "in.png"}, "image", "text-to-image only"),
    ],
)
def test_inferencesh_refuses_what_it_cannot_take(inputs: dict, field: str, words: str) -> None:
    with pytest.raises(InvalidParams) as caught:
        PROVIDERS["inferencesh"].prepare(params(**inputs))
    assert words in caught.value.fields[field], caught.value.fields
    with pytest.raises(InvalidParams):
        inferencesh_body(params(**inputs))


@pytest.mark.parametrize(
    ("ref", "words"),
    [
        ("http://example.com/x.safetensors", "http:// LoRA references are not read"),
        ("ftp://example.com/x.safetensors", "ftp:// LoRA references are not read"),
        ("https://", "https:// LoRA references are not read"),
        ("x.bin", "is not a .safetensors file"),
    ],
)
def test_lora_refs_accept_local_files_and_https_urls_only(ref: str, words: str) -> None:
    with pytest.raises(InvalidParams, match=words):
        params(loras=[{"ref": ref}])
    assert params(loras=[{"ref": LORA_URL}]).loras[0].ref == LORA_URL


def test_the_local_model_takes_lora_urls_once_downloaded(tmp_path) -> None:
    from zimage_ui.image_inputs import load_inputs
    from zimage_ui.providers import get_provider
    from zimage_ui.providers.base import refuse_inputs

    p = params(loras=[{"ref": LORA_URL}])
    refuse_inputs(p, get_provider("diffusers-tiny").capabilities, "diffusers-tiny")  # taken: downloaded first
    with pytest.raises(InvalidParams, match="was not downloaded: the local model downloads it first"):
        load_inputs(p)  # a caller that skipped lora_downloads.download_loras
    assert load_inputs(p, skip_urls=True).loras == ()  # the CLI's early check leaves it to the run
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes(b"weights")
    [lora] = load_inputs(p, lora_paths={LORA_URL: str(copy)}).loras
    assert (lora.name, lora.path) == ("ink-wash", str(copy))  # named after the URL, not the cache file


async def test_inferencesh_emulator_receives_the_loras(inferencesh_emulator: Emulator) -> None:
    provider = PROVIDERS["inferencesh"]
    prepared = provider.prepare(params(loras=[{"ref": LORA_URL, "scale": 0.5}]))
    result = await provider.run(prepared, keys=KeyRing())
    [submit] = inferencesh_emulator.calls("POST", "/apps/run")
    assert submit.body == prepared.body
    assert submit.body["input"]["loras"] == [
        {"adapter_name": "ink_wash_0", "lora_url": LORA_URL, "lora_multiplier": 0.5}
    ]
    assert any("LoRA ink_wash_0" in note for note in result.notes)
    png = png_bytes(result.images[0], prepared.params, result.sent, provider.id)
    chunks = read_text_chunks(png)
    assert json.loads(chunks[ZIMAGE_KEY])["sent"]["loras"] == [
        {"name": "ink_wash_0", "scale": 0.5, "hash": ""}
    ]
    assert "<lora:ink_wash_0:0.5>" in chunks["parameters"] and "Lora hashes" not in chunks["parameters"]


@pytest.mark.parametrize(
    ("loras", "problem"),
    [
        ({"adapter_name": "a", "lora_url": LORA_URL}, "loras must be list"),
        ([{"lora_url": LORA_URL, "lora_multiplier": 1.0}], "loras[0]: adapter_name is required"),
        ([{"adapter_name": "a", "lora_multiplier": 1.0}], "loras[0]: give one of lora_url or lora_file"),
        ([{"adapter_name": "a", "lora_url": LORA_URL, "lora_multiplier": "1"}], "lora_multiplier must be"),
        ([{"adapter_name": "a", "lora_url": LORA_URL, "scale": 1}], "loras[0]: scale is not a known field"),
        ([{"adapter_name": "a", "lora_url": "ink.safetensors"}], "loras[0]: lora_url must be a URL"),
        (["a"], "loras[0]: the body must be a JSON object"),
    ],
)
async def test_inferencesh_emulator_checks_the_loras_shape(
    inferencesh_emulator: Emulator, loras: object, problem: str
) -> None:
    provider = PROVIDERS["inferencesh"]
    prepared = provider.prepare(params())
    body = copy.deepcopy(prepared.body)
    body["input"]["loras"] = loras
    headers = provider.auth_headers([inferencesh_emulator.keys[name] for name in provider.key_names])
    async with httpx.AsyncClient() as client:
        response = await client.post(prepared.url, json=body, headers=headers)
    assert response.status_code == 400
    assert problem in response.text


# -- Scenario: `image` (an asset id, uploaded first: POST /v1/assets) + `strength`, seed 000 --------


def png_file(path, size=(64, 48)) -> str:
    from PIL import Image

    Image.new("RGB", size, (200, 30, 30)).save(path)
    return str(path)


def test_scenario_maps_the_image_to_a_pending_asset_and_the_strength() -> None:
    body, sent, notes = scenario_body(params(image="in.png", strength=0.3))
    assert body["image"] == IMAGE_PENDING and body["strength"] == 0.3
    assert sent.strength == 0.3
    assert any("uploaded to Scenario as an asset first" in n and "default is 0.75" in n for n in notes), notes
    body, sent, _ = scenario_body(parse_params(prompt="a red fox", seed=42))
    assert "image" not in body and "strength" not in body and sent.strength is None


@pytest.mark.parametrize(
    ("inputs", "field", "words"),
    [
        ({"image": "in.png", "mask": "m.png"}, "mask", "scenario takes no mask"),
        (
            {"loras": [{"ref": "x.safetensors"}]},
            "loras",
            "scenario can't take the LoRA 'x.safetensors': it can't read a local file; give a model id",
        ),
        ({"loras": [{"ref": LORA_URL}]}, "loras", "it takes no LoRA URL; give a model id"),
        ({"loras": [{"ref": "owner/ink-wash"}]}, "loras", "not a Scenario model id"),
    ],
)
def test_scenario_refuses_what_it_cannot_take(inputs: dict, field: str, words: str) -> None:
    with pytest.raises(InvalidParams) as caught:
        PROVIDERS["scenario"].prepare(params(**inputs))
    assert words in caught.value.fields[field], caught.value.fields


async def test_scenario_uploads_the_image_then_sends_its_asset_id(
    scenario_emulator: Emulator, tmp_path
) -> None:
    provider = PROVIDERS["scenario"]
    source = png_file(tmp_path / "in.png")
    prepared = provider.prepare(params(image=source, strength=0.4))
    result = await provider.run(prepared, keys=KeyRing())
    [upload] = scenario_emulator.calls("POST", "/assets")
    assert upload.body["name"] == "in.png"
    assert upload.body["image"].startswith("data:image/png;base64,")
    assert list(scenario_emulator.uploads.values()) == [Path(source).read_bytes()]
    [submit] = scenario_emulator.calls("POST", "/generate/custom/model_z-image-turbo")
    [asset_id] = scenario_emulator.uploads
    assert submit.body == {**prepared.body, "image": asset_id}
    assert submit.body["strength"] == 0.4
    assert f"input image uploaded as Scenario asset {asset_id}, sent as image" in result.notes
    assert upload.headers["authorization"].startswith("Basic ")
    png = png_bytes(result.images[0], prepared.params, result.sent, provider.id)
    assert json.loads(read_text_chunks(png)[ZIMAGE_KEY])["sent"]["strength"] == 0.4
    assert scenario_emulator.keys["SCENARIO_SDK_API_SECRET"] not in json.dumps(prepared.display())


async def test_scenario_refuses_an_unreadable_image_before_uploading(
    scenario_emulator: Emulator, tmp_path
) -> None:
    provider = PROVIDERS["scenario"]
    bad = tmp_path / "in.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(InvalidParams, match="not a readable image"):
        await provider.run(provider.prepare(params(image=str(bad))), keys=KeyRing())
    assert not scenario_emulator.calls("POST", "/assets") and not scenario_emulator.calls("POST", "/generate")


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"image": "asset_never_uploaded", "strength": 0.5}, "is not an asset id: upload the image first"),
        ({"image": IMAGE_PENDING}, "is not an asset id"),
        ({"strength": 1.5}, "strength must be <= 1"),
    ],
)
async def test_scenario_emulator_checks_the_image_is_an_uploaded_asset(
    scenario_emulator: Emulator, body: dict, problem: str
) -> None:
    provider = PROVIDERS["scenario"]
    prepared = provider.prepare(params())
    headers = provider.auth_headers([scenario_emulator.keys[name] for name in provider.key_names])
    async with httpx.AsyncClient() as client:
        response = await client.post(prepared.url, json={**prepared.body, **body}, headers=headers)
    assert response.status_code == 400
    assert problem in response.text


@pytest.mark.parametrize(
    ("upload", "problem"),
    [
        ({"name": "a.png", "image": "aGVsbG8="}, "image must be a data URL"),
        ({"name": "a.png", "image": "data:image/png;base64,@@@"}, "not valid base64"),
        ({"image": "data:image/png;base64,aGVsbG8="}, "name is required"),
    ],
)
async def test_scenario_emulator_checks_asset_uploads(
    scenario_emulator: Emulator, upload: dict, problem: str
) -> None:
    provider = PROVIDERS["scenario"]
    headers = provider.auth_headers([scenario_emulator.keys[name] for name in provider.key_names])
    async with httpx.AsyncClient() as client:
        response = await client.post(provider.base_url() + "/assets", json=upload, headers=headers)
    assert response.status_code == 400
    assert problem in response.text
