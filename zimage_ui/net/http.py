"""The one HTTP engine every hosted provider uses (`HttpEngine`; one run's calls: `net.session`).

Timeouts, retries (tenacity), polling with an overall deadline, cancel, and image
downloads live here once; providers only map params to bodies and read answers.
The transport is injectable so tests can use `httpx.MockTransport`.

Retry rules (a submit starts a paid job, so it must never run twice):
- submit (POST): retried only when the provider certainly did not start work:
  429, 503, or a connection that failed before the request was sent;
- fetch (GET: polls, asset look-ups, downloads): retried on timeouts, network
  errors, 429 and any 5xx.

Bounds (one answer can't take the server down): every body is decoded in bounded steps
(`net.decoding`: stacked or unknown compression refused), JSON answers are read as a stream and
refused past a size cap; images are capped in bytes and, before decoding, in pixels
relative to the size asked (Pillow's decompression-bomb warning is a refusal too); image
checks run off the event loop. A cancel call gets a short slice inside the deadline.
URLs a visitor gave go through the address guard (`net.guard`): public addresses only, the
socket opened to the address that was checked.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import Awaitable, Callable, Iterable

import httpx

from zimage_ui.cancel import CancelToken
from zimage_ui.net.answers import (
    DEFAULT_ERROR_PATHS,
    ErrorPath,
)
from zimage_ui.net.guard import origins
from zimage_ui.net.images import MAX_IMAGE_BYTES, NO_PIXEL_LIMIT
from zimage_ui.net.private import private_urls_allowed
from zimage_ui.net.retry import RetryPolicy
from zimage_ui.net.session import CANCEL_CALL_TIMEOUT_S, USER_AGENT, HttpSession
from zimage_ui.net.transport import BoundedTransport, guarded_transport, wrap_client

MAX_JSON_BYTES = 8 * 2**20  # a status answer is a few KB; inline images get their own cap


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """One verified TLS context per process: building one per client costs ~30 ms."""
    return httpx.create_ssl_context()


class HttpEngine:
    """Configuration shared by every run; `session()` opens the clients for one run."""

    def __init__(
        self,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 60.0,
        max_image_bytes: int = MAX_IMAGE_BYTES,
        max_json_bytes: int = MAX_JSON_BYTES,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.transport = transport
        self.retry = retry or RetryPolicy()
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.max_image_bytes = max_image_bytes
        self.max_json_bytes = max_json_bytes
        self.sleep = sleep  # between retries; tests pass a recorder

    def client(
        self,
        headers: dict[str, str] | None = None,
        *,
        follow_redirects: bool = False,
        on_request: Callable[[httpx.Request], Awaitable[None]] | None = None,
        public_only: frozenset[tuple[str, int]] | None = None,
    ) -> httpx.AsyncClient:
        """A client whose every answer is decoded in bounded steps; `public_only`: connect only to
        public addresses but for these trusted (host, port) origins."""
        timeout = httpx.Timeout(self.read_timeout_s, connect=self.connect_timeout_s)
        transport: httpx.AsyncBaseTransport | None = self.transport
        if transport is None and public_only is not None and not private_urls_allowed():
            transport = guarded_transport(_ssl_context(), public_only)
        client = httpx.AsyncClient(
            transport=BoundedTransport(transport) if transport is not None else None,
            headers={"User-Agent": USER_AGENT, **(headers or {})},
            timeout=timeout,
            follow_redirects=follow_redirects,
            verify=_ssl_context(),
            event_hooks={"request": [on_request]} if on_request else None,
        )
        return client if transport is not None else wrap_client(client)

    def session(
        self,
        provider: str,
        *,
        headers: dict[str, str],
        secrets: Iterable[str],
        key_hint: str,
        error_paths: tuple[ErrorPath, ...] = DEFAULT_ERROR_PATHS,
        cancel: CancelToken | None = None,
        max_pixels: int = NO_PIXEL_LIMIT,
        limit_s: float | None = None,
        public_only: bool = False,
        trusted_origins: Iterable[str] = (),
    ) -> HttpSession:
        """`limit_s`: this session's overall deadline instead of `ZIMAGE_TIMEOUT_S`.
        `public_only`: for URLs a visitor gave: every request, redirects included, must go to a
        public address (`refuse_private_address`, then the guard under the connection), except to
        `trusted_origins` (the owner's own endpoints: by host and port, never the host alone)."""
        session = HttpSession(
            self, provider, headers, tuple(secrets), key_hint, error_paths, cancel, max_pixels
        )
        if public_only:
            session._public_only = origins(trusted_origins)
        if limit_s is not None and limit_s > 0:
            session._limit_s = limit_s
            session._cancel_slice_s = min(CANCEL_CALL_TIMEOUT_S, limit_s / 10)
        return session
