"""The pieces that keep a shared instance safe: redaction, key policy, runs, the GPU line, bounds."""

from __future__ import annotations

import asyncio
import base64
import logging
import resource
import time
from urllib.parse import quote

import pytest

from zimage_ui.cancel import CancelToken
from zimage_ui.codegen import copy_as_code
from zimage_ui.errors import InvalidParams, ServerBusy
from zimage_ui.params import GenerationParams
from zimage_ui.providers import PROVIDERS
from zimage_ui.providers.base import KeyRing, server_keys_shared
from zimage_ui.providers.local.gpu_queue import GpuQueue, ordinal
from zimage_ui.redaction import REDACTED, key_problem, redact, safe_url, url_secrets
from zimage_ui.runner import generate_one
from zimage_ui.runs import RunRegistry
from zimage_ui.sweep import parse_axis

KEY, SECRET = "scn-key-0123456789", "scn-secret-abcdefgh"


# -- redaction -------------------------------------------------------------------------------


def test_every_form_of_a_key_is_redacted():
    basic = base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()
    text = (
        f"raw {KEY} / header Basic {basic} / url-encoded {quote(basic, safe='')} / "
        f"key alone in base64 {base64.b64encode(KEY.encode()).decode()} / {quote(KEY + '+', safe='')}"
    )
    clean = redact(text, [KEY, SECRET, f"Basic {basic}", basic])
    for form in (KEY, SECRET, basic, quote(basic, safe=""), base64.b64encode(KEY.encode()).decode()):
        assert form not in clean
    assert clean.count(REDACTED) >= 5


def test_credentials_in_a_base_url_are_hidden_everywhere(monkeypatch: pytest.MonkeyPatch):
    url = "https://robot:hunter2-pass@proxy.example.test/v1?token=tok-123456&region=eu"
    assert set(url_secrets(url)) >= {"robot", "hunter2-pass", "tok-123456", "eu"}
    shown = safe_url(url)
    assert "hunter2" not in shown and "tok-123456" not in shown and "robot" not in shown
    assert shown.startswith("https://***@proxy.example.test/v1?token=***")
    monkeypatch.setenv("ZIMAGE_AIMLAPI_BASE_URL", url)
    monkeypatch.setenv("AIML_API_KEY", "aiml-key-000000")
    prepared = PROVIDERS["aimlapi"].prepare(GenerationParams(prompt="fox", seed=1))
    display = str(prepared.display())
    curl, python = copy_as_code(prepared)
    for text in (display, curl, python):
        assert "hunter2-pass" not in text and "tok-123456" not in text


@pytest.mark.parametrize(
    ("value", "problem"),
    [("abc def", "space"), ("abc\ndef", "space"), ("abc\x07def", "control"), ("clé-123", "non-ASCII")],
)
def test_malformed_keys_are_refused_naming_the_field(value: str, problem: str, monkeypatch):
    assert problem in (key_problem(value) or "")
    status = PROVIDERS["evolink"].availability(KeyRing({"EVOLINK_API_KEY": value}, use_env=False))
    assert not status.usable and "EVOLINK_API_KEY" in status.reason and problem in status.reason
    assert value not in status.reason
    assert key_problem("  sk-fine-123  ") is None


