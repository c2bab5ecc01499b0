"""Uploads before a hosted job, and what they send: Scenario's ControlNet, LoRA ids and big images
(`/v1/uploads` in parts), inference.sh's local LoRA files (`POST /files` + a PUT), signed URLs kept
out of "What was sent", and every upload step's failure named in its message."""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.emulators import Emulator
from zimage_ui.errors import InvalidParams, JobFailed, MalformedResponse, ProviderError
from zimage_ui.net import session as http_module
from zimage_ui.params import GenerationParams, parse_params
from zimage_ui.providers import PROVIDERS
from zimage_ui.providers.base import KeyRing
from zimage_ui.providers.hosted.inferencesh import file_pending, inferencesh_body
from zimage_ui.providers.hosted.scenario import (
    CONTROL_PENDING,
    MAX_ASSET_BYTES,
    UPLOAD_PART_BYTES,
    scenario_body,
)

GENERATE = "/generate/custom/model_z-image-turbo"


def params(**inputs: object) -> GenerationParams:
    return parse_params(prompt="a red fox", width=1024, height=1024, seed=42, inputs=inputs)


def small_png(path: Path) -> str:
    Image.new("RGB", (64, 48), (20, 20, 20)).save(path)
    return str(path)


def big_png(path: Path) -> str:
    """Noise does not compress: 1600x1400 RGB is a PNG of about 6.7 MB, over the 6 MB asset limit."""
    Image.frombytes("RGB", (1600, 1400), os.urandom(1600 * 1400 * 3)).save(path, compress_level=1)
    assert path.stat().st_size >= MAX_ASSET_BYTES
    return str(path)


def secrets_of(emulator: Emulator) -> list[str]:
    return list(emulator.keys.values())


# -- Scenario ControlNet: controlImage (assetId[]) + controlnetConditioningScale 0..1 ----------------


def test_scenario_maps_the_control_image_to_a_pending_asset_list_and_the_scale() -> None:
    body, sent, notes = scenario_body(params(control_image="edges.png", control_kind="hed"))
    assert body["controlImage"] == [CONTROL_PENDING]
    assert body["controlnetConditioningScale"] == 0.75  # our default, sent: Scenario's own is 0.7
    assert "image" not in body and "strength" not in body
    assert sent.control == ("hed", 0.75)
    assert any("asset id sent as controlImage" in note and "default is 0.7" in note for note in notes)
    assert any("control kind hed not sent" in note and "edge image" in note for note in notes), notes
    body, sent, _ = scenario_body(params(control_image="depth.png", control_kind="depth", control_scale=0.3))
    assert body["controlnetConditioningScale"] == 0.3 and sent.control == ("depth", 0.3)


def test_scenario_refuses_a_control_scale_above_its_range() -> None:
    with pytest.raises(InvalidParams) as caught:
        PROVIDERS["scenario"].prepare(params(control_image="edges.png", control_scale=1.5))
    assert "Scenario's controlnetConditioningScale takes 0..1" in caught.value.fields["control_scale"]


def test_scenario_takes_every_control_kind() -> None:
    capabilities = PROVIDERS["scenario"].capabilities
    assert capabilities.control_input
    assert set(capabilities.control_kinds) == {"canny", "hed", "depth", "pose", "mlsd"}


async def test_scenario_uploads_the_control_image_and_sends_its_asset_id(
    scenario_emulator: Emulator, tmp_path: Path
) -> None:
    provider = PROVIDERS["scenario"]
    source = small_png(tmp_path / "edges.png")
    prepared = provider.prepare(params(control_image=source, control_kind="canny", control_scale=0.6))
    result = await provider.run(prepared, keys=KeyRing())
    [upload] = scenario_emulator.calls("POST", "/assets")
    assert upload.body["name"] == "edges.png"
    [asset_id] = scenario_emulator.uploads
    assert scenario_emulator.uploads[asset_id] == Path(source).read_bytes()
    [submit] = scenario_emulator.calls("POST", GENERATE)
    assert submit.body == {**prepared.body, "controlImage": [asset_id]}
    assert submit.body["controlnetConditioningScale"] == 0.6
    assert f"control image uploaded as Scenario asset {asset_id}, sent as controlImage" in result.notes
    assert result.sent.control == ("canny", 0.6)


