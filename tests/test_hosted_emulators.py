"""Each hosted provider end to end against its loopback emulator (real HTTP, no internet)."""

from __future__ import annotations

import asyncio
import copy
import json
import time

import httpx
import pytest

from tests.emulators import Emulator
from zimage_ui.errors import (
    AuthError,
    Cancelled,
    JobFailed,
    MalformedResponse,
    NoCredit,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
)
from zimage_ui.net.answers import api_message
from zimage_ui.params import GenerationParams
from zimage_ui.providers.base import KeyRing, Progress, Provider, RunResult

SUBMIT = {
    "scenario": "/generate/custom/model_z-image-turbo",
    "inferencesh": "/apps/run",
    "aimlapi": "/images/generations",
    "evolink": "/images/generations",
    "runpod": "/runsync",
    "comfyui": "/prompt",
    "openai-compatible": "/images/generations",
}
STATUS_PATH = {"scenario": "/jobs/", "inferencesh": "/tasks/", "evolink": "/tasks/", "runpod": "/status/"}
COST = {"scenario": "5 compute units", "aimlapi": "10500 tokens", "runpod": "$0.0050"}
CANCEL_PATH = {"inferencesh": "/cancel", "runpod": "/cancel", "comfyui": "/interrupt"}
# images the API serves itself, behind its key (ComfyUI's /view, an engine's /v1/images/{id}/content)
SAME_HOST_IMAGES = {"comfyui", "openai-compatible"}
# a self-hosted engine: its URL is what it needs, a key only behind a proxy
OPTIONAL_KEY = {"comfyui", "openai-compatible"}
# one synchronous request: a failure is its HTTP error, Stop lands while it is open, nothing polls
SYNCHRONOUS = {"aimlapi", "openai-compatible"}
INLINE_IMAGES = {"openai-compatible"}  # images come back in the answer (b64_json): nothing to download


def params(**values: object) -> GenerationParams:
    return GenerationParams(**{"prompt": "a lighthouse at dusk", "seed": 1234, **values})  # type: ignore[arg-type]


async def run(provider: Provider, p: GenerationParams | None = None, **kwargs: object) -> RunResult:
    return await provider.run(provider.prepare(p or params()), keys=KeyRing(), **kwargs)  # type: ignore[arg-type]


async def failure(provider: Provider, p: GenerationParams | None = None) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await run(provider, p)
    message = str(caught.value)
    assert message.startswith(f"{provider.id}: "), message
    assert "Traceback" not in message
    return caught.value


def submits(emulator: Emulator, provider_id: str) -> list:
    return emulator.calls("POST", SUBMIT[provider_id])


async def test_happy_path_sends_exactly_the_prepared_body(hosted: tuple[Provider, Emulator]) -> None:
    provider, emulator = hosted
    prepared = provider.prepare(params(width=1024, height=768))
    result = await provider.run(prepared, keys=KeyRing())
    [submit] = submits(emulator, provider.id)
    assert submit.body == prepared.body  # the emulator validated these fields and accepted them
    assert submit.headers["authorization"]
    assert len(result.images) == 1
    assert result.images[0].size == (prepared.sent.width, prepared.sent.height) == (1024, 768)
    assert result.seed == prepared.sent.seed == 1234
    assert emulator.downloads or provider.id in INLINE_IMAGES
    if provider.id in SAME_HOST_IMAGES:
        assert all(
            d.headers.get("authorization") == submit.headers["authorization"] for d in emulator.downloads
        )
    else:
        assert all("authorization" not in d.headers for d in emulator.downloads)
    assert str(result.cost) == COST[provider.id] if provider.id in COST else result.cost is None
    assert result.elapsed_s > 0


async def test_slow_job_is_polled_until_done(hosted: tuple[Provider, Emulator]) -> None:
    provider, emulator = hosted
    emulator.behaviour.polls_before_done = 3
    emulator.behaviour.job_delay_s = 0.3
    updates: list[Progress] = []
    started = time.monotonic()
    result = await run(provider, progress=updates.append)
    assert len(result.images) == 1
    assert time.monotonic() - started >= 0.3
    if provider.id in STATUS_PATH:
        assert len(emulator.calls("GET", STATUS_PATH[provider.id])) >= 4
        assert len(updates) >= 5
    assert updates[-1].fraction == 1.0


async def test_rate_limit_with_retry_after_then_success(hosted: tuple[Provider, Emulator]) -> None:
    provider, emulator = hosted
    emulator.behaviour.rate_limit_once = True
    started = time.monotonic()
    result = await run(provider)
    assert len(result.images) == 1
    assert len(submits(emulator, provider.id)) == 2
    assert time.monotonic() - started >= 1.0  # Retry-After: 1 was honoured