def test_server_keys_policy(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("ZIMAGE_SERVER_KEYS", raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    assert server_keys_shared()
    monkeypatch.setenv("SPACE_ID", "someone/zimage")
    assert not server_keys_shared()  # a public Space never spends its owner's keys by default
    monkeypatch.setenv("AIML_API_KEY", "owner-key-123456")
    status = PROVIDERS["aimlapi"].availability(KeyRing.for_visitor())
    assert not status.usable and "enter your own key" in status.reason
    assert PROVIDERS["aimlapi"].availability(KeyRing.for_visitor({"AIML_API_KEY": "mine-123456"})).usable
    monkeypatch.setenv("ZIMAGE_SERVER_KEYS", "all")
    assert PROVIDERS["aimlapi"].availability(KeyRing.for_visitor()).usable
    monkeypatch.setenv("ZIMAGE_SERVER_KEYS", "yes please")
    assert not server_keys_shared()  # anything but "all" shares nothing


# -- runs and Stop ---------------------------------------------------------------------------


def test_stop_reaches_only_its_own_tab_and_session():
    registry = RunRegistry()
    with (
        registry.start("generate", "alice") as first,
        registry.start("generate", "alice") as second,
        registry.start("compare", "alice") as compare,
        registry.start("generate", "bob") as other,
    ):
        assert len({first.id, second.id, compare.id, other.id}) == 4
        assert first.folder != second.folder
        assert registry.stop("generate", "alice") == 2
        assert first.token.cancelled and second.token.cancelled
        assert not compare.token.cancelled and not other.token.cancelled
    assert registry.active == 0 and registry.stop("generate", "alice") == 0


def test_a_full_server_says_busy(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ZIMAGE_MAX_ACTIVE_RUNS", "2")
    registry = RunRegistry()
    with (
        registry.start("generate", "a"),
        registry.start("generate", "b"),
        pytest.raises(ServerBusy, match="busy"),
        registry.start("generate", "c"),
    ):
        pass
    with registry.start("generate", "c") as run:
        assert run.session == "c"


async def test_a_session_has_a_bounded_number_of_hosted_requests(monkeypatch: pytest.MonkeyPatch, emulators):
    monkeypatch.setenv("ZIMAGE_SESSION_HOSTED_LIMIT", "2")
    emulators["runpod"].behaviour.job_delay_s = 0.3
    emulators["runpod"].behaviour.sync_wait_s = 1.0
    registry = RunRegistry()
    params = GenerationParams(prompt="a kite", width=512, height=512, seed=3)
    with registry.start("sweep", "alice") as run:
        started = time.monotonic()
        outcomes = await asyncio.gather(
            *(generate_one("runpod", params, hosted_gate=run.hosted_gate) for _ in range(4))
        )
        elapsed = time.monotonic() - started
    assert all(outcome.ok for outcome in outcomes)
    assert elapsed >= 0.6, "4 requests through 2 slots take two rounds of 0.3 s"
    assert len(emulators["runpod"].calls("POST")) == 4


# -- the GPU line ----------------------------------------------------------------------------


async def test_the_gpu_line_is_first_come_first_served_and_tells_places():
    queue, order, places = GpuQueue(), [], {}
    assert await queue.acquire(CancelToken(), lambda _: None)

    async def wait(name: str) -> None:
        places[name] = []
        assert await queue.acquire(CancelToken(), places[name].append)
        order.append(name)
        await asyncio.sleep(0.01)
        queue.release()

    tasks = []
    for name in ("a", "b", "c", "d"):
        tasks.append(asyncio.create_task(wait(name)))
        await asyncio.sleep(0.01)
    queue.release()
    await asyncio.gather(*tasks)
    assert order == ["a", "b", "c", "d"]
    assert places["d"][0] == 4 and places["d"][-1] == 1
    assert ordinal(2) == "2nd" and ordinal(11) == "11th" and ordinal(23) == "23rd"


async def test_stop_while_in_line_leaves_the_line():
    queue = GpuQueue()
    assert await queue.acquire(CancelToken(), lambda _: None)
    token = CancelToken()
    waiting = asyncio.create_task(queue.acquire(token, lambda _: None))
    await asyncio.sleep(0.01)
    assert queue.waiting == 1
    token.cancel()
    assert await asyncio.wait_for(waiting, 1) is False
    assert queue.waiting == 0
    queue.release()
    assert await asyncio.wait_for(queue.acquire(CancelToken(), lambda _: None), 1)


async def test_cancel_token_wakes_waiters_from_another_thread():
    token = CancelToken()
    waiter = asyncio.create_task(token.wait())
    await asyncio.sleep(0.01)
    await asyncio.to_thread(token.cancel)
    await asyncio.wait_for(waiter, 1)
    assert token.cancelled


# -- bounds and clean failures ---------------------------------------------------------------


def test_a_billion_value_range_is_refused_before_expansion():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    with pytest.raises(InvalidParams, match="over the limit of 36"):
        parse_axis("steps", "1-8 [1000000000]")
    with pytest.raises(InvalidParams, match="over the limit"):
        parse_axis("seed", "1-2000000000")
    assert time.monotonic() - started < 1
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 20_000  # KiB
    assert parse_axis("steps", "2-8 [4]").values == [2, 4, 6, 8]


async def test_expected_failures_log_one_line(emulators, caplog: pytest.LogCaptureFixture):
    emulators["evolink"].behaviour.fail_reason = "refused prompt"
    caplog.set_level(logging.INFO, logger="zimage_ui")
    outcome = await generate_one("evolink", GenerationParams(prompt="a kite", seed=2))
    assert not outcome.ok and "refused prompt" in (outcome.error or "")
    mine = [r for r in caplog.records if r.name.startswith("zimage_ui")]
    assert len(mine) == 1 and mine[0].exc_info is None and "\n" not in mine[0].getMessage()


async def test_stop_is_not_a_failure(emulators):
    emulators["runpod"].behaviour.job_delay_s = 5
    token = CancelToken()
    task = asyncio.create_task(
        generate_one("runpod", GenerationParams(prompt="a kite", seed=2), cancel=token)
    )
    await asyncio.sleep(0.3)
    token.cancel()
    outcome = await asyncio.wait_for(task, 5)
    assert outcome.stopped and "stopped" in (outcome.error or "")


async def test_a_key_echoed_by_the_provider_never_reaches_the_run_log(emulators, tmp_path):
    from zimage_ui.history import HistoryStore
    from zimage_ui.redaction import forms

    emulator = emulators["scenario"]
    emulator.behaviour.reject_key = emulator.behaviour.echo_key = True
    store = HistoryStore(tmp_path / "runs.db")
    outcome = await generate_one("scenario", GenerationParams(prompt="a kite", seed=2))
    assert outcome.error and "refused" in outcome.error
    store.record_outcome(outcome)
    saved = store.export_csv() + (tmp_path / "runs.db").read_bytes().decode("latin-1")
    key, secret = emulator.keys.values()
    basic = base64.b64encode(f"{key}:{secret}".encode()).decode()
    for value in (key, secret, basic):
        for form in forms(value):
            assert form not in saved


async def test_stop_on_a_stuck_job_whose_cancel_hangs_ends_quickly(emulators, monkeypatch):
    monkeypatch.setenv("ZIMAGE_TIMEOUT_S", "60")
    emulators["inferencesh"].behaviour.stuck = emulators["inferencesh"].behaviour.hang_cancel = True
    token = CancelToken()
    task = asyncio.create_task(
        generate_one("inferencesh", GenerationParams(prompt="a kite", seed=2), cancel=token)
    )
    await asyncio.sleep(0.3)
    started = time.monotonic()
    token.cancel()
    outcome = await asyncio.wait_for(task, 10)
    assert time.monotonic() - started < 3, "the cancel call has a short slice, not the whole deadline"
    assert outcome.stopped and "may still finish" in (outcome.error or "")


def test_a_sweep_grid_of_36_large_cells_stays_small():
    from PIL import Image

    from zimage_ui.providers.base import RunResult, SentValues
    from zimage_ui.runner import Outcome
    from zimage_ui.sweep import GRID_CELL_MAX, SweepResult, SweepSpec

    spec = SweepSpec(
        params=GenerationParams(prompt="x", seed=1),
        provider="diffusers-tiny",
        x=parse_axis("seed", "1-6"),
        y=parse_axis("steps", "1-6"),
    )
    cell = Image.effect_noise((1024, 1024), 60).convert("RGB")
    result = RunResult("p", [cell], seed=1, sent=SentValues(1024, 1024, 8, 1), elapsed_s=0.1)
    outcomes = [[Outcome(provider="p", result=result) for _ in range(6)] for _ in range(6)]
    png = SweepResult(spec, outcomes).grid_png()
    assert len(png) < 8 * 2**20
    with Image.open(__import__("io").BytesIO(png)) as grid:
        assert grid.width <= 6 * GRID_CELL_MAX + 300


def test_old_run_folders_are_pruned(monkeypatch: pytest.MonkeyPatch):
    import os
    import uuid

    from zimage_ui.runs import prune, work_root

    monkeypatch.setenv("ZIMAGE_CACHE_TTL_S", "100")
    tag = uuid.uuid4().hex
    old, fresh = work_root() / f"old-{tag}", work_root() / f"fresh-{tag}"
    for folder in (old, fresh):
        folder.mkdir()
        (folder / "a.png").write_bytes(b"png")
    os.utime(old, (time.time() - 500, time.time() - 500))
    prune(wait=True)
    assert not old.exists() and fresh.exists()
