"""A hostile server against every door the network opens: compression bombs, endless and trickling
bodies, stalls, redirect loops, providers that echo pieces of the key, PNGs full of text, editor
layers of 81 megapixels. Each attack ends within its deadline with a message naming the field or
provider, leaks no form of a secret, and grows memory by less than 150 MB."""

from __future__ import annotations

import asyncio
import base64
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from tests.hostile import BOMB_BYTES, HostileServer, huge_layer_png, leaked, text_chunk_png
from zimage_ui.errors import InvalidParams, MalformedResponse, ProviderError, ProviderTimeout
from zimage_ui.image_inputs import fetch_remote
from zimage_ui.infotext import read_png_settings
from zimage_ui.lora_downloads import download_loras
from zimage_ui.metadata import MAX_TEXT_TOTAL, png_text_chunks
from zimage_ui.net import http
from zimage_ui.net.guard import AddressRefused, PublicOnlyBackend
from zimage_ui.net.http import HttpEngine
from zimage_ui.params import GenerationParams, ImageInputs, LoraRef
from zimage_ui.providers import PROVIDERS
from zimage_ui.providers.base import KeyRing
from zimage_ui.ui.mask_editor import mask_from_editor

MEMORY_BUDGET = 150 * 2**20
KEY = "sk-hostile-0123456789abcdefGHIJKLMNOPqrstuv"
SECRET = "shh-hostile-9876543210zyxwvu"


