"""The HTTP engine against httpx.MockTransport: retry rules, errors, downloads, deadline, cancel."""

from __future__ import annotations

import asyncio
import base64
import io
import random
import time
from collections.abc import Callable
from datetime import datetime, timezone

import httpx
import pytest
from PIL import Image

from zimage_ui.cancel import CancelToken
from zimage_ui.errors import (
    AuthError,
    Cancelled,
    MalformedResponse,
    NoCredit,
    ProviderError,
    ProviderTimeout,
    RateLimited,
)
from zimage_ui.net.answers import api_message
from zimage_ui.net.http import HttpEngine
from zimage_ui.net.images import decode_b64_image
from zimage_ui.net.retry import RetryPolicy, backoff_s, parse_retry_after
from zimage_ui.net.session import poll_interval_s, timeout_s

API = "http://provider.test/v1"
KEY = "sk-secret-value-123"


def png(width: int = 8, height: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 20, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


class Recorder:
    """A MockTransport handler answering from a list, recording every request."""

    def __init__(
        self, *answers: httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]
    ) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer(request) if callable(answer) else answer


def engine(handler: Recorder, waits: list[float] | None = None, **kwargs: object) -> HttpEngine:
    async def sleep(seconds: float) -> None:
        if waits is not None:
            waits.append(seconds)

    return HttpEngine(
        transport=httpx.MockTransport(handler),
        retry=RetryPolicy(attempts=3, base_s=0.01, max_wait_s=30.0),
        sleep=sleep,
        **kwargs,  # type: ignore[arg-type]
    )


def session(eng: HttpEngine, cancel: CancelToken | None = None):
    return eng.session(
        "testprov",
        headers={"Authorization": f"Bearer {KEY}"},
        secrets=[KEY],
        key_hint="TEST_KEY",
        cancel=cancel,
    )


def ok(body: object = None) -> httpx.Response:
    return httpx.Response(200, json=body if body is not None else {"ok": True})


@pytest.fixture(autouse=True)
def fast_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZIMAGE_POLL_INTERVAL_S", "0.01")
    monkeypatch.setenv("ZIMAGE_TIMEOUT_S", "5")


# -- retry rules -------------------------------------------------------------------------------


async def test_submit_retried_on_429_honouring_retry_after() -> None:
    handler = Recorder(httpx.Response(429, headers={"Retry-After": "2"}, json={}), ok({"id": "j1"}))
    waits: list[float] = []
    async with session(engine(handler, waits)) as s:
        assert await s.submit(f"{API}/run", {"prompt": "x"}) == {"id": "j1"}
    assert len(handler.requests) == 2
    assert waits == [2.0]


async def test_retry_after_is_capped() -> None:
    handler = Recorder(httpx.Response(429, headers={"Retry-After": "3600"}, json={}), ok())
    waits: list[float] = []
    async with session(engine(handler, waits)) as s:
        await s.submit(f"{API}/run", {})
    assert waits == [30.0]


async def test_submit_retried_on_503() -> None:
    handler = Recorder(httpx.Response(503, json={}), ok())
    async with session(engine(handler)) as s:
        await s.submit(f"{API}/run", {})
    assert len(handler.requests) == 2


async def test_submit_retried_when_the_connection_was_refused() -> None:
    handler = Recorder(httpx.ConnectError("refused"), ok())
    async with session(engine(handler)) as s:
        await s.submit(f"{API}/run", {})
    assert len(handler.requests) == 2


@pytest.mark.parametrize("status", [500, 502, 504])
async def test_submit_not_retried_on_other_5xx(status: int) -> None:
    handler = Recorder(httpx.Response(status, json={"message": "boom"}), ok())
    async with session(engine(handler)) as s:
        with pytest.raises(ProviderError) as caught:
            await s.submit(f"{API}/run", {})
    assert len(handler.requests) == 1
    assert f"HTTP {status}" in str(caught.value) and "boom" in str(caught.value)
    assert str(caught.value).startswith("testprov: ")


