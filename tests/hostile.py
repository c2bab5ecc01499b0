"""A hostile HTTP server on 127.0.0.1: what a misbehaving provider or a visitor's URL can answer.

Raw asyncio, so every header and every byte's timing is ours to choose. Paths:

- `/stacked.png`  `Content-Encoding: gzip, gzip`, a few KB that inflate to `BOMB_BYTES` twice over
- `/bomb.json`    `Content-Encoding: gzip`, one layer: a few hundred KB inflating to `BOMB_BYTES`
- `/bomb.png`     the same body on an image path
- `/dense.json`   12 MB of hex digits gzipped about 2:1 (no bomb by its ratio; past the JSON cap)
- `/br.png`       `Content-Encoding: br` (never asked for)
- `/endless`      a body that never ends, as fast as the client reads
- `/trickle`      a byte every `TRICKLE_S`, forever
- `/stall`        headers never sent
- `/echo`         401 whose message repeats pieces of the Authorization header it got
- `/chunks.png`   a small PNG with `TEXT_CHUNKS` zTXt chunks of 1 MB each once inflated
- `/layer.png`    a PNG of `LAYER_SIDE`x`LAYER_SIDE` pixels in a few hundred KB
- `/loop`         a redirect to itself
- anything else   404

Paths are matched on their first segment, so `/bomb.json/v1/images/generations` is `/bomb.json`:
a provider's base URL can point at any of them.

Every connection ends by itself after `HOLD_S`, so nothing outlives a test.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import gzip
import io
import json
import ssl
import struct
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import trustme
from PIL import Image

BOMB_BYTES = 512 * 2**20
TEXT_CHUNKS = 400
LAYER_SIDE = 9000
TRICKLE_S = 0.2
HOLD_S = 30.0


@functools.cache
def zero_gzip(size: int = BOMB_BYTES) -> bytes:
    """`size` zero bytes, gzipped (about 1/1000 of the size), made in a fraction of a second: one
    MB is deflated once after a full flush (so every copy of it is the same bytes) and repeated,
    then an empty final block and the gzip trailer (CRC-32 and length) close the stream."""
    block = bytes(2**20)
    squeeze = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    segment = squeeze.compress(block) + squeeze.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(size // len(block)):
        crc = zlib.crc32(block, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    trailer = struct.pack("<II", crc, size & 0xFFFFFFFF)
    return header + segment * (size // len(block)) + b"\x03\x00" + trailer


@functools.cache
def dense_gzip(size: int = 12 * 2**20) -> bytes:
    """`size` bytes of hex digits from a seeded generator, gzipped: about 2:1, like real answers."""
    import random

    text = random.Random(7).randbytes(size // 2).hex().encode()
    return gzip.compress(text, 1)


@functools.cache
def stacked_gzip() -> bytes:
    return gzip.compress(zero_gzip(), 9)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


@functools.cache
def text_chunk_png(count: int = TEXT_CHUNKS) -> bytes:
    """A 1x1 PNG with `count` zTXt chunks, each 1 MB of text once inflated."""
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, format="PNG")
    png = buffer.getvalue()
    text = zlib.compress(b"a" * 2**20, 9)
    chunks = b"".join(_chunk(b"zTXt", f"k{index}".encode() + b"\0\0" + text) for index in range(count))
    return png[:33] + chunks + png[33:]  # after IHDR (8 + 25 bytes)


@functools.cache
def huge_layer_png(side: int = LAYER_SIDE) -> bytes:
    """An RGBA PNG of side x side transparent pixels, built without holding its pixels."""
    header = struct.pack(">IIBBBBB", side, side, 8, 6, 0, 0, 0)
    squeeze = zlib.compressobj(9)
    row = bytes(1 + side * 4)
    data = b"".join(squeeze.compress(row) for _ in range(side)) + squeeze.flush()
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


class HostileServer:
    """`with HostileServer() as server:` serves on `server.url` from a background thread; with
    `tls`, over https with a certificate for 127.0.0.1 from a test CA (`client_context()` trusts
    it), as a visitor's URL must be."""

    def __init__(self, tls: bool = False) -> None:
        self.ca = trustme.CA() if tls else None
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="hostile")
        self.port = 0
        self.requests: list[tuple[str, dict[str, str]]] = []  # (path, headers) of each request

    @property
    def url(self) -> str:
        return f"{'https' if self.ca else 'http'}://127.0.0.1:{self.port}"

    def client_context(self) -> ssl.SSLContext:
        """A client TLS context that trusts this server's certificate (and nothing else)."""
        assert self.ca is not None
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        self.ca.configure_trust(context)
        return context

    def _server_context(self) -> ssl.SSLContext | None:
        if self.ca is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        return context

    def __enter__(self) -> HostileServer:
        zero_gzip(), stacked_gzip(), dense_gzip()  # made before any test timing starts
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self._server_context()), self.loop
        ).result(10)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *_: object) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    async def _close(self) -> None:
        """Stop listening and end every connection still held (a stall, a trickle)."""
        self.server.close()
        held = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in held:
            task.cancel()
        await asyncio.gather(*held, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await asyncio.wait_for(self._answer(reader, writer), HOLD_S)
        except (asyncio.TimeoutError, ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        line, *rest = head.decode("latin-1").split("\r\n")
        path = line.split(" ")[1].split("?")[0]
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in rest if h)}
        if int(headers.get("content-length", "0") or 0):
            await reader.readexactly(int(headers["content-length"]))
        self.requests.append((path, headers))
        path = "/" + path.split("/")[1]  # routed by the first segment: a base URL can point at one
        send = functools.partial(self._send, writer)
        if path == "/stacked.png":
            await send(200, stacked_gzip(), "image/png", encoding="gzip, gzip")
        elif path == "/dense.json":
            await send(200, dense_gzip(), "application/json", encoding="gzip")
        elif path in {"/bomb.json", "/bomb.png"}:
            kind = "application/json" if path.endswith("json") else "image/png"
            await send(200, zero_gzip(), kind, encoding="gzip")
        elif path == "/br.png":
            await send(200, b"\x0b\x02\x80hello\x03", "image/png", encoding="br")
        elif path == "/endless":
            await self._stream(writer, bytes(2**16), 0.0)
        elif path == "/trickle":
            await self._stream(writer, b" ", TRICKLE_S)
        elif path == "/stall":
            await asyncio.sleep(HOLD_S)
        elif path == "/echo":
            await send(401, json.dumps({"message": echo(headers.get("authorization", ""))}).encode())
        elif path == "/chunks.png":
            await send(200, text_chunk_png(), "image/png")
        elif path == "/layer.png":
            await send(200, huge_layer_png(), "image/png")
        elif path == "/loop":
            await send(302, b"", extra={"Location": "/loop"})
        else:
            await send(404, b'{"message": "no such path"}')

    @staticmethod
    async def _send(
        writer: asyncio.StreamWriter,
        status: int,
        body: bytes,
        kind: str = "application/json",
        *,
        encoding: str | None = None,
        extra: dict[str, str] | None = None,
    ) -> None:
        headers = {"Content-Type": kind, "Content-Length": str(len(body)), **(extra or {})}
        if encoding:
            headers["Content-Encoding"] = encoding
        lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        writer.write(f"HTTP/1.1 {status} X\r\n{lines}Connection: close\r\n\r\n".encode() + body)
        await writer.drain()

    @staticmethod
    async def _stream(writer: asyncio.StreamWriter, piece: bytes, every_s: float) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nConnection: close\r\n\r\n")
        while True:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(every_s)