@pytest.mark.parametrize("field", ["image", "control_image"])
async def test_scenario_sends_an_image_of_6_mb_or_more_through_uploads_in_parts(
    scenario_emulator: Emulator, tmp_path: Path, field: str
) -> None:
    provider = PROVIDERS["scenario"]
    source = big_png(tmp_path / "big.png")
    data = Path(source).read_bytes()
    prepared = provider.prepare(params(**{field: source}))
    await provider.run(prepared, keys=KeyRing())
    assert not scenario_emulator.calls("POST", "/assets")  # too big for one JSON data URL
    [create] = scenario_emulator.calls("POST", "/v1/uploads")[:1]
    parts = -(-len(data) // UPLOAD_PART_BYTES)
    assert create.body == {
        "fileName": "big.png",
        "contentType": "image/png",
        "fileSize": len(data),
        "kind": "image",
        "parts": parts,
    }
    puts = scenario_emulator.calls("PUT", "/s3/")
    assert [put.body for put in puts] == [
        min(UPLOAD_PART_BYTES, len(data) - i * UPLOAD_PART_BYTES) for i in range(parts)
    ]
    assert parts == 2  # a 6.7 MB image: one 5 MB part and the rest
    assert all("authorization" not in put.headers for put in puts)  # the part URLs are signed
    [action] = scenario_emulator.calls("POST", "/action")
    assert action.body == {"action": "complete"}
    [asset_id] = scenario_emulator.uploads
    assert scenario_emulator.uploads[asset_id] == data
    [submit] = scenario_emulator.calls("POST", GENERATE)
    sent = submit.body["image"] if field == "image" else submit.body["controlImage"]
    assert sent == (asset_id if field == "image" else [asset_id])


# -- Scenario LoRAs: loras (model ids) + lorasScale (number[], one per LoRA, 0..2) -----------------


def test_scenario_maps_lora_ids_and_one_scale_each() -> None:
    body, sent, notes = scenario_body(
        params(loras=[{"ref": "model_ink-wash", "scale": 0.8}, {"ref": "model_paper", "scale": 1.5}])
    )
    assert body["loras"] == ["model_ink-wash", "model_paper"]
    assert body["lorasScale"] == [0.8, 1.5]
    assert sent.loras == (("model_ink-wash", 0.8, ""), ("model_paper", 1.5, ""))
    assert any("lorasScale" in note and "model_paper 1.5" in note for note in notes), notes
    assert PROVIDERS["scenario"].capabilities.lora_sources == ("id",)


@pytest.mark.parametrize(
    ("lora", "words"),
    [
        ({"ref": "model_ink", "scale": 2.5}, "outside 0..2, the range of Scenario's lorasScale"),
        ({"ref": "model_ink", "scale": -0.5}, "outside 0..2"),
        ({"ref": "owner/ink-wash"}, "is not a Scenario model id"),
        ({"ref": "ink-wash"}, "is not a Scenario model id"),
    ],
)
def test_scenario_refuses_loras_it_cannot_take(lora: dict, words: str) -> None:
    with pytest.raises(InvalidParams) as caught:
        PROVIDERS["scenario"].prepare(params(loras=[lora]))
    assert words in caught.value.fields["loras"], caught.value.fields


async def test_scenario_emulator_receives_the_lora_ids_and_scales(scenario_emulator: Emulator) -> None:
    provider = PROVIDERS["scenario"]
    prepared = provider.prepare(params(loras=[{"ref": "model_ink", "scale": 0.7}]))
    await provider.run(prepared, keys=KeyRing())
    [submit] = scenario_emulator.calls("POST", GENERATE)
    assert submit.body["loras"] == ["model_ink"] and submit.body["lorasScale"] == [0.7]


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ({"loras": ["model_a"], "lorasScale": 0.7}, "lorasScale must be list"),
        ({"loras": ["model_a"], "lorasScale": [0.7, 0.2]}, "one scale per LoRA"),
        ({"loras": ["model_a"], "lorasScale": [3]}, "lorasScale must be a list of numbers in 0..2"),
        ({"loras": ["ink.safetensors"]}, "loras must be a list of LoRA model ids"),
        ({"controlImage": "asset_x"}, "controlImage must be list"),
        ({"controlImage": ["asset_never_uploaded"]}, "is not an asset id: upload it first"),
        ({"controlImage": []}, "non-empty list of asset ids"),
        ({"controlnetConditioningScale": 1.5}, "controlnetConditioningScale must be <= 1"),
    ],
)
async def test_scenario_emulator_checks_loras_and_control_fields(
    scenario_emulator: Emulator, extra: dict, problem: str
) -> None:
    provider = PROVIDERS["scenario"]
    prepared = provider.prepare(params())
    headers = provider.auth_headers(secrets_of(scenario_emulator))
    async with httpx.AsyncClient() as client:
        response = await client.post(prepared.url, json={**prepared.body, **extra}, headers=headers)
    assert response.status_code == 400
    assert problem in response.text


