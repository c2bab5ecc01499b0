"""Content-Encoding decoded with a bounded output per step, for every body read from the network.

httpx (and huggingface_hub's httpx2) inflate each received chunk in one call with no output limit:
a 1 KB `Content-Encoding: gzip, gzip` body becomes gigabytes before any size cap can look at it.
Here the transports hand back the raw bytes and this module inflates them `STEP_BYTES` at a time
(`zlib`'s `max_length`), so a reader's cap is checked after each step and an answer is cut as soon
as it passes the cap, whatever its compression ratio.

Only one layer of `gzip` or `deflate` is decoded: a stacked (`gzip, gzip`) or unknown encoding
(`br`, `zstd`: never asked for, since every client sends `Accept-Encoding: gzip, deflate`) is
refused before a byte is read, and a body that inflates more than `MAX_RATIO` times its compressed
size is refused after its first megabyte, long before it reaches any cap. This module imports
nothing from the app.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

STEP_BYTES = 64 * 2**10  # the most one decoding step may produce
YIELD_EVERY = 16  # steps (1 MB) between turns of the event loop
# Real answers inflate a few times at most (JSON ~10:1, base64 and images ~1:1); a bomb 1000:1.
MAX_RATIO = 200
RATIO_FROM_BYTES = 2**20  # small bodies may compress better: judged once past 1 MB
ACCEPT_ENCODING = "gzip, deflate"  # what every client asks for; anything else is refused
_DROPPED_HEADERS = {"content-encoding", "content-length"}  # no longer true of the decoded body


class EncodingRefused(Exception):
    """A body whose compression can't be decoded safely (stacked, unknown or corrupt)."""


def codings(header: str | None) -> list[str]:
    """The encodings of a `Content-Encoding` header, in the order they were applied; `identity`
    left out."""
    found = [part.strip().lower() for part in (header or "").split(",")]
    return [coding for coding in found if coding and coding != "identity"]


async def checked_coding(response: Any) -> str | None:
    """An answer's one content coding (None: identity); a refused one closes the answer (an httpx
    or an httpx2 response) before it is raised, so nothing of it is read."""
    try:
        return single_coding(response.headers.get("content-encoding"))
    except EncodingRefused:
        await response.aclose()
        raise


def single_coding(header: str | None) -> str | None:
    """The one encoding to undo (None: the body is plain), or EncodingRefused naming the problem."""
    found = codings(header)
    if not found:
        return None
    if len(found) > 1:
        raise EncodingRefused(f"the answer is compressed {len(found)} times over ({', '.join(found)[:60]})")
    if found[0] not in {"gzip", "x-gzip", "deflate"}:
        raise EncodingRefused(f"the answer uses an encoding that was not asked for ({found[0][:30]})")
    return found[0]


class BoundedInflater:
    """One gzip or deflate stream, inflated at most `step` bytes per yielded piece, and refused once
    past `RATIO_FROM_BYTES` if it inflates more than `MAX_RATIO` times its compressed size."""

    def __init__(self, coding: str, step: int = STEP_BYTES) -> None:
        self.coding = coding
        self.step = step
        self._first = True
        self._fed = 0  # compressed bytes given
        self._made = 0  # bytes produced
        self._inflate = self._new(zlib.MAX_WBITS | 16 if coding in {"gzip", "x-gzip"} else zlib.MAX_WBITS)

    @staticmethod
    def _new(wbits: int) -> zlib._Decompress:
        return zlib.decompressobj(wbits)

    def feed(self, data: bytes) -> Iterator[bytes]:
        """The decoded pieces of `data`, each at most `step` bytes."""
        self._fed += len(data)
        while data:
            try:
                piece = self._inflate.decompress(data, self.step)
            except zlib.error:
                if self._first and self.coding == "deflate":  # a raw deflate stream, as httpx allows
                    self._first = False
                    self._inflate = self._new(-zlib.MAX_WBITS)
                    continue
                raise EncodingRefused(f"the answer's {self.coding} data is corrupt") from None
            self._first = False
            data = self._inflate.unconsumed_tail
            if self._inflate.eof:
                data = b""  # trailing bytes after the stream's end are ignored, as httpx does
            if piece:
                self._made += len(piece)
                consumed = self._fed - len(data)  # what produced it: the input given less the rest
                if self._made > RATIO_FROM_BYTES and self._made > MAX_RATIO * consumed:
                    raise EncodingRefused(
                        f"the answer inflates more than {MAX_RATIO}:1 (a compression bomb, not an "
                        "answer or an image)"
                    )
                yield piece

    def finish(self) -> Iterator[bytes]:
        """What remains once the input ended (a few bytes at most: all input was consumed)."""
        try:
            rest = self._inflate.flush()
        except zlib.error:
            raise EncodingRefused(f"the answer's {self.coding} data is corrupt") from None
        for start in range(0, len(rest), self.step):
            yield rest[start : start + self.step]


async def inflate_async(raw: AsyncIterator[bytes], coding: str) -> AsyncIterator[bytes]:
    """The decoded pieces of an async body; every `YIELD_EVERY` pieces the event loop gets a turn,
    so inflating one dense chunk never holds up other users."""
    inflater = BoundedInflater(coding)
    count = 0
    async for chunk in raw:
        for piece in inflater.feed(chunk):
            yield piece
            count += 1
            if count % YIELD_EVERY == 0:
                await asyncio.sleep(0)
    for piece in inflater.finish():
        yield piece


def inflate_sync(raw: Iterable[bytes], coding: str) -> Iterator[bytes]:
    inflater = BoundedInflater(coding)
    for chunk in raw:
        yield from inflater.feed(chunk)
    yield from inflater.finish()


def plain_headers(items: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """A response's headers once its body is decoded: no Content-Encoding, no Content-Length."""
    return [(name, value) for name, value in items if name.lower() not in _DROPPED_HEADERS]


class BodyTooSlow(EncodingRefused):
    """A body still arriving at its deadline (a trickle: one byte now and then never trips a read
    timeout)."""


class CappedBody:
    """Counts a body's decoded bytes and refuses it past `cap`, or still arriving after
    `deadline` (time.monotonic()); for clients that read whole bodies themselves, as
    huggingface_hub does."""

    def __init__(self, cap: int, what: str = "answer", deadline: float | None = None) -> None:
        self.cap = cap
        self.what = what
        self.deadline = deadline
        self.size = 0

    def count(self, piece: bytes) -> bytes:
        self.size += len(piece)
        if self.size > self.cap:
            raise EncodingRefused(f"the {self.what} is larger than {self.cap / 2**20:g} MB")
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise BodyTooSlow(f"the {self.what} was still arriving at its deadline")
        return piece