async def test_failed_job_reports_the_reason(hosted: tuple[Provider, Emulator]) -> None:
    provider, emulator = hosted
    emulator.behaviour.fail_reason = "content flagged by the safety checker"
    error = await failure(provider)
    assert "content flagged by the safety checker" in str(error)
    assert isinstance(error, JobFailed) or provider.id in SYNCHRONOUS  # an HTTP 400 or 500


async def test_malformed_answer_is_a_clear_error(hosted: tuple[Provider, Emulator]) -> None:
    provider, emulator = hosted
    emulator.behaviour.malformed = True
    error = await failure(provider)
    assert isinstance(error, MalformedResponse)
    assert "not JSON" in str(error)


async def test_refused_key_names_the_variable(hosted: tuple[Provider, Emulator], monkeypatch) -> None:
    provider, _ = hosted
    for index, name in enumerate(provider.key_names):  # a key that names no variable: redacted whole
        monkeypatch.setenv(name, f"wrong-{index}x7q-value")
    error = await failure(provider)
    assert isinstance(error, AuthError)
    assert provider.key_names[0] in str(error)
    assert "wrong-" not in str(error)


async def test_key_rejected_by_the_service(hosted: tuple[Provider, Emulator]) -> None:
    provider, emulator = hosted
    emulator.behaviour.reject_key = True
    error = await failure(provider)
    assert isinstance(error, AuthError) and "the key was refused" in str(error)


async def test_no_credit(hosted: tuple[Provider, Emulator]) -> None:
    provider, emulator = hosted
    emulator.behaviour.no_credit = True
    error = await failure(provider)
    assert isinstance(error, NoCredit)
    assert "top up" in str(error)


async def test_expired_image_url(hosted: tuple[Provider, Emulator]) -> None:
    provider, emulator = hosted
    emulator.behaviour.expired_image = True
    if provider.id == "aimlapi":
        emulator.behaviour.b64 = False
    error = await failure(provider)
    assert "may have expired" in str(error)


async def test_non_image_at_the_image_url(hosted: tuple[Provider, Emulator]) -> None:
    provider, emulator = hosted
    emulator.behaviour.non_image = True
    error = await failure(provider)
    assert isinstance(error, MalformedResponse) and "not a readable image" in str(error)


async def test_deadline_gives_a_timeout_not_a_hang(hosted: tuple[Provider, Emulator], monkeypatch) -> None:
    provider, emulator = hosted
    monkeypatch.setenv("ZIMAGE_TIMEOUT_S", "0.5")
    emulator.behaviour.polls_before_done = 10_000
    emulator.behaviour.job_delay_s = 30
    started = time.monotonic()
    error = await failure(provider)
    assert isinstance(error, ProviderTimeout)
    assert time.monotonic() - started < 2.0


async def test_transient_poll_error_is_retried(hosted: tuple[Provider, Emulator]) -> None:
    provider, emulator = hosted
    emulator.behaviour.server_error_once = True
    emulator.behaviour.polls_before_done = 1
    result = await run(provider)
    assert len(result.images) == 1
    assert "502" in emulator._fired or provider.id in SYNCHRONOUS  # nothing to poll


async def test_stop_cancels_the_job(hosted: tuple[Provider, Emulator]) -> None:
    from zimage_ui.cancel import CancelToken

    provider, emulator = hosted
    emulator.behaviour.polls_before_done = 10_000
    emulator.behaviour.job_delay_s = 30
    token = CancelToken()
    updates: list[Progress] = []

    def stop_once_running(update: Progress) -> None:
        updates.append(update)
        if len(updates) == 2:  # the job is known and being polled
            token.cancel()

    if provider.id in SYNCHRONOUS:  # Stop lands while the one request is open
        asyncio.get_running_loop().call_later(0.3, token.cancel)
    started = time.monotonic()
    with pytest.raises(Cancelled) as caught:
        await run(provider, cancel=token, progress=stop_once_running)
    assert time.monotonic() - started < 2.0
    cancel_calls = emulator.calls("POST", CANCEL_PATH.get(provider.id, "/cancel"))
    if provider.id in CANCEL_PATH:
        assert len(cancel_calls) == 1 and "cancelled at the provider" in str(caught.value)
        assert all(job.cancelled for job in emulator.jobs.values())
    else:
        assert not cancel_calls and "may still finish" in str(caught.value)


async def test_missing_key_sends_nothing(hosted: tuple[Provider, Emulator], monkeypatch) -> None:
    provider, emulator = hosted
    needed = provider.base_url_var if provider.id in OPTIONAL_KEY else provider.key_names[-1]  # type: ignore[attr-defined]
    monkeypatch.delenv(needed)
    with pytest.raises(ProviderUnavailable, match=needed):
        await run(provider)
    assert emulator.requests == []


async def test_no_key_value_in_any_error_or_display(hosted: tuple[Provider, Emulator]) -> None:
    provider, emulator = hosted
    secrets = list(emulator.keys.values())
    messages = [json.dumps(provider.prepare(params()).display())]
    for switch in ("fail_reason", "malformed", "reject_key", "no_credit", "expired_image", "non_image"):
        emulator.reset()
        setattr(emulator.behaviour, switch, "boom" if switch == "fail_reason" else True)
        messages.append(str(await failure(provider)))
    assert not [m for m in messages if any(secret in m for secret in secrets)]