def echo(authorization: str) -> str:
    """The pieces of a credential a careless provider repeats: a 14-character prefix, the last 10
    characters, all but the last character, and a Basic token without its `=` padding."""
    scheme, _, token = authorization.partition(" ")
    pieces = [token[:14], token[-10:], token[:-1], token.rstrip("=")]
    if scheme.lower() == "basic":
        decoded = base64.b64decode(token + "==").decode("latin-1")
        pieces += [decoded[:14], decoded.partition(":")[2][-10:]]
    return f"invalid key {' / '.join(pieces)}"


def pieces_of(secret: str) -> list[str]:
    """The pieces of a secret no message may hold: every run of 8 characters that carries its
    randomness (a digit, or both cases), and every run of 12 ("sk-hosti" is a word, not a key)."""
    runs = [secret[start : start + 8] for start in range(len(secret) - 7)]
    random = [run for run in runs if any(c.isdigit() for c in run) or (run.lower() != run != run.upper())]
    return random + [secret[start : start + 12] for start in range(len(secret) - 11)]


def leaked(text: str, *secrets: str) -> list[str]:
    return [piece for secret in secrets for piece in pieces_of(secret) if piece in text]


@contextmanager
def hostile() -> Iterator[HostileServer]:
    with HostileServer() as server:
        yield server