@pytest.mark.parametrize(
    ("upload", "problem"),
    [
        (
            {"fileName": "a.png", "contentType": "image/png", "fileSize": 10, "kind": "image"},
            "parts is required",
        ),
        (
            {"fileName": "a.png", "contentType": "image/png", "fileSize": 10, "kind": "image", "parts": 2},
            "too many parts",
        ),
        (
            {"fileName": "a.png", "contentType": "text/html", "fileSize": 10, "kind": "image", "parts": 1},
            "contentType must be an image type",
        ),
        (
            {"fileName": "a.png", "contentType": "image/png", "fileSize": 10, "kind": "photo", "parts": 1},
            "kind must be one of",
        ),
    ],
)
async def test_scenario_emulator_checks_multipart_upload_requests(
    scenario_emulator: Emulator, upload: dict, problem: str
) -> None:
    provider = PROVIDERS["scenario"]
    headers = provider.auth_headers(secrets_of(scenario_emulator))
    async with httpx.AsyncClient() as client:
        response = await client.post(provider.base_url() + "/uploads", json=upload, headers=headers)
    assert response.status_code == 400
    assert problem in response.text


@pytest.mark.parametrize(
    ("fault", "big", "kind", "words"),
    [
        ("assets_500", False, ProviderError, "the service failed (HTTP 500) (asset service down)"),
        ("create_500", True, ProviderError, "the service failed (HTTP 500) (upload service down)"),
        ("create_no_parts", True, MalformedResponse, "not in the documented shape (no upload.parts"),
        ("part_403", True, ProviderError, "the upload host refused the image part 1 (HTTP 403)"),
        ("complete_500", True, ProviderError, "could not complete the upload"),
        (
            "import_failed",
            True,
            JobFailed,
            "Scenario could not import the image (the file is not a supported",
        ),
    ],
)
async def test_scenario_upload_failures_name_the_step(
    scenario_emulator: Emulator, tmp_path: Path, fault: str, big: bool, kind: type, words: str
) -> None:
    provider = PROVIDERS["scenario"]
    source = big_png(tmp_path / "c.png") if big else small_png(tmp_path / "c.png")
    scenario_emulator.upload_fault = fault
    with pytest.raises(ProviderError) as caught:
        await provider.run(provider.prepare(params(control_image=source)), keys=KeyRing())
    message = str(caught.value)
    assert type(caught.value) is kind
    assert message.startswith("scenario: uploading the control image to Scenario failed: "), message
    assert words in message, message
    assert not any(secret in message for secret in secrets_of(scenario_emulator))
    assert not scenario_emulator.calls("POST", GENERATE)  # no paid job without its input


# -- inference.sh: a local LoRA file uploaded (POST /files, PUT), its uri sent as lora_file --------

LORA_URL = "https://loras.example.test/styles/ink-wash.safetensors"


def lora_file(path: Path, size: int = 3 * 2**20 + 12_345) -> bytes:
    data = os.urandom(size)
    path.write_bytes(data)
    return data


