"""One run's HTTP: submit, poll, fetch and download within one deadline, with retries, cancel,
uploads and a websocket, every answer read bounded (`net.decoding`) and every visitor URL
through the address guard (`net.guard`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import httpx
from PIL import Image
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from zimage_ui import env
from zimage_ui.cancel import CancelToken
from zimage_ui.errors import (
    AuthError,
    Cancelled,
    MalformedResponse,
    ProviderError,
    ProviderTimeout,
)
from zimage_ui.net.answers import (
    ErrorPath,
    api_message,
    error_for_status,
    redacted_detail,
)
from zimage_ui.net.decoding import EncodingRefused
from zimage_ui.net.guard import AddressRefused, origin
from zimage_ui.net.images import NO_PIXEL_LIMIT, b64_payload, decode_image
from zimage_ui.net.private import _private_message, refuse_private_address
from zimage_ui.net.retry import RetryableStatus, backoff_s, fetch_retryable, submit_retryable

if TYPE_CHECKING:
    from zimage_ui.net.http import HttpEngine

log = logging.getLogger(__name__)
_WS_LOG = logging.getLogger(f"{__name__}.websocket")
_WS_LOG.setLevel(logging.INFO)  # its DEBUG lines would list the handshake's headers, key included

T = TypeVar("T")

UPLOAD_CHUNK_BYTES = 2**20  # a file is uploaded 1 MB at a time, never read whole
UPLOAD_ANSWER_BYTES = 2**16  # what an upload host answers to a PUT: an ETag, a short XML
CANCEL_CALL_TIMEOUT_S = 2.0  # at most this slice of the deadline is kept for a cancel call
USER_AGENT = "zimage-ui"


def timeout_s() -> float:
    """Overall deadline of one run, from `ZIMAGE_TIMEOUT_S` (read at call time)."""
    return float(env.get("ZIMAGE_TIMEOUT_S"))


FIRST_POLL_S = 0.25  # the first pause between status checks
POLL_BACKOFF = 1.5  # each pause this much longer than the last, up to `poll_interval_s()`


def poll_interval_s() -> float:
    """The longest pause between status checks, `ZIMAGE_POLL_INTERVAL_S` (read at call time)."""
    return float(env.get("ZIMAGE_POLL_INTERVAL_S"))


class HttpSession:
    """The clients, deadline and cancel wiring of one run (an async context manager)."""

    _api: httpx.AsyncClient  # carries the provider's Authorization header
    _public_only: frozenset[tuple[str, int]] | None = None  # set: public addresses only, but these
    _bare: httpx.AsyncClient  # downloads: never the provider's key

    def __init__(
        self,
        engine: HttpEngine,
        provider: str,
        headers: dict[str, str],
        secrets: tuple[str, ...],
        key_hint: str,
        error_paths: tuple[ErrorPath, ...],
        cancel: CancelToken | None,
        max_pixels: int = NO_PIXEL_LIMIT,
    ) -> None:
        self.engine = engine
        self._max_pixels = max_pixels
        self.provider = provider
        self._secrets = secrets
        self._key_hint = key_hint
        self._error_paths = error_paths
        self._cancel = cancel or CancelToken()
        self._headers = headers
        self._limit_s = timeout_s()
        self._cancel_slice_s = min(CANCEL_CALL_TIMEOUT_S, self._limit_s / 10)
        self._deadline = 0.0  # work stops here, leaving the cancel slice inside the limit
        self._sent = False  # a submit went out: a job may exist even without an id
        self._cancel_url: str | None = None
        self._cancel_calls: list[tuple[str, Any]] = []  # (url, JSON body): a cancel in several calls
        self._sockets: list[Any] = []  # websockets opened by `websocket()`, closed with the session
        self._job_known = False

    async def __aenter__(self) -> HttpSession:
        self._deadline = asyncio.get_running_loop().time() + self._limit_s - self._cancel_slice_s
        guard = self._refuse_private if self._public_only is not None else None
        only = self._public_only
        self._api = self.engine.client(self._headers, on_request=guard, public_only=only)
        self._bare = self.engine.client(follow_redirects=True, on_request=guard, public_only=only)
        return self

    async def _refuse_private(self, request: httpx.Request) -> None:
        """Before any request (redirects included): a clear refusal naming the address. The guard
        under the connection checks again and connects to the address it checked."""
        assert self._public_only is not None
        if origin(str(request.url)) not in self._public_only:
            await refuse_private_address(self.provider, request.url.host, request.url.port)

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._api.aclose()
        await self._bare.aclose()
        for websocket in self._sockets:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(websocket.close(), CANCEL_CALL_TIMEOUT_S)

    def job_started(
        self, cancel_url: str | None = None, *, cancel_calls: Iterable[tuple[str, Any]] = ()
    ) -> None:
        """Record that a job exists, and the URL that cancels it where the API has one;
        `cancel_calls`: (url, JSON body) pairs posted in order instead, for an API that stops a job
        in more than one call (ComfyUI: drop the prompt from the queue, then interrupt it)."""
        self._job_known = True
        self._cancel_url = cancel_url
        self._cancel_calls = [(cancel_url, None)] if cancel_url else list(cancel_calls)

    async def wait(self, work: Awaitable[T]) -> T:
        """Await other network work (a websocket message) within the deadline and Stop."""
        return await self._guard(work)

    async def websocket(self, url: str, *, max_bytes: int | None = None) -> Any:
        """Open a websocket (`ws://` or `wss://`) with the API's headers, within the deadline and Stop;
        read it with `wait(socket.recv())`; the session closes it. A failure to connect raises
        ProviderError naming only the host and the reason (the caller may fall back to polling)."""
        from websockets.asyncio.client import connect  # lazy: only ComfyUI uses it
        from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI

        opening = connect(
            url,
            additional_headers=self._headers,
            user_agent_header=USER_AGENT,
            open_timeout=self.engine.connect_timeout_s,
            max_size=max_bytes or self.engine.max_json_bytes,
            logger=_WS_LOG,  # websockets logs handshake headers at DEBUG: never with the key
            proxy=None,
        )
        try:
            socket = await self._guard(opening)
        except InvalidStatus as exc:
            status = exc.response.status_code
            raise ProviderError(
                self.provider, f"{_host(url)} refused the websocket (HTTP {status})"
            ) from None
        except (OSError, asyncio.TimeoutError, InvalidHandshake, InvalidURI) as exc:
            raise ProviderError(
                self.provider, f"could not open a websocket to {_host(url)} ({type(exc).__name__})"
            ) from None
        self._sockets.append(socket)
        return socket

    async def put_upload(
        self,
        url: str,
        source: bytes | Path,
        *,
        size: int,
        content_type: str | None = None,
        what: str = "file",
    ) -> None:
        """PUT bytes, or a file streamed from disk (never read whole), to a presigned upload URL.

        Never the provider's key (the URL carries its own signature); always with its Content-Length
        (signed URLs refuse chunked bodies); no redirects (a streamed body can't be replayed). The
        same bytes to the same URL are safe to send again: retried like a GET.
        """
        if _scheme(url) not in {"http", "https"}:
            raise MalformedResponse(self.provider, f"the {what} upload link is not an http(s) URL")
        headers = {"Content-Length": str(size), **({"Content-Type": content_type} if content_type else {})}

        async def once() -> None:
            content = source if isinstance(source, bytes) else _file_chunks(self.provider, source, size)
            request = self._bare.build_request("PUT", url, content=content, headers=headers)
            response = await self._bare.send(request, stream=True, follow_redirects=False)
            try:
                if response.status_code == 429 or response.status_code >= 500:
                    raise RetryableStatus(response)
                if response.status_code >= 300:
                    raise ProviderError(
                        self.provider, f"the upload host refused the {what} (HTTP {response.status_code})"
                    )
                await self._read_capped(response, UPLOAD_ANSWER_BYTES, "upload answer")
            finally:
                await response.aclose()

        try:
            await self._guard(self._retrying(fetch_retryable, once))
        except RetryableStatus as exc:
            raise ProviderError(
                self.provider, f"the upload host kept failing (HTTP {exc.status}): retry in a moment"
            ) from None

    async def submit(
        self,
        url: str,
        body: dict[str, Any],
        *,
        read_timeout_s: float | None = None,
        max_bytes: int | None = None,
    ) -> Any:
        """POST that starts a paid job: retried only where the provider did no work.

        `max_bytes` raises the answer's size cap for APIs that return images inline.
        """
        response = await self._guard(
            self._send("POST", url, body, submit_retryable, read_timeout_s, max_bytes)
        )
        return self._json(response)

    async def get_json(self, url: str) -> Any:
        response = await self._guard(self._send("GET", url, None, fetch_retryable, None, None))
        return self._json(response)

    async def poll(self, check: Callable[[], Awaitable[T | None]]) -> T:
        """Call `check` until it returns a value, within the deadline: first `FIRST_POLL_S` apart
        (a quick job is seen done soon), then each pause `POLL_BACKOFF` times the last, up to
        `ZIMAGE_POLL_INTERVAL_S`."""
        longest = poll_interval_s()
        interval = min(FIRST_POLL_S, longest)
        while True:
            result = await check()
            if result is not None:
                return result
            await self._guard(asyncio.sleep(interval))
            interval = min(interval * POLL_BACKOFF, longest)

    async def download_image(self, url: str, *, with_key: bool = False) -> Image.Image:
        """Fetch an image URL without the provider's Authorization header, capped and validated;
        `with_key`: an image the API serves itself, behind the same key (ComfyUI's /view)."""
        if url.startswith("data:"):
            return await self.image_from_b64(url)
        if _scheme(url) not in {"http", "https"}:
            raise MalformedResponse(self.provider, "the image link is not an http(s) URL: retry")
        try:
            client = self._api if with_key else self._bare
            data = await self._guard(self._retrying(fetch_retryable, self._fetch_bytes, url, client))
        except RetryableStatus as exc:
            raise ProviderError(
                self.provider, f"the image host kept failing (HTTP {exc.status}): run the job again later"
            ) from None
        return await self._decoded(data)

    async def download_file(
        self,
        url: str,
        dest: Path,
        *,
        cap: int,
        headers: dict[str, str] | None = None,
        progress: Callable[[int, int | None], None] | None = None,
        what: str = "file",
    ) -> int:
        """Stream a URL to `dest` without holding it in memory: refused past `cap` bytes (the declared
        length first, then as it arrives), written to a temporary name beside `dest` and renamed once
        whole, so a half download is never taken for the file. GETs retried; never the provider's
        key (`headers` only, e.g. a hub token for that host). `progress(bytes so far, total or None)`.
        Returns the size."""
        if _scheme(url) not in {"http", "https"}:
            raise ProviderError(self.provider, f"the {what} link is not an http(s) URL")
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(f".{dest.name}.{os.getpid()}.{id(self):x}.part")
        try:
            size = await self._guard(
                self._retrying(fetch_retryable, self._stream_to, url, part, cap, headers, progress, what)
            )
            os.replace(part, dest)
        except RetryableStatus as exc:
            raise ProviderError(
                self.provider, f"the {what} host kept failing (HTTP {exc.status}): try again later"
            ) from None
        finally:
            part.unlink(missing_ok=True)
        return size

    async def _stream_to(
        self,
        url: str,
        part: Path,
        cap: int,
        headers: dict[str, str] | None,
        progress: Callable[[int, int | None], None] | None,
        what: str,
    ) -> int:
        async with self._bare.stream("GET", url, headers=headers) as response:
            if response.status_code == 429 or response.status_code >= 500:
                raise RetryableStatus(response)
            if response.status_code in {401, 403}:
                raise AuthError(
                    self.provider,
                    f"the {what} host refused access (HTTP {response.status_code}): check {self._key_hint}",
                )
            if response.status_code >= 400:
                raise ProviderError(
                    self.provider,
                    f"the {what} could not be downloaded (HTTP {response.status_code}): check the link",
                )
            declared = response.headers.get("content-length", "")
            total = int(declared) if declared.isdigit() else None
            if total is not None and total > cap:
                raise MalformedResponse(self.provider, f"the {what} is larger than {_size(cap)}: refused")
            size = 0
            with part.open("wb") as handle:
                async for chunk in response.aiter_bytes(1 << 20):
                    size += len(chunk)
                    if size > cap:
                        raise MalformedResponse(
                            self.provider, f"the {what} is larger than {_size(cap)}: refused"
                        )
                    await asyncio.to_thread(handle.write, chunk)
                    if progress:
                        progress(size, total)
            return size

    async def image_from_b64(self, text: str) -> Image.Image:
        return await self._decoded(b64_payload(self.provider, text, self.engine.max_image_bytes))

    async def _decoded(self, data: bytes) -> Image.Image:
        """Check and decode off the event loop: a big image must not stall other users."""
        return await asyncio.to_thread(
            decode_image, self.provider, data, self.engine.max_image_bytes, self._max_pixels
        )

    async def _send(
        self,
        method: str,
        url: str,
        body: dict[str, Any] | None,
        retryable: Callable[[BaseException], bool],
        read_timeout_s: float | None,
        max_bytes: int | None,
    ) -> httpx.Response:
        timeout = (
            httpx.Timeout(read_timeout_s, connect=self.engine.connect_timeout_s)
            if read_timeout_s
            else httpx.USE_CLIENT_DEFAULT
        )

        cap = max_bytes or self.engine.max_json_bytes

        async def once() -> httpx.Response:
            self._sent = self._sent or method == "POST"
            request = self._api.build_request(method, url, json=body, timeout=timeout)
            streamed = await self._api.send(request, stream=True)
            try:
                content = await self._read_capped(streamed, cap, "answer")
            finally:
                await streamed.aclose()
            # The content is already decoded (gzip and the like): its encoding headers no longer apply.
            headers = [
                (name, value)
                for name, value in streamed.headers.multi_items()
                if name.lower() not in {"content-encoding", "content-length", "transfer-encoding"}
            ]
            response = httpx.Response(streamed.status_code, headers=headers, content=content, request=request)
            log.debug("%s %s -> %s", method, urlsplit(url).path, response.status_code)
            if response.status_code == 429 or response.status_code >= 500:
                raise RetryableStatus(response)
            return response

        try:
            return await self._retrying(retryable, once)
        except RetryableStatus as exc:
            return exc.response

    async def _retrying(
        self, retryable: Callable[[BaseException], bool], attempt: Callable[..., Awaitable[T]], *args: Any
    ) -> T:
        policy = self.engine.retry

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            retry_after = exc.retry_after if isinstance(exc, RetryableStatus) else None
            return backoff_s(policy, state.attempt_number, retry_after)

        retrying = AsyncRetrying(
            stop=stop_after_attempt(policy.attempts),
            wait=wait,
            retry=retry_if_exception(retryable),
            sleep=self.engine.sleep,
            reraise=True,
        )
        try:
            return await retrying(attempt, *args)
        except httpx.TimeoutException:
            raise self._network_timeout() from None
        except EncodingRefused as exc:
            raise MalformedResponse(self.provider, f"{exc}: refused") from None
        except AddressRefused as exc:
            raise ProviderError(self.provider, _private_message(exc.host, exc.address)) from None
        except httpx.InvalidURL as exc:
            raise ProviderError(self.provider, f"the link is not a valid URL ({str(exc)[:80]})") from None
        except httpx.TooManyRedirects:
            raise ProviderError(
                self.provider, "the link redirects too many times: give the final URL"
            ) from None
        except httpx.HTTPError as exc:
            host = _host(str(exc.request.url)) if _has_request(exc) else "the service"
            raise ProviderError(
                self.provider,
                f"could not reach {host} ({type(exc).__name__}): check the network or the base URL",
            ) from None

    def _network_timeout(self) -> ProviderTimeout:
        if self._sent and not self._job_known:
            return ProviderTimeout(
                self.provider,
                "no answer to the request in time; the job may still run and be billed: "
                "check the provider's dashboard before retrying",
            )
        return ProviderTimeout(self.provider, "the service stopped answering in time: retry in a moment")

    async def _fetch_bytes(self, url: str, client: httpx.AsyncClient | None = None) -> bytes:
        cap = self.engine.max_image_bytes
        async with (client or self._bare).stream("GET", url) as response:
            if response.status_code == 429 or response.status_code >= 500:
                raise RetryableStatus(response)
            if response.status_code >= 400:
                raise ProviderError(
                    self.provider,
                    f"the image could not be downloaded (HTTP {response.status_code}): "
                    "the link may have expired; run the job again",
                )
            return await self._read_capped(response, cap, "image")

    async def _read_capped(self, response: httpx.Response, cap: int, what: str) -> bytes:
        """The body, read as a stream and refused once it passes `cap` bytes."""
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            raise MalformedResponse(self.provider, f"the {what} is larger than {_size(cap)}: refused")
        chunks: list[bytes] = []  # kept as they come (no buffer regrown and copied): at most `cap`
        size = 0
        try:
            try:
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > cap:
                        raise MalformedResponse(
                            self.provider, f"the {what} is larger than {_size(cap)}: refused"
                        )
                    chunks.append(chunk)
            except EncodingRefused as exc:  # a bomb found while decoding: named as what was read
                detail = str(exc).replace("answer", what, 1)
                raise MalformedResponse(self.provider, f"{detail}: refused") from None
        except BaseException:
            # Freed now: the traceback keeps this frame, and a cycle through it would hold what was
            # read (up to `cap`) until the next full garbage collection (bytes never trigger one).
            chunks.clear()
            raise
        return b"".join(chunks)

    def _json(self, response: httpx.Response) -> Any:
        try:
            body = response.json()
        except ValueError:
            body = None
            readable = False
        else:
            readable = True
        if response.status_code >= 400:
            detail = api_message(body, self._error_paths) if readable else None
            detail = redacted_detail(detail, self._secrets) if detail else None
            raise error_for_status(self.provider, response.status_code, detail, self._key_hint)
        if not readable:
            kind = response.headers.get("content-type", "no content type").split(";")[0]
            raise MalformedResponse(
                self.provider,
                f"answered with something that is not JSON (HTTP {response.status_code}, {kind}): "
                "retry; if it persists, the API may have changed",
            )
        return body

    async def _guard(self, work: Awaitable[T]) -> T:
        """Await `work`, but give up at the deadline or when the user presses Stop."""
        if self._cancel.cancelled:
            if asyncio.iscoroutine(work):
                work.close()
            raise Cancelled(self.provider, self._stopped_message(await self._cancel_job()))
        task = asyncio.ensure_future(work)
        stop = asyncio.ensure_future(self._cancel.wait())
        remaining = self._deadline - asyncio.get_running_loop().time()
        try:
            done, _ = await asyncio.wait(
                {task, stop}, timeout=max(remaining, 0.0), return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stop.cancel()
        if task in done:
            return task.result()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        called = await self._cancel_job()
        if stop in done:
            raise Cancelled(self.provider, self._stopped_message(called))
        raise ProviderTimeout(
            self.provider,
            f"no result within {self._limit_s:g} s: the provider may be busy; "
            "try again, or raise ZIMAGE_TIMEOUT_S",
        )

    async def _cancel_job(self) -> bool:
        """Best effort: ask the provider to stop the job, so an abandoned job stops billing."""
        if not self._cancel_calls:
            return False

        async def post_each() -> bool:
            answers = [await self._api.post(url, json=body) for url, body in self._cancel_calls]
            return all(answer.status_code < 400 for answer in answers)

        try:
            return await asyncio.wait_for(post_each(), self._cancel_slice_s)
        except (httpx.HTTPError, asyncio.TimeoutError):
            return False

    def _stopped_message(self, called: bool) -> str:
        if called:
            return "stopped; the job was cancelled at the provider"
        if self._job_known or self._sent:
            return "stopped; the provider was not told to stop, so the job may still finish and be billed"
        return "stopped before anything was sent"


async def _file_chunks(provider: str, path: Path, size: int) -> AsyncIterator[bytes]:
    """A file's bytes in chunks, read off the event loop; it must still have `size` bytes."""
    sent = 0
    with path.open("rb") as file:
        while chunk := await asyncio.to_thread(file.read, UPLOAD_CHUNK_BYTES):
            sent += len(chunk)
            if sent > size:
                break
            yield chunk
    if sent != size:
        raise ProviderError(provider, f"{path.name} changed while it was being uploaded: try again")


def _scheme(url: str) -> str:
    """A URL's scheme, or "" for text that is no URL at all (`https://[::1/x` raises in urlsplit)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - a bad port or IPv6 literal raises here
    except ValueError:
        return ""
    return parts.scheme.lower()


def _size(limit: int) -> str:
    return f"{limit / 2**20:g} MB"


def _host(url: str) -> str:
    """Host and port only: a URL's userinfo or query may hold credentials."""
    parts = urlsplit(url)
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.hostname or 'the service'}{port}"


def _has_request(exc: httpx.HTTPError) -> bool:
    try:
        exc.request  # noqa: B018
    except RuntimeError:
        return False
    return True