async def test_submit_not_retried_on_read_timeout() -> None:
    handler = Recorder(httpx.ReadTimeout("slow"), ok())
    async with session(engine(handler)) as s:
        with pytest.raises(ProviderTimeout) as caught:
            await s.submit(f"{API}/run", {})
    assert len(handler.requests) == 1
    assert "may still run" in str(caught.value)


@pytest.mark.parametrize(
    "failure",
    [httpx.Response(500, json={}), httpx.Response(502, text="<html>"), httpx.ReadTimeout("slow")],
    ids=["500", "502", "read-timeout"],
)
async def test_get_retried_on_5xx_and_timeouts(failure: httpx.Response | Exception) -> None:
    handler = Recorder(failure, ok({"status": "done"}))
    async with session(engine(handler)) as s:
        assert await s.get_json(f"{API}/jobs/1") == {"status": "done"}
    assert len(handler.requests) == 2


async def test_rate_limited_after_every_try() -> None:
    handler = Recorder(httpx.Response(429, headers={"Retry-After": "1"}, json={"message": "slow down"}))
    async with session(engine(handler)) as s:
        with pytest.raises(RateLimited) as caught:
            await s.submit(f"{API}/run", {})
    assert len(handler.requests) == 3
    assert "wait and retry" in str(caught.value)


async def test_exponential_backoff_without_retry_after() -> None:
    handler = Recorder(httpx.Response(500, json={}), httpx.Response(500, json={}), ok())
    waits: list[float] = []
    async with session(engine(handler, waits)) as s:
        await s.get_json(f"{API}/jobs/1")
    assert waits == [0.01, 0.02]


# -- error mapping -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind", "words"),
    [
        (401, AuthError, "check TEST_KEY"),
        (403, AuthError, "check TEST_KEY"),
        (402, NoCredit, "no credit"),
        (404, ProviderError, "HTTP 404"),
        (422, ProviderError, "HTTP 422"),
    ],
)
async def test_error_statuses_map_to_clear_errors(status: int, kind: type, words: str) -> None:
    handler = Recorder(httpx.Response(status, json={"error": {"message": "nope"}}))
    async with session(engine(handler)) as s:
        with pytest.raises(kind) as caught:
            await s.get_json(f"{API}/jobs/1")
    assert words in str(caught.value) and "nope" in str(caught.value)
    assert len(handler.requests) == 1


async def test_non_json_answer_is_malformed() -> None:
    handler = Recorder(
        httpx.Response(200, text="<html>gateway</html>", headers={"content-type": "text/html"})
    )
    async with session(engine(handler)) as s:
        with pytest.raises(MalformedResponse) as caught:
            await s.submit(f"{API}/run", {})
    assert "not JSON" in str(caught.value) and "text/html" in str(caught.value)


async def test_key_echoed_by_the_api_never_reaches_the_message() -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"message": f"bad token {request.headers['authorization']}"})

    async with session(engine(Recorder(echo))) as s:
        with pytest.raises(AuthError) as caught:
            await s.get_json(f"{API}/jobs/1")
    assert KEY not in str(caught.value)
    assert "***" in str(caught.value)


async def test_unreachable_host_is_a_clear_error() -> None:
    handler = Recorder(httpx.ConnectError("refused"))
    async with session(engine(handler)) as s:
        with pytest.raises(ProviderError) as caught:
            await s.get_json(f"{API}/jobs/1")
    assert "could not reach provider.test" in str(caught.value)


# -- downloads ---------------------------------------------------------------------------------


async def test_download_sends_no_authorization_header() -> None:
    handler = Recorder(httpx.Response(200, content=png(), headers={"content-type": "image/png"}))
    async with session(engine(handler)) as s:
        image = await s.download_image("http://cdn.test/a.png")
    assert image.size == (8, 8)
    assert "authorization" not in handler.requests[0].headers


async def test_api_calls_do_send_the_authorization_header() -> None:
    handler = Recorder(ok())
    async with session(engine(handler)) as s:
        await s.get_json(f"{API}/jobs/1")
    assert handler.requests[0].headers["authorization"] == f"Bearer {KEY}"


