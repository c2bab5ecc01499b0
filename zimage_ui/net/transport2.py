"""huggingface_hub's httpx2 transports, decoding in bounded steps with a cap on each whole body.

huggingface_hub reads whole bodies itself (`response.content`, `response.json()`), so besides
decoding one bounded step at a time (`decoding`), each body is refused past its cap, and past its
deadline while it still trickles in.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx2

from zimage_ui.net.decoding import (
    ACCEPT_ENCODING,
    CappedBody,
    EncodingRefused,
    checked_coding,
    inflate_async,
    inflate_sync,
    plain_headers,
    single_coding,
)


class _Decoded(httpx2.SyncByteStream):
    def __init__(self, raw: Any, coding: str | None, cap: CappedBody) -> None:
        self.raw, self.coding, self.cap = raw, coding, cap

    def __iter__(self) -> Iterator[bytes]:
        pieces = inflate_sync(iter(self.raw), self.coding) if self.coding else iter(self.raw)
        for piece in pieces:
            yield self.cap.count(piece)

    def close(self) -> None:
        self.raw.close()


class _AsyncDecoded(httpx2.AsyncByteStream):
    def __init__(self, raw: Any, coding: str | None, cap: CappedBody) -> None:
        self.raw, self.coding, self.cap = raw, coding, cap

    async def __aiter__(self) -> AsyncIterator[bytes]:
        pieces = inflate_async(aiter(self.raw), self.coding) if self.coding else aiter(self.raw)
        async for piece in pieces:
            yield self.cap.count(piece)

    async def aclose(self) -> None:
        await self.raw.aclose()


def _decoded(
    response: httpx2.Response,
    coding: str | None,
    stream: type[_Decoded | _AsyncDecoded],
    cap: int,
    limit_s: float,
) -> httpx2.Response:
    """The response with its body decoded by `stream`, capped at `cap` bytes and `limit_s` seconds."""
    body = CappedBody(cap, deadline=time.monotonic() + limit_s)
    headers = plain_headers(response.headers.multi_items()) if coding else response.headers
    return httpx2.Response(
        response.status_code,
        headers=headers,
        stream=stream(response.stream, coding, body),
        extensions=response.extensions,
    )


class Bounded(httpx2.BaseTransport):
    """Asks for gzip or deflate only, decodes in bounded steps, refuses a body past `cap` bytes or
    still arriving `limit_s` after its headers."""

    def __init__(self, inner: httpx2.BaseTransport, cap: int, limit_s: float) -> None:
        self.inner, self.cap, self.limit_s = inner, cap, limit_s

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        request.headers["Accept-Encoding"] = ACCEPT_ENCODING
        response = self.inner.handle_request(request)
        try:
            coding = single_coding(response.headers.get("content-encoding"))
        except EncodingRefused:
            response.close()
            raise
        return _decoded(response, coding, _Decoded, self.cap, self.limit_s)

    def close(self) -> None:
        self.inner.close()


class AsyncBounded(httpx2.AsyncBaseTransport):
    """The async twin of `Bounded`."""

    def __init__(self, inner: httpx2.AsyncBaseTransport, cap: int, limit_s: float) -> None:
        self.inner, self.cap, self.limit_s = inner, cap, limit_s

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        request.headers["Accept-Encoding"] = ACCEPT_ENCODING
        response = await self.inner.handle_async_request(request)
        coding = await checked_coding(response)
        return _decoded(response, coding, _AsyncDecoded, self.cap, self.limit_s)

    async def aclose(self) -> None:
        await self.inner.aclose()
