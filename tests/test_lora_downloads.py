"""LoRAs by https URL or hub id on the local model: downloaded once through the HTTP engine, cached.

A real loopback HTTP server stands in for the hub (`HF_ENDPOINT` points at it) and for a LoRA
host: an https URL reaches it through a transport that sends `https://loras.test` to loopback.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import pytest

from zimage_ui import lora_downloads
from zimage_ui.errors import InvalidParams
from zimage_ui.image_inputs import load_inputs
from zimage_ui.lora_downloads import cached_path, download_loras, pick_file
from zimage_ui.net.http import HttpEngine
from zimage_ui.params import GenerationParams, LoraRef, parse_params
from zimage_ui.runner import generate_one

TOKEN = "hf_secret_token_0123456789"
BODY = b"\x08\x00\x00\x00\x00\x00\x00\x00{}      " + b"w" * 3000  # any bytes: only hashed here


@dataclass
class Hub:
    """What the loopback server serves (path -> bytes or JSON) and every request it saw."""

    files: dict[str, bytes] = field(default_factory=dict)
    seen: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Authorization)
    sent: int = 0
    url: str = ""
    refused: set[str] = field(default_factory=set)  # paths answered 401, echoing the Authorization header


def _handler(hub: Hub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            return None

        def do_GET(self) -> None:
            hub.seen.append((self.path, self.headers.get("Authorization")))
            if self.path == "/huge":  # no length: streams until the client goes away
                self.send_response(200)
                self.send_header("Connection", "close")
                self.end_headers()
                try:
                    for _ in range(64):  # up to 64 MB; the client stops long before
                        self.wfile.write(b"x" * 2**20)
                        hub.sent += 2**20
                except OSError:
                    pass
                return
            if self.path in hub.refused:
                echo = json.dumps({"error": f"invalid credentials: {self.headers.get('Authorization')}"})
                self.send_response(401)
                self.send_header("Content-Length", str(len(echo)))
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(echo.encode())
                return
            data = hub.files.get(self.path)
            if data is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Hub]:
    state = Hub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("HF_ENDPOINT", state.url)
    monkeypatch.setenv("ZIMAGE_LORA_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    yield state
    server.shutdown()
    server.server_close()


class _ToLoopback(httpx.AsyncBaseTransport):
    """`https://loras.test/...` answered by the loopback server: a real socket, no TLS."""

    def __init__(self, base: str) -> None:
        self._base = httpx.URL(base)
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "loras.test":
            request.url = request.url.copy_with(scheme="http", host=self._base.host, port=self._base.port)
        return await self._inner.handle_async_request(request)


def _engine(hub: Hub) -> HttpEngine:
    return HttpEngine(transport=_ToLoopback(hub.url))


def _listing(*names: str) -> bytes:
    return json.dumps({"id": "x", "siblings": [{"rfilename": name} for name in names]}).encode()


async def test_a_url_is_downloaded_once_then_read_from_the_cache(hub: Hub):
    hub.files["/files/style.safetensors"] = BODY
    lora = LoraRef(ref="https://loras.test/files/style.safetensors", scale=0.7)
    paths = await download_loras([lora], _engine(hub))
    assert Path(paths[lora.ref]).read_bytes() == BODY
    assert Path(paths[lora.ref]) == cached_path(lora)
    assert hub.seen == [("/files/style.safetensors", None)]
    again = await download_loras([lora], _engine(hub))
    assert again == paths and len(hub.seen) == 1  # the second run: no request at all
    params = parse_params(prompt="p", inputs={"loras": [lora.model_dump()]})
    [read] = load_inputs(params, lora_paths=again).loras
    assert (read.name, read.scale, read.path) == ("style", 0.7, paths[lora.ref])


async def test_no_half_download_is_left_and_the_cap_is_checked_as_it_streams(hub: Hub, monkeypatch):
    monkeypatch.setattr(lora_downloads, "MAX_LORA_BYTES", 3 * 2**20)
    lora = LoraRef(ref="https://loras.test/huge")
    with pytest.raises(InvalidParams, match="larger than 3 MB: refused") as caught:
        await download_loras([lora], _engine(hub))
    assert "loras" in caught.value.fields
    assert hub.sent < 16 * 2**20  # stopped long before the 64 MB the server would send
    assert not any(Path(cached_path(lora).parent).iterdir())  # no part file, no cache entry


async def test_a_declared_length_over_the_cap_is_refused_before_reading(hub: Hub, monkeypatch):
    monkeypatch.setattr(lora_downloads, "MAX_LORA_BYTES", 1000)
    hub.files["/big.safetensors"] = BODY
    lora = LoraRef(ref="https://loras.test/big.safetensors")
    with pytest.raises(InvalidParams, match="is larger than"):
        await download_loras([lora], _engine(hub))
    assert not cached_path(lora).exists()


async def test_a_hub_repo_is_listed_and_its_only_safetensors_downloaded_with_the_token(hub: Hub):
    hub.files["/api/models/owner/style"] = _listing("README.md", "style_v2.safetensors")
    hub.files["/owner/style/resolve/main/style_v2.safetensors"] = BODY
    lora = LoraRef(ref="owner/style")
    paths = await download_loras([lora], token=TOKEN)  # the default engine: HF_ENDPOINT is loopback http
    assert Path(paths["owner/style"]).read_bytes() == BODY
    assert hub.seen == [
        ("/api/models/owner/style", f"Bearer {TOKEN}"),
        ("/owner/style/resolve/main/style_v2.safetensors", f"Bearer {TOKEN}"),
    ]
    await download_loras([lora], token=TOKEN)
    assert len(hub.seen) == 2  # cached by the id: not even the listing again


async def test_the_token_goes_to_the_hub_only(hub: Hub):
    hub.files["/elsewhere.safetensors"] = BODY
    await download_loras([LoraRef(ref="https://loras.test/elsewhere.safetensors")], _engine(hub), token=TOKEN)
    assert hub.seen == [("/elsewhere.safetensors", None)]


async def test_a_run_sends_the_token_only_where_the_key_policy_lets_the_visitor_use_it(hub: Hub, monkeypatch):
    from zimage_ui.providers.base import KeyRing

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    hub.files["/a/b/resolve/main/c.safetensors"] = b"not a lora"  # refused by the loader: fine here
    params = parse_params(prompt="p", width=256, height=256, inputs={"loras": [{"ref": "a/b/c.safetensors"}]})
    await generate_one("diffusers-tiny", params, keys=KeyRing(use_env=False))  # ZIMAGE_SERVER_KEYS=none
    assert hub.seen == [("/a/b/resolve/main/c.safetensors", None)]
    cached_path(params.loras[0]).unlink()
    await generate_one("diffusers-tiny", params, keys=KeyRing())
    assert hub.seen[-1] == ("/a/b/resolve/main/c.safetensors", f"Bearer {TOKEN}")


async def test_a_hub_file_id_needs_no_listing(hub: Hub):
    hub.files["/owner/pack/resolve/main/b.safetensors"] = BODY
    paths = await download_loras([LoraRef(ref="owner/pack/b.safetensors")])
    assert Path(paths["owner/pack/b.safetensors"]).read_bytes() == BODY
    assert [path for path, _ in hub.seen] == ["/owner/pack/resolve/main/b.safetensors"]


async def test_an_ambiguous_repo_is_refused_with_its_files_listed(hub: Hub):
    hub.files["/api/models/owner/pack"] = _listing("a.safetensors", "b.safetensors", "x.json")
    with pytest.raises(InvalidParams) as caught:
        await download_loras([LoraRef(ref="owner/pack")])
    message = caught.value.fields["loras"]
    assert "2 .safetensors files (a.safetensors, b.safetensors)" in message
    assert "'owner/pack/FILE.safetensors'" in message
    assert pick_file("o/n", ["a.safetensors", "pytorch_lora_weights.safetensors"]) == (
        "pytorch_lora_weights.safetensors"
    )


async def test_a_refused_token_never_appears_in_the_message(hub: Hub):
    with pytest.raises(InvalidParams) as caught:  # 404: the repo is not there (or not visible)
        await download_loras([LoraRef(ref="owner/gone")], token=TOKEN)
    assert TOKEN not in str(caught.value) and "HTTP 404" in str(caught.value)
    hub.files["/api/models/owner/gated"] = _listing("g.safetensors")  # listed, the file not served
    with pytest.raises(InvalidParams) as caught:
        await download_loras([LoraRef(ref="owner/gated")], token=TOKEN)
    assert TOKEN not in str(caught.value) and "HTTP 404" in str(caught.value)
    hub.refused |= {"/api/models/owner/private", "/owner/private/resolve/main/p.safetensors"}
    for ref in ("owner/private", "owner/private/p.safetensors"):  # the listing, then the file itself
        with pytest.raises(InvalidParams) as caught:
            await download_loras([LoraRef(ref=ref)], token=TOKEN)
        assert "HTTP 401" in str(caught.value) and "HF_TOKEN" in str(caught.value)
        assert TOKEN not in str(caught.value), caught.value


async def test_a_hub_id_cannot_climb_out_of_its_repo(hub: Hub):
    with pytest.raises(InvalidParams, match="is not a hub repo id"):
        await download_loras([LoraRef(ref="owner/../x.safetensors")])
    assert hub.seen == []


def test_a_provider_model_id_is_refused_by_the_local_model():
    params = parse_params(prompt="p", inputs={"loras": [{"ref": "model_abc123"}]})
    from zimage_ui.providers import get_provider

    with pytest.raises(InvalidParams, match="a provider's own LoRA model id, not a Hugging Face repo"):
        get_provider("diffusers-tiny").prepare(params)


def _params(ref: str) -> GenerationParams:
    inputs = {"loras": [{"ref": ref, "scale": 1.0}]}
    return parse_params(prompt="a red fox", width=256, height=256, seed=7, inputs=inputs)


async def test_a_downloaded_tiny_lora_changes_the_image_as_the_local_file_does(hub: Hub, tmp_path: Path):
    from tests.test_tiny_img2img import _tiny_lora

    local = tmp_path / "tiny.safetensors"
    _tiny_lora(local)
    hub.files["/api/models/me/tiny"] = _listing("tiny.safetensors")
    hub.files["/me/tiny/resolve/main/tiny.safetensors"] = local.read_bytes()
    images = {}
    for name, ref in {"file": str(local), "hub": "me/tiny"}.items():
        outcome = await generate_one("diffusers-tiny", _params(ref))
        assert outcome.ok, outcome.error
        assert outcome.result is not None
        images[name] = np.asarray(outcome.result.images[0]).astype(np.float64)
    base = await generate_one("diffusers-tiny", _params(str(local)).model_copy(update={"inputs": None}))
    assert base.result is not None
    assert np.array_equal(images["file"], images["hub"])
    assert np.abs(images["hub"] - np.asarray(base.result.images[0]).astype(np.float64)).mean() > 1
    assert len(hub.seen) == 2  # listed and downloaded once


async def test_the_cache_is_trimmed_oldest_first_and_never_drops_the_runs_own(hub: Hub, monkeypatch):
    import os

    old, new = (
        LoraRef(ref="https://loras.test/files/old.safetensors"),
        LoraRef(ref="https://loras.test/files/new.safetensors"),
    )
    hub.files["/files/old.safetensors"] = BODY
    hub.files["/files/new.safetensors"] = BODY
    first = await download_loras([old], _engine(hub))
    os.utime(first[old.ref], (1, 1))  # long unused
    monkeypatch.setenv("ZIMAGE_LORA_CACHE_GB", str(1.5 * len(BODY) / 2**30))  # room for one file
    second = await download_loras([new], _engine(hub))
    assert Path(second[new.ref]).is_file() and not Path(first[old.ref]).exists()
    monkeypatch.setenv("ZIMAGE_LORA_CACHE_GB", "0")  # no room at all: this run's files still stay
    both = await download_loras([old, new], _engine(hub))
    assert all(Path(path).is_file() for path in both.values())
