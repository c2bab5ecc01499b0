"""Bounded decoding and the transports built on it, with httpx's mock transport (no network)."""

from __future__ import annotations

import asyncio
import gzip
import zlib

import httpx
import pytest

from zimage_ui.net.decoding import (
    STEP_BYTES,
    BoundedInflater,
    CappedBody,
    EncodingRefused,
    codings,
    single_coding,
)
from zimage_ui.net.transport import BoundedTransport

TEXT = b"the quick brown fox " * 5000


@pytest.mark.parametrize(
    ("header", "found"),
    [
        (None, []),
        ("", []),
        ("identity", []),
        ("GZIP", ["gzip"]),
        ("gzip, identity", ["gzip"]),
        ("br", ["br"]),
    ],
)
def test_codings_are_read_in_order_without_identity(header: str | None, found: list[str]) -> None:
    assert codings(header) == found


@pytest.mark.parametrize(("header", "says"), [("gzip, gzip", "2 times over"), ("zstd", "not asked for")])
def test_stacked_and_unasked_encodings_are_refused(header: str, says: str) -> None:
    with pytest.raises(EncodingRefused, match=says):
        single_coding(header)


@pytest.mark.parametrize(
    ("coding", "data"),
    [
        ("gzip", gzip.compress(TEXT)),
        ("deflate", zlib.compress(TEXT)),
        ("deflate", zlib.compress(TEXT)[2:-4]),  # raw deflate, as some servers send it
    ],
    ids=["gzip", "zlib deflate", "raw deflate"],
)
def test_every_piece_is_at_most_one_step(coding: str, data: bytes) -> None:
    inflater = BoundedInflater(coding)
    pieces = [
        piece for start in range(0, len(data), 1000) for piece in inflater.feed(data[start : start + 1000])
    ]
    pieces += list(inflater.finish())
    assert b"".join(pieces) == TEXT
    assert max(len(piece) for piece in pieces) <= STEP_BYTES


def test_corrupt_data_is_refused() -> None:
    with pytest.raises(EncodingRefused, match="corrupt"):
        list(BoundedInflater("gzip").feed(b"\x1f\x8b\x08\x00garbage that is not deflate"))


def test_a_capped_body_stops_past_its_cap_and_its_deadline() -> None:
    body = CappedBody(10)
    body.count(b"12345")
    with pytest.raises(EncodingRefused, match="larger than"):
        body.count(b"123456")
    with pytest.raises(EncodingRefused, match="still arriving"):
        CappedBody(100, deadline=0.0).count(b"x")


def test_the_transport_asks_for_gzip_and_deflate_and_hands_back_plain_bytes() -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["accept-encoding"])
        return httpx.Response(200, content=gzip.compress(TEXT), headers={"Content-Encoding": "gzip"})

    async def fetch() -> httpx.Response:
        async with httpx.AsyncClient(transport=BoundedTransport(httpx.MockTransport(answer))) as client:
            response = await client.get("https://example.test/")
            await response.aread()
            return response

    response = asyncio.run(fetch())
    assert response.content == TEXT and seen == ["gzip, deflate"]
    assert "content-encoding" not in response.headers


def test_huggingface_hubs_clients_get_the_same_bounds() -> None:
    """huggingface_hub reads whole bodies itself: its transport refuses a bomb, a stack and a body
    past its cap, and hands back plain bytes otherwise."""
    import httpx2

    from zimage_ui.net.transport2 import Bounded

    bodies = {
        "/ok": (gzip.compress(TEXT), "gzip"),
        "/bomb": (gzip.compress(bytes(64 * 2**20)), "gzip"),
        "/stacked": (gzip.compress(gzip.compress(TEXT)), "gzip, gzip"),
        "/big": (bytes(3 * 2**20), ""),
    }

    def answer(request: httpx2.Request) -> httpx2.Response:
        body, coding = bodies[request.url.path]
        return httpx2.Response(200, content=body, headers={"Content-Encoding": coding} if coding else {})

    with httpx2.Client(transport=Bounded(httpx2.MockTransport(answer), 2 * 2**20, 60)) as client:
        assert client.get("https://hub.test/ok").content == TEXT
        for path, says in (("/bomb", "200:1"), ("/stacked", "2 times over"), ("/big", "larger than 2 MB")):
            with pytest.raises(EncodingRefused, match=says):
                client.get(f"https://hub.test{path}").read()