def test_inferencesh_maps_a_local_lora_file_to_a_pending_upload(tmp_path: Path) -> None:
    local = str(tmp_path / "paper.safetensors")
    body, sent, notes = inferencesh_body(
        params(loras=[{"ref": local, "scale": 0.6}, {"ref": LORA_URL, "scale": 0.9}])
    )
    assert body["input"]["loras"] == [
        {"adapter_name": "paper_0", "lora_file": file_pending(local), "lora_multiplier": 0.6},
        {"adapter_name": "ink_wash_1", "lora_url": LORA_URL, "lora_multiplier": 0.9},
    ]
    assert sent.loras == (("paper_0", 0.6, ""), ("ink_wash_1", 0.9, ""))
    assert any("paper_0 uploaded to inference.sh first" in n and "lora_file" in n for n in notes), notes
    assert PROVIDERS["inferencesh"].capabilities.lora_sources == ("file", "url")


async def test_inferencesh_uploads_a_local_lora_and_sends_its_uri(
    inferencesh_emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = PROVIDERS["inferencesh"]
    path = tmp_path / "paper.safetensors"
    data = lora_file(path)
    chunks: list[int] = []
    real_chunks = http_module._file_chunks

    async def counted(*args: object):  # the file goes out in chunks: never read whole
        async for chunk in real_chunks(*args):  # type: ignore[arg-type]
            chunks.append(len(chunk))
            yield chunk

    monkeypatch.setattr(http_module, "_file_chunks", counted)
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail(f"{self} read whole"))
    prepared = provider.prepare(params(loras=[{"ref": str(path), "scale": 0.6}, {"ref": LORA_URL}]))
    result = await provider.run(prepared, keys=KeyRing())
    [create] = inferencesh_emulator.calls("POST", "/files")
    assert create.body == {
        "files": [
            {
                "uri": "",
                "filename": "paper.safetensors",
                "content_type": "application/octet-stream",
                "path": None,
                "size": len(data),
                "public": False,
            }
        ]
    }
    [put] = inferencesh_emulator.calls("PUT", "/upload/")
    assert put.body == len(data) and "authorization" not in put.headers
    [stored] = inferencesh_emulator.files.values()
    assert stored.sha256 == hashlib.sha256(data).hexdigest() and stored.received == len(data)
    assert len(chunks) > 1 and max(chunks) <= http_module.UPLOAD_CHUNK_BYTES and sum(chunks) == len(data)
    [submit] = inferencesh_emulator.calls("POST", "/apps/run")
    assert submit.body["input"]["loras"] == [
        {"adapter_name": "paper_0", "lora_file": stored.uri, "lora_multiplier": 0.6},
        {"adapter_name": "ink_wash_1", "lora_url": LORA_URL, "lora_multiplier": 1.0},
    ]
    assert result.images


async def test_inferencesh_refuses_a_lora_file_over_the_cap_before_uploading(
    inferencesh_emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from zimage_ui.providers.hosted import inferencesh

    path = tmp_path / "huge.safetensors"
    lora_file(path, 4096)
    monkeypatch.setattr(inferencesh, "MAX_LORA_BYTES", 1024)
    provider = PROVIDERS["inferencesh"]
    with pytest.raises(InvalidParams, match=r"huge\.safetensors' is over"):
        await provider.run(provider.prepare(params(loras=[{"ref": str(path)}])), keys=KeyRing())
    missing = provider.prepare(params(loras=[{"ref": str(tmp_path / "gone.safetensors")}]))
    with pytest.raises(InvalidParams, match="can't read"):
        await provider.run(missing, keys=KeyRing())
    assert not inferencesh_emulator.calls("POST", "/files") and not inferencesh_emulator.calls(
        "POST", "/apps"
    )


@pytest.mark.parametrize(
    ("fault", "kind", "words"),
    [
        ("files_500", ProviderError, "the service failed (HTTP 500) (file service down)"),
        ("no_upload_url", MalformedResponse, "not in the documented shape (no data.0.upload_url"),
        ("put_403", ProviderError, "the upload host refused the LoRA file (HTTP 403)"),
        ("refused", ProviderError, "the request was refused (storage quota exceeded)"),
    ],
)
async def test_inferencesh_upload_failures_name_the_step(
    inferencesh_emulator: Emulator, tmp_path: Path, fault: str, kind: type, words: str
) -> None:
    provider = PROVIDERS["inferencesh"]
    path = tmp_path / "paper.safetensors"
    lora_file(path, 2048)
    inferencesh_emulator.files_fault = fault
    with pytest.raises(ProviderError) as caught:
        await provider.run(provider.prepare(params(loras=[{"ref": str(path)}])), keys=KeyRing())
    message = str(caught.value)
    assert type(caught.value) is kind
    assert message.startswith("inferencesh: uploading the LoRA paper.safetensors to inference.sh failed: ")
    assert words in message, message
    assert not any(secret in message for secret in secrets_of(inferencesh_emulator))
    assert not inferencesh_emulator.calls("POST", "/apps/run")


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"public": "no"}, "public must be bool/NoneType"),
        ({"uri": "https://x.test/f"}, "uri must be one of"),
        ({"size": -1}, "size must be >= 0"),
        ({"extra": 1}, "extra is not a known field"),
    ],
)
async def test_inferencesh_emulator_checks_file_requests(
    inferencesh_emulator: Emulator, change: dict, problem: str
) -> None:
    provider = PROVIDERS["inferencesh"]
    file = {"uri": "", "filename": "a.safetensors", "content_type": "application/octet-stream"}
    file |= {"path": None, "size": 4, "public": False, **change}
    headers = provider.auth_headers(secrets_of(inferencesh_emulator))
    async with httpx.AsyncClient() as client:
        response = await client.post(provider.base_url() + "/files", json={"files": [file]}, headers=headers)
    assert response.status_code == 400
    assert problem in response.text


