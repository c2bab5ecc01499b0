"""A URL a visitor gives is fetched only from a public address: never this server's own network,
not even through a redirect."""

from __future__ import annotations

import httpx
import pytest

from zimage_ui.errors import InvalidParams, ProviderError
from zimage_ui.image_inputs import fetch_remote
from zimage_ui.lora_downloads import download_loras
from zimage_ui.net.http import HttpEngine
from zimage_ui.net.private import refuse_private_address
from zimage_ui.params import ImageInputs, LoraRef

PNG_1x1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de0000000c4944415408d763f8cf"
    "c000000301010018dd8db00000000049454e44ae426082"
)


def engine(seen: list[str], redirect_to: str | None = None) -> HttpEngine:
    """Answers every request on a mock transport (nothing leaves the process); records the URLs."""

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if redirect_to and request.url.host == "cdn.example.test":
            return httpx.Response(302, headers={"Location": redirect_to})
        return httpx.Response(200, content=PNG_1x1, headers={"Content-Type": "image/png"})

    return HttpEngine(transport=httpx.MockTransport(answer))


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "localhost", "10.0.0.5", "169.254.169.254", "[::1]", "192.168.1.20"]
)
async def test_a_local_or_private_host_is_refused_before_any_request(host: str, monkeypatch) -> None:
    monkeypatch.delenv("ZIMAGE_ALLOW_PRIVATE_URLS", raising=False)
    seen: list[str] = []
    inputs = ImageInputs(image=f"https://{host}/latest/meta-data.png")
    with pytest.raises(InvalidParams) as caught:
        await fetch_remote(inputs, engine(seen))
    assert "private or local address" in caught.value.fields["image"]
    assert seen == []


async def test_a_redirect_into_the_private_network_is_refused(monkeypatch) -> None:
    monkeypatch.delenv("ZIMAGE_ALLOW_PRIVATE_URLS", raising=False)
    seen: list[str] = []
    inputs = ImageInputs(image="https://cdn.example.test/photo.png")
    with pytest.raises(InvalidParams) as caught:
        await fetch_remote(inputs, engine(seen, redirect_to="https://169.254.169.254/secret.png"))
    assert "169.254.169.254" in caught.value.fields["image"]
    assert seen == ["https://cdn.example.test/photo.png"]  # the redirect was never followed


async def test_a_public_host_is_fetched_and_a_trusted_network_can_allow_private_ones(monkeypatch) -> None:
    monkeypatch.delenv("ZIMAGE_ALLOW_PRIVATE_URLS", raising=False)
    seen: list[str] = []
    fetched = await fetch_remote(ImageInputs(image="https://cdn.example.test/photo.png"), engine(seen))
    assert fetched["https://cdn.example.test/photo.png"] == PNG_1x1
    monkeypatch.setenv("ZIMAGE_ALLOW_PRIVATE_URLS", "1")
    fetched = await fetch_remote(ImageInputs(image="https://10.0.0.5/photo.png"), engine(seen))
    assert fetched["https://10.0.0.5/photo.png"] == PNG_1x1


async def test_a_lora_url_on_the_private_network_is_refused(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("ZIMAGE_ALLOW_PRIVATE_URLS", raising=False)
    monkeypatch.setenv("ZIMAGE_LORA_CACHE", str(tmp_path))
    seen: list[str] = []
    with pytest.raises(InvalidParams, match="private or local address"):
        await download_loras([LoraRef(ref="https://127.0.0.1/ink.safetensors")], engine(seen))
    assert seen == []


async def test_the_check_names_the_address() -> None:
    with pytest.raises(ProviderError, match=r"\(127\.0\.0\.1\)"):
        await refuse_private_address("input image", "localhost")
    await refuse_private_address("input image", "no-such-host.invalid")  # unresolvable: left to fail