async def test_download_refuses_a_declared_size_over_the_cap() -> None:
    body = png()
    handler = Recorder(httpx.Response(200, content=body))
    async with session(engine(handler, max_image_bytes=len(body) - 1)) as s:
        with pytest.raises(MalformedResponse, match="larger than"):
            await s.download_image("http://cdn.test/a.png")


async def test_download_refuses_a_streamed_body_over_the_cap() -> None:
    async def chunks():
        for _ in range(10):
            yield b"x" * 1000

    handler = Recorder(lambda request: httpx.Response(200, content=chunks()))
    async with session(engine(handler, max_image_bytes=5000)) as s:
        with pytest.raises(MalformedResponse, match="larger than"):
            await s.download_image("http://cdn.test/a.png")


async def test_download_rejects_a_non_image() -> None:
    handler = Recorder(httpx.Response(200, text="<html>login</html>"))
    async with session(engine(handler)) as s:
        with pytest.raises(MalformedResponse, match="not a readable image"):
            await s.download_image("http://cdn.test/a.png")


async def test_expired_download_says_so_and_is_not_retried() -> None:
    handler = Recorder(httpx.Response(403, text="expired"))
    async with session(engine(handler)) as s:
        with pytest.raises(ProviderError, match="may have expired"):
            await s.download_image("http://cdn.test/a.png")
    assert len(handler.requests) == 1


async def test_download_retried_on_5xx() -> None:
    handler = Recorder(httpx.Response(503), httpx.Response(200, content=png()))
    async with session(engine(handler)) as s:
        await s.download_image("http://cdn.test/a.png")
    assert len(handler.requests) == 2


async def test_download_gives_up_cleanly_when_the_host_keeps_failing() -> None:
    handler = Recorder(httpx.Response(503))
    async with session(engine(handler)) as s:
        with pytest.raises(ProviderError, match="HTTP 503"):
            await s.download_image("http://cdn.test/a.png")
    assert len(handler.requests) == 3


async def test_download_refuses_other_schemes() -> None:
    async with session(engine(Recorder(ok()))) as s:
        with pytest.raises(MalformedResponse, match="not an http"):
            await s.download_image("file:///etc/passwd")


def test_base64_images_are_validated() -> None:
    text = base64.b64encode(png(4, 4)).decode()
    assert decode_b64_image("p", text).size == (4, 4)
    assert decode_b64_image("p", "data:image/png;base64," + text).size == (4, 4)
    with pytest.raises(MalformedResponse, match="not valid base64"):
        decode_b64_image("p", "!!not base64!!")
    with pytest.raises(MalformedResponse, match="not a readable image"):
        decode_b64_image("p", base64.b64encode(b"hello").decode())


# -- polling, deadline, cancel -----------------------------------------------------------------


async def test_poll_returns_once_check_has_a_value(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    async def check() -> str | None:
        calls.append(time.monotonic())
        return "done" if len(calls) == 4 else None

    monkeypatch.setenv("ZIMAGE_POLL_INTERVAL_S", "0.05")
    async with session(engine(Recorder(ok()))) as s:
        assert await s.poll(check) == "done"
    assert len(calls) == 4
    assert calls[-1] - calls[0] >= 0.14


async def test_polling_starts_quick_and_backs_off_to_the_configured_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pauses: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)
        await real_sleep(0)

    async def check() -> str | None:
        return "done" if len(pauses) == 7 else None

    monkeypatch.setenv("ZIMAGE_POLL_INTERVAL_S", "1.0")
    monkeypatch.setattr("zimage_ui.net.session.asyncio.sleep", sleep)
    async with session(engine(Recorder(ok()))) as s:
        assert await s.poll(check) == "done"
    assert pauses == pytest.approx([0.25, 0.375, 0.5625, 0.84375, 1.0, 1.0, 1.0])


async def test_deadline_ends_polling_with_provider_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZIMAGE_TIMEOUT_S", "0.3")

    async def never() -> None:
        return None

    started = time.monotonic()
    async with session(engine(Recorder(ok()))) as s:
        with pytest.raises(ProviderTimeout) as caught:
            await s.poll(never)
    assert time.monotonic() - started < 1.5
    assert "0.3 s" in str(caught.value) and "ZIMAGE_TIMEOUT_S" in str(caught.value)