# -- provider-specific shapes ------------------------------------------------------------------


async def test_inferencesh_waits_through_uploading(inferencesh_emulator: Emulator) -> None:
    from zimage_ui.providers import PROVIDERS

    result = await run(PROVIDERS["inferencesh"])
    assert len(result.images) == 1
    [task] = inferencesh_emulator.jobs.values()
    assert task.stage == 1  # status 9 (UPLOADING) was answered, and not taken for done
    assert task.polls == 2


@pytest.mark.parametrize("switch", ["legacy_envelope", "status_names", "image_as_string"])
async def test_inferencesh_other_shapes(inferencesh_emulator: Emulator, switch: str) -> None:
    from zimage_ui.providers import PROVIDERS

    setattr(inferencesh_emulator.behaviour, switch, True)
    assert len((await run(PROVIDERS["inferencesh"])).images) == 1


async def test_scenario_batch_and_failed_spelling(scenario_emulator: Emulator) -> None:
    from zimage_ui.providers import PROVIDERS

    result = await run(PROVIDERS["scenario"], params(num_images=3))
    assert len(result.images) == 3 and str(result.cost) == "15 compute units"
    assert len(scenario_emulator.calls("GET", "/assets/")) == 3
    assert submits(scenario_emulator, "scenario")[0].body["numOutputs"] == 3
    scenario_emulator.reset()
    scenario_emulator.behaviour.failed_spelling = "failed"
    scenario_emulator.behaviour.fail_reason = "GPU lost"
    assert isinstance(await failure(PROVIDERS["scenario"]), JobFailed)


async def test_aiml_base64_batch(aimlapi_emulator: Emulator) -> None:
    from zimage_ui.providers import PROVIDERS

    aimlapi_emulator.behaviour.b64 = True
    result = await run(PROVIDERS["aimlapi"], params(num_images=2, width=1280, height=720))
    assert [image.size for image in result.images] == [(1280, 736), (1280, 736)]
    assert not aimlapi_emulator.downloads
    assert any("1280x736" in note for note in result.notes)


async def test_runpod_runsync_in_time_needs_no_polling(runpod_emulator: Emulator) -> None:
    from zimage_ui.providers import PROVIDERS

    result = await run(PROVIDERS["runpod"], params(width=1152, height=896))
    assert not runpod_emulator.calls("GET", "/status/")
    assert result.images[0].size == (1024, 768)
    assert result.queue_s == 0.012 and result.run_s is not None and result.run_s > 0
    assert result.job_id and result.job_id.startswith("sync-")


async def test_runpod_runsync_timeout_then_status_polling(runpod_emulator: Emulator) -> None:
    from zimage_ui.providers import PROVIDERS

    runpod_emulator.behaviour.polls_before_done = 2
    result = await run(PROVIDERS["runpod"])
    assert len(runpod_emulator.calls("GET", "/status/")) == 3
    assert result.cost is not None and result.cost.unit == "USD"


@pytest.mark.parametrize(
    ("field", "value", "problem"), [("guidance", 2.5, "is not a known field"), ("seed", "42", "must be")]
)
async def test_emulators_reject_what_the_api_would(
    hosted: tuple[Provider, Emulator], field: str, value: object, problem: str
) -> None:
    provider, emulator = hosted
    prepared = provider.prepare(params())
    body = copy.deepcopy(prepared.body)
    target = body.get("input", body)  # inference.sh and RunPod nest the fields in "input"
    if provider.id == "comfyui":  # ComfyUI: the sampler's fields are the KSampler node's inputs
        target = next(node["inputs"] for node in body["prompt"].values() if node["class_type"] == "KSampler")
    target[field] = value
    headers = provider.auth_headers([emulator.keys[name] for name in provider.key_names])
    async with httpx.AsyncClient() as client:
        response = await client.post(prepared.url, json=body, headers=headers)
    assert response.status_code == 400
    assert f"{field} {problem}" in (api_message(response.json(), provider.error_paths) or "")


async def test_all_five_side_by_side_through_the_runner(emulators: dict[str, Emulator]) -> None:
    from zimage_ui.runner import generate_many

    for emulator in emulators.values():
        emulator.behaviour.job_delay_s = 0.3
    started = time.monotonic()
    outcomes = await generate_many(list(emulators), params(seed=None))
    assert [outcome.error for outcome in outcomes] == [None] * len(emulators)
    assert len({outcome.seed for outcome in outcomes}) == 1  # one concrete seed for every provider
    assert all(outcome.pngs and outcome.pngs[0].startswith(b"\x89PNG") for outcome in outcomes)
    assert time.monotonic() - started < 1.5  # concurrent: about one job's time, not five
