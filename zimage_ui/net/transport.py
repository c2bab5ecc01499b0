"""Transports that every client of the app sends through: bodies decoded in bounded steps
(`decoding`), an optional cap on a whole body, and the address guard (`guard`) underneath.

`BoundedTransport` wraps an httpx transport; `transport2` does the same for huggingface_hub's
httpx2 clients.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from typing import Any

import httpcore
import httpx

from zimage_ui.net.decoding import (
    ACCEPT_ENCODING,
    CappedBody,
    checked_coding,
    inflate_async,
    plain_headers,
)
from zimage_ui.net.guard import PublicOnlyBackend


class _AsyncDecoded(httpx.AsyncByteStream):
    def __init__(self, raw: Any, coding: str | None, cap: CappedBody | None) -> None:
        self.raw, self.coding, self.cap = raw, coding, cap

    async def __aiter__(self) -> AsyncIterator[bytes]:
        pieces = inflate_async(aiter(self.raw), self.coding) if self.coding else aiter(self.raw)
        async for piece in pieces:
            yield self.cap.count(piece) if self.cap else piece

    async def aclose(self) -> None:
        await self.raw.aclose()


class BoundedTransport(httpx.AsyncBaseTransport):
    """Asks for gzip or deflate only and decodes the answer in bounded steps (`cap`: refuse a body
    past that many decoded bytes)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, cap: int | None = None) -> None:
        self.inner = inner
        self.cap = cap

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.headers["Accept-Encoding"] = ACCEPT_ENCODING
        response = await self.inner.handle_async_request(request)
        coding = await checked_coding(response)
        if coding is None and self.cap is None:
            return response
        headers = plain_headers(response.headers.multi_items()) if coding else response.headers
        cap = CappedBody(self.cap) if self.cap else None
        return httpx.Response(
            response.status_code,
            headers=headers,
            stream=_AsyncDecoded(response.stream, coding, cap),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self.inner.aclose()


def guarded_transport(
    ssl_context: ssl.SSLContext, trusted: frozenset[tuple[str, int]]
) -> httpx.AsyncHTTPTransport:
    """httpx's own transport, connecting through the address guard (no proxy: a proxy would
    connect for us, past the check)."""
    transport = httpx.AsyncHTTPTransport(verify=ssl_context, trust_env=False)
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=ssl_context, network_backend=PublicOnlyBackend(trusted)
    )
    return transport


def wrap_client(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """Put every transport of an httpx client (its default and any proxy mounts it made from the
    environment) behind `BoundedTransport`."""
    client._transport = BoundedTransport(client._transport)
    client._mounts = {
        pattern: BoundedTransport(transport) if transport is not None else None
        for pattern, transport in client._mounts.items()
    }
    return client