@pytest.fixture
def private_ok(hostile_https: HostileServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The https hostile server listens on 127.0.0.1: visitor URLs may reach it (the guard is
    tested apart), and its test CA is trusted."""
    monkeypatch.setenv("ZIMAGE_ALLOW_PRIVATE_URLS", "1")
    monkeypatch.setattr(http, "_ssl_context", hostile_https.client_context)


def peak_while(work: Callable[[], Awaitable[Any]]) -> tuple[BaseException | None, int, float]:
    """Run `work`; (what it raised, peak Python memory above the start, seconds taken)."""
    tracemalloc.start()
    started = time.monotonic()
    raised: BaseException | None = None
    try:
        asyncio.run(work())  # type: ignore[arg-type]
    except Exception as exc:
        raised = exc
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return raised, peak, time.monotonic() - started


# -- compression and endless bodies ----------------------------------------------------------


def test_a_stacked_gzip_image_is_refused_before_it_inflates(hostile_http: HostileServer) -> None:
    async def work() -> None:
        async with HttpEngine().session("p", headers={}, secrets=(), key_hint="") as session:
            await session.download_image(f"{hostile_http.url}/stacked.png")

    raised, peak, _ = peak_while(work)
    assert isinstance(raised, MalformedResponse)
    assert "compressed 2 times over (gzip, gzip)" in raised.detail
    assert peak < 2**20  # nothing was inflated at all


def test_a_single_layer_bomb_is_cut_at_the_answer_cap(hostile_http: HostileServer) -> None:
    said: list[str] = []

    async def work() -> None:
        for _ in range(3):  # one after another: what the first read held is freed before the next
            async with HttpEngine().session("p", headers={}, secrets=(), key_hint="") as session:
                try:
                    await session.get_json(f"{hostile_http.url}/bomb.json")
                except MalformedResponse as exc:
                    said.append(exc.detail)

    raised, peak, _ = peak_while(work)
    assert raised is None and len(said) == 3
    assert all("inflates more than 200:1" in detail for detail in said)
    # a megabyte and a step, once (httpx alone inflates one 64 KB read into 64 MB)
    assert peak < 6 * 2**20, f"{peak / 2**20:.0f} MB for three {BOMB_BYTES // 2**20} MB bombs"


def test_a_dense_compressed_answer_is_cut_at_the_answer_cap(hostile_http: HostileServer) -> None:
    """Compressed only 2:1, so no bomb by its ratio: the 8 MB cap stops it, holding no more."""

    async def work() -> None:
        async with HttpEngine().session("p", headers={}, secrets=(), key_hint="") as session:
            await session.get_json(f"{hostile_http.url}/dense.json")

    raised, peak, _ = peak_while(work)
    assert isinstance(raised, MalformedResponse) and "larger than 8 MB" in raised.detail
    assert peak < 24 * 2**20, f"{peak / 2**20:.0f} MB"


def test_an_encoding_that_was_not_asked_for_is_refused(hostile_http: HostileServer) -> None:
    async def work() -> None:
        async with HttpEngine().session("p", headers={}, secrets=(), key_hint="") as session:
            await session.download_image(f"{hostile_http.url}/br.png")

    raised, _, _ = peak_while(work)
    assert isinstance(raised, MalformedResponse) and "encoding that was not asked for (br)" in raised.detail
    path, headers = hostile_http.requests[-1]
    assert path == "/br.png" and headers["accept-encoding"] == "gzip, deflate"


def test_a_visitors_bomb_url_is_refused_naming_the_field(
    hostile_https: HostileServer, private_ok: None
) -> None:
    for path in ("/bomb.png", "/stacked.png"):
        raised, peak, _ = peak_while(
            lambda path=path: fetch_remote(ImageInputs(image=f"{hostile_https.url}{path}"))
        )
        assert isinstance(raised, InvalidParams), raised
        assert "refused" in raised.fields["image"]
        assert peak < MEMORY_BUDGET, f"{path}: {peak / 2**20:.0f} MB"


def test_an_endless_body_is_cut_at_the_image_cap(hostile_https: HostileServer, private_ok: None) -> None:
    raised, peak, _ = peak_while(lambda: fetch_remote(ImageInputs(image=f"{hostile_https.url}/endless")))
    assert isinstance(raised, InvalidParams) and "larger than 50 MB" in raised.fields["image"]
    assert peak < MEMORY_BUDGET, f"{peak / 2**20:.0f} MB"


def test_a_trickling_lora_ends_at_the_run_deadline(
    hostile_https: HostileServer, private_ok: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ZIMAGE_TIMEOUT_S", "2")
    monkeypatch.setenv("ZIMAGE_LORA_CACHE", str(tmp_path))
    raised, _, took = peak_while(
        lambda: download_loras([LoraRef(ref=f"{hostile_https.url}/trickle/ink.safetensors")])
    )
    assert isinstance(raised, InvalidParams) and "no result within 2 s" in raised.fields["loras"]
    assert took < 5, "a LoRA download holds its run slot no longer than the run's deadline"
    assert not list(tmp_path.glob("*")), "no half download is left in the cache"


def test_a_stalled_image_host_ends_at_the_deadline(hostile_http: HostileServer, monkeypatch) -> None:
    monkeypatch.setenv("ZIMAGE_TIMEOUT_S", "1.5")

    async def work() -> None:
        async with HttpEngine().session("p", headers={}, secrets=(), key_hint="") as session:
            await session.download_image(f"{hostile_http.url}/stall")

    raised, _, took = peak_while(work)
    assert isinstance(raised, ProviderTimeout) and took < 4


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("/loop", "redirects too many times"),
        ("https://0177.0.0.1/x.png", "not a valid URL"),
    ],
)
def test_bad_links_are_clear_errors_naming_the_field(
    hostile_https: HostileServer, private_ok: None, url: str, says: str
) -> None:
    link = f"{hostile_https.url}{url}" if url.startswith("/") else url
    raised, _, _ = peak_while(lambda: fetch_remote(ImageInputs(image=link)))
    assert isinstance(raised, InvalidParams), raised
    assert says in raised.fields["image"]


# -- keys echoed in pieces -------------------------------------------------------------------

ECHOING = {
    "aimlapi": {"AIML_API_KEY": KEY},
    "evolink": {"EVOLINK_API_KEY": KEY},
    "runpod": {"RUNPOD_API_KEY": KEY},
    "inferencesh": {"INFERENCE_API_KEY": KEY},
    "scenario": {"SCENARIO_SDK_API_KEY": KEY, "SCENARIO_SDK_API_SECRET": SECRET},
}


@pytest.mark.parametrize("provider_id", sorted(ECHOING))
def test_a_provider_echoing_pieces_of_the_key_shows_none_of_them(
    hostile_http: HostileServer, provider_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = PROVIDERS[provider_id]
    monkeypatch.setenv(provider.base_url_var, f"{hostile_http.url}/echo")  # type: ignore[attr-defined]
    for name, value in ECHOING[provider_id].items():
        monkeypatch.setenv(name, value)
    prepared = provider.prepare(GenerationParams(prompt="a fox", width=512, height=512, seed=3))
    with pytest.raises(ProviderError) as caught:
        asyncio.run(provider.run(prepared, keys=KeyRing()))
    shown = str(caught.value)
    assert "invalid key" in shown, "the provider's own words still reach the user"
    basic = base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()
    assert not leaked(shown, KEY, SECRET, basic, basic.rstrip("="))


def test_credentials_in_an_engine_url_are_never_shown(hostile_http: HostileServer, monkeypatch) -> None:
    """httpx sends `user:password@` as a Basic header: an engine that echoes it shows neither."""
    monkeypatch.setenv(
        "ZIMAGE_OPENAI_BASE_URL", f"http://team:{SECRET}@127.0.0.1:{hostile_http.port}/echo/v1"
    )
    provider = PROVIDERS["openai-compatible"]
    prepared = provider.prepare(GenerationParams(prompt="a fox", width=512, height=512, seed=3))
    with pytest.raises(ProviderError) as caught:
        asyncio.run(provider.run(prepared, keys=KeyRing()))
    basic = base64.b64encode(f"team:{SECRET}".encode()).decode()
    assert hostile_http.requests[-1][1]["authorization"] == f"Basic {basic}"
    assert "invalid key" in str(caught.value)
    assert not leaked(str(caught.value), SECRET, basic, basic.rstrip("="))


# -- memory before the checks ----------------------------------------------------------------


def test_text_chunks_are_read_within_a_total_cap() -> None:
    png = text_chunk_png()
    assert len(png) < 600_000  # a small upload

    async def work() -> None:
        chunks = png_text_chunks(png) or {}
        assert sum(len(value) for value in chunks.values()) <= MAX_TEXT_TOTAL
        assert "nothing" in read_png_settings(png).message

    raised, peak, _ = peak_while(work)
    assert raised is None, raised
    assert peak < 40 * 2**20, f"{peak / 2**20:.0f} MB for {len(png) // 1000} KB of PNG"


def test_an_editor_layer_of_81_megapixels_is_refused_from_its_header(tmp_path: Path) -> None:
    layer = tmp_path / "layer.png"
    layer.write_bytes(huge_layer_png())

    async def work() -> None:
        mask_from_editor({"background": None, "layers": [str(layer)] * 10, "composite": None})

    raised, peak, _ = peak_while(work)
    assert isinstance(raised, InvalidParams)
    assert "9000x9000" in raised.fields["mask"]
    assert peak < 10 * 2**20, "no layer was decoded"


# -- where the guard connects ----------------------------------------------------------------


def test_the_guard_connects_only_to_what_it_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: a host that answers a public address and a loopback one is refused, so no
    order of answers can steer the socket home."""

    async def rebinding(host: str, port: int, **_: Any) -> list[Any]:
        return [(2, 1, 6, "", ("93.184.216.34", port)), (2, 1, 6, "", ("127.0.0.1", port))]

    async def work() -> None:
        monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", rebinding)
        await PublicOnlyBackend().connect_tcp("rebind.example.test", 443)

    raised, _, _ = peak_while(work)
    assert isinstance(raised, AddressRefused) and "127.0.0.1" in str(raised)


def test_the_hub_is_trusted_by_origin_not_by_host(hostile_http: HostileServer, monkeypatch, tmp_path) -> None:
    """With HF_ENDPOINT on 127.0.0.1:<port>, only that port is trusted: a LoRA URL on another port
    of the same host is a private address like any other."""
    monkeypatch.delenv("ZIMAGE_ALLOW_PRIVATE_URLS", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", hostile_http.url)
    monkeypatch.setenv("ZIMAGE_LORA_CACHE", str(tmp_path))
    other = f"https://127.0.0.1:{hostile_http.port + 1}/ink.safetensors"
    raised, _, _ = peak_while(lambda: download_loras([LoraRef(ref=other)]))
    assert isinstance(raised, InvalidParams) and "private or local address" in raised.fields["loras"]
    backend = PublicOnlyBackend(frozenset({("127.0.0.1", hostile_http.port)}))

    async def trusted() -> None:
        stream = await backend.connect_tcp("127.0.0.1", hostile_http.port)
        await stream.aclose()

    assert peak_while(trusted)[0] is None, "the owner's own origin is reached"
    assert isinstance(
        peak_while(lambda: backend.connect_tcp("127.0.0.1", hostile_http.port + 1))[0], AddressRefused
    )


def test_space_visitors_get_no_owner_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a Space with no ZIMAGE_SERVER_KEYS, engines (their address, password and GPUs) and any
    hosted API whose address carries a token are the owner's: not usable by a visitor."""
    monkeypatch.setenv("SPACE_ID", "someone/zimage")
    monkeypatch.delenv("ZIMAGE_SERVER_KEYS", raising=False)
    monkeypatch.setenv("ZIMAGE_COMFYUI_URL", f"http://owner:{SECRET}@gpu.example.test:8188")
    monkeypatch.setenv("ZIMAGE_OPENAI_BASE_URL", "http://gpu.example.test:30000/v1")
    monkeypatch.setenv("ZIMAGE_AIMLAPI_BASE_URL", f"https://proxy.example.test/v1?token={SECRET}")
    monkeypatch.setenv("HF_TOKEN", "hf_owner0123456789")
    visitor = KeyRing.for_visitor({"AIML_API_KEY": KEY})
    for provider_id in ("comfyui", "openai-compatible", "aimlapi", "huggingface"):
        status = PROVIDERS[provider_id].availability(visitor)
        assert not status.usable, provider_id
        assert SECRET not in status.reason
    assert "ZIMAGE_SERVER_KEYS=all" in PROVIDERS["comfyui"].availability(visitor).reason
    monkeypatch.setenv("ZIMAGE_SERVER_KEYS", "all")
    owner = KeyRing.for_visitor()
    assert PROVIDERS["openai-compatible"].availability(owner).usable


@pytest.mark.parametrize(
    "url", ["https://[::1/x.png", "https://cdn.example.test:99999/x.png", "https:///x.png"]
)
def test_an_unreadable_url_is_refused_when_the_params_are_checked(url: str) -> None:
    with pytest.raises(ValidationError, match="not a valid https URL"):
        ImageInputs(image=url)


def test_a_signed_input_url_keeps_its_signature_out_of_png_code_and_run_log(tmp_path: Path) -> None:
    from PIL import Image

    from zimage_ui.codegen import copy_as_code
    from zimage_ui.history import HistoryStore
    from zimage_ui.metadata import png_bytes, read_text_chunks

    signature = "a1B2c3D4e5F6g7H8"
    url = f"https://cdn.example.test/in.png?X-Amz-Signature={signature}&X-Amz-Credential=AKIA0123456789"
    lora = f"https://loras.example.test/ink.safetensors?token={signature}"
    params = GenerationParams(
        prompt="a fox", width=512, height=512, seed=3, inputs={"image": url, "strength": 0.5}
    )
    prepared = PROVIDERS["runpod"].prepare(params)
    assert prepared.body["input"]["image"] == url, "the provider itself gets the whole URL"
    curl, code = copy_as_code(prepared)
    png = png_bytes(Image.new("RGB", (8, 8)), prepared.params, prepared.sent, "runpod")
    local = GenerationParams(prompt="a fox", seed=3, inputs={"loras": [{"ref": lora}]})
    _, local_code = copy_as_code(PROVIDERS["diffusers-tiny"].prepare(local))
    store = HistoryStore(tmp_path / "runs.sqlite")
    store.record(provider="runpod", params=params, seed=3, elapsed_s=1.0, error=f"could not fetch {url}")
    store.record(provider="diffusers-tiny", params=local, seed=3, elapsed_s=1.0)
    everything = curl + code + local_code + str(read_text_chunks(png)) + store.export_csv()
    everything += str([row.params for row in store.search()])
    assert "cdn.example.test/in.png" in everything and "loras.example.test" in everything
    assert signature not in everything and "AKIA0123456789" not in everything