async def test_deadline_also_bounds_a_hanging_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZIMAGE_TIMEOUT_S", "0.3")

    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        return ok()

    eng = HttpEngine(transport=httpx.MockTransport(hang))
    started = time.monotonic()
    async with session(eng) as s:
        with pytest.raises(ProviderTimeout):
            await s.get_json(f"{API}/jobs/1")
    assert time.monotonic() - started < 1.5


async def test_cancel_stops_polling_and_calls_the_cancel_endpoint() -> None:
    handler = Recorder(ok())
    token = CancelToken()

    async def running() -> None:
        return None

    async with session(engine(handler), cancel=token) as s:
        s.job_started(f"{API}/tasks/7/cancel")
        asyncio.get_running_loop().call_later(0.1, token.cancel)
        with pytest.raises(Cancelled) as caught:
            await s.poll(running)
    assert "cancelled at the provider" in str(caught.value)
    assert [(r.method, r.url.path) for r in handler.requests] == [("POST", "/v1/tasks/7/cancel")]


async def test_cancel_without_a_cancel_endpoint_warns_about_billing() -> None:
    token = CancelToken()
    token.cancel()
    async with session(engine(Recorder(ok())), cancel=token) as s:
        s.job_started()
        with pytest.raises(Cancelled, match="may still finish and be billed"):
            await s.get_json(f"{API}/jobs/1")


async def test_cancel_before_sending_anything() -> None:
    token = CancelToken()
    token.cancel()
    async with session(engine(Recorder(ok())), cancel=token) as s:
        with pytest.raises(Cancelled, match="before anything was sent"):
            await s.get_json(f"{API}/jobs/1")


# -- pure helpers ------------------------------------------------------------------------------


def test_parse_retry_after() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:10 GMT", now) == 10.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_backoff_prefers_retry_after_and_caps() -> None:
    policy = RetryPolicy(base_s=0.5, max_wait_s=30)
    assert [backoff_s(policy, n, None) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]
    assert backoff_s(policy, 1, 7) == 7
    assert backoff_s(policy, 1, 90) == 30
    assert backoff_s(policy, 10, None) == 30


def test_timeouts_read_from_the_environment_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZIMAGE_TIMEOUT_S", "42")
    monkeypatch.setenv("ZIMAGE_POLL_INTERVAL_S", "0.25")
    assert (timeout_s(), poll_interval_s()) == (42.0, 0.25)
    monkeypatch.setenv("ZIMAGE_TIMEOUT_S", "soon")
    monkeypatch.delenv("ZIMAGE_POLL_INTERVAL_S")
    assert (timeout_s(), poll_interval_s()) == (300.0, 1.0)


def test_api_message_follows_paths() -> None:
    paths = ("error.message", "message", "detail")
    assert api_message({"error": {"message": "bad size"}}, paths) == "bad size"
    assert api_message({"message": ["a is wrong", "b is wrong"]}, paths) == "a is wrong; b is wrong"
    assert api_message({"detail": "  no  "}, paths) == "no"
    assert api_message({"other": 1}, paths) is None
    assert api_message(None, paths) is None


async def test_a_compressed_answer_is_read_and_its_decoded_size_is_capped():
    import gzip
    import json as json_module

    small = gzip.compress(json_module.dumps({"ok": True}).encode())
    digits = random.Random(3).randbytes(5 * 2**20).hex().encode()  # 10 MB compressing about 2:1
    bomb = gzip.compress(b'{"x": "' + digits + b'"}', 1)  # no bomb by its ratio: the cap stops it

    def handler(request: httpx.Request) -> httpx.Response:
        body = bomb if request.url.path == "/bomb" else small
        return httpx.Response(200, headers={"content-encoding": "gzip"}, content=body)

    engine = HttpEngine(transport=httpx.MockTransport(handler))
    async with engine.session("p", headers={}, secrets=[], key_hint="K") as session:
        assert await session.get_json("https://api.test/ok") == {"ok": True}
        with pytest.raises(MalformedResponse, match="answer is larger than 8 MB"):
            await session.get_json("https://api.test/bomb")