async def test_inferencesh_emulator_refuses_a_lora_file_never_uploaded(
    inferencesh_emulator: Emulator,
) -> None:
    provider = PROVIDERS["inferencesh"]
    body = copy.deepcopy(provider.prepare(params()).body)
    body["input"]["loras"] = [{"adapter_name": "a", "lora_file": "https://cloud.inference.test/files/x/a"}]
    headers = provider.auth_headers(secrets_of(inferencesh_emulator))
    async with httpx.AsyncClient() as client:
        response = await client.post(provider.base_url() + "/apps/run", json=body, headers=headers)
    assert response.status_code == 400
    assert "lora_file must be the uri of a file uploaded" in response.text


# -- a signed URL's token is sent, never shown ------------------------------------------------------

TOKEN = "tok-9f8e7d6c5b"
SIGNATURE = "sig0a1b2c3d4e5f"
SIGNED_LORA = f"https://loras.example.test/ink.safetensors?token={TOKEN}&X-Amz-Signature={SIGNATURE}"


async def test_a_signed_lora_urls_token_is_sent_but_never_shown(inferencesh_emulator: Emulator) -> None:
    provider = PROVIDERS["inferencesh"]
    prepared = provider.prepare(params(loras=[{"ref": SIGNED_LORA}]))
    shown = json.dumps(prepared.display())
    assert TOKEN not in shown and SIGNATURE not in shown
    assert "ink.safetensors?token=***&X-Amz-Signature=***" in shown
    result = await provider.run(prepared, keys=KeyRing())
    [submit] = inferencesh_emulator.calls("POST", "/apps/run")
    assert submit.body["input"]["loras"][0]["lora_url"] == SIGNED_LORA  # the real request has it
    assert TOKEN not in " ".join(result.notes)


async def test_a_signed_urls_token_is_redacted_from_errors(inferencesh_emulator: Emulator) -> None:
    provider = PROVIDERS["inferencesh"]
    inferencesh_emulator.behaviour.fail_reason = f"could not fetch {SIGNED_LORA}"
    with pytest.raises(JobFailed) as caught:
        await provider.run(provider.prepare(params(loras=[{"ref": SIGNED_LORA}])), keys=KeyRing())
    assert "could not fetch" in str(caught.value)
    assert TOKEN not in str(caught.value) and SIGNATURE not in str(caught.value)


def test_a_signed_image_urls_token_is_not_shown_for_runpod() -> None:
    signed = f"https://images.example.test/in.png?X-Amz-Signature={SIGNATURE}"
    prepared = PROVIDERS["runpod"].prepare(params(image=signed))
    assert prepared.body["input"]["image"] == signed
    shown = json.dumps(prepared.display())
    assert SIGNATURE not in shown and "in.png?X-Amz-Signature=***" in shown
