"""The huggingface provider: prepare shows what huggingface_hub is given; runs go through the real
AsyncInferenceClient to a loopback emulator of the Hub and the router, and nowhere else."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from huggingface_hub import constants as hf_constants
from huggingface_hub import set_async_client_factory, set_client_factory
from huggingface_hub.inference._providers._common import _fetch_inference_provider_mapping
from huggingface_hub.utils._http import default_async_client_factory, default_client_factory
from PIL import Image

from tests.cli_runs import cli
from tests.emulators.huggingface import FAL_ID, MODEL, TOKEN, WAVESPEED_ID, HuggingFaceEmulator
from zimage_ui.cancel import CancelToken
from zimage_ui.errors import (
    AuthError,
    Cancelled,
    MalformedResponse,
    NoCredit,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from zimage_ui.params import GenerationParams
from zimage_ui.providers import PROVIDERS
from zimage_ui.providers.base import KeyRing, RunResult
from zimage_ui.providers.hosted import huggingface
from zimage_ui.providers.hosted.huggingface import HuggingFaceProvider, routed_payload, text_to_image_args

ROOT = Path(__file__).resolve().parent.parent
PARAMS = GenerationParams(prompt="a red fox", width=512, height=384, seed=1234)


class Escaped(AssertionError):
    pass


@pytest.fixture(scope="module")
def server() -> Iterator[HuggingFaceEmulator]:
    with HuggingFaceEmulator() as emulator:
        yield emulator


@pytest.fixture
def emulator(server: HuggingFaceEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[HuggingFaceEmulator]:
    server.reset()
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("ZIMAGE_HF_PROVIDER", raising=False)
    monkeypatch.delenv("ZIMAGE_HF_MODEL", raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)  # conftest sets it; the guard holds
    _fetch_inference_provider_mapping.cache_clear()
    yield server
    _fetch_inference_provider_mapping.cache_clear()
    huggingface._installed.clear()
    set_client_factory(default_client_factory)
    set_async_client_factory(default_async_client_factory)


@pytest.fixture
def hosts() -> list[str]:
    return []


@pytest.fixture
def provider(hosts: list[str]) -> HuggingFaceProvider:
    """The provider with a guard at its transport: every request's host, after routing, must be
    127.0.0.1; any other raises before a byte is sent."""

    def loopback_only(request: httpx2.Request) -> None:
        hosts.append(request.url.host)
        if request.url.host != "127.0.0.1":
            raise Escaped(f"a request tried to leave the machine: {request.url}")

    return HuggingFaceProvider(guard=loopback_only)


def run(provider: HuggingFaceProvider, prepared, keys: KeyRing | None = None, cancel=None):
    return asyncio.run(provider.run(prepared, keys=keys or KeyRing(), cancel=cancel))


# -- prepare --------------------------------------------------------------------------------


def test_prepare_shows_the_text_to_image_arguments(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("ZIMAGE_HF_PROVIDER", raising=False)
    monkeypatch.delenv("ZIMAGE_HF_MODEL", raising=False)
    shown = HuggingFaceProvider().prepare(PARAMS).display()
    assert shown["body"] == {
        "prompt": "a red fox",
        "negative_prompt": None,
        "width": 512,
        "height": 384,
        "num_inference_steps": 8,
        "guidance_scale": 0.0,
        "seed": 1234,
        "model": MODEL,
        "provider": "auto",
    }
    assert any("auto" in note and "inferenceProviderMapping" in note for note in shown["notes"])
    assert "routed_payload" not in shown
    assert "Bearer ***" in shown["headers"]["Authorization"]


def test_prepare_for_fal_ai_shows_its_payload(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ZIMAGE_HF_PROVIDER", "fal-ai")
    monkeypatch.setenv("ZIMAGE_HF_MODEL", "someone/other-model")
    shown = HuggingFaceProvider().prepare(PARAMS.model_copy(update={"negative_prompt": "blur"})).display()
    assert shown["body"]["provider"] == "fal-ai" and shown["body"]["model"] == "someone/other-model"
    assert shown["routed_payload"] == {
        "prompt": "a red fox",
        "negative_prompt": "blur",
        "num_inference_steps": 8,
        "guidance_scale": 0.0,
        "seed": 1234,
        "image_size": {"width": 512, "height": 384},
    }
    assert any("image_size" in note for note in shown["notes"])


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("replicate", {"input": {"prompt": "p", "width": 512, "height": 384, "seed": 7}}),
        ("wavespeed", {"prompt": "p", "width": 512, "height": 384, "seed": 7}),
        ("hf-inference", {"inputs": "p", "parameters": {"width": 512, "height": 384, "seed": 7}}),
    ],
)
def test_each_helper_shapes_the_payload_as_the_table_says(name: str, expected: dict):
    args = {"prompt": "p", "negative_prompt": None, "width": 512, "height": 384, "seed": 7, "model": MODEL}
    assert routed_payload(name, args) == expected


def test_unknown_provider_is_noted():
    assert routed_payload("no-such-provider", {"prompt": "p", "model": MODEL}) is None


def test_mapping_notes_steps_clamped():
    _, sent, notes = text_to_image_args(PARAMS.model_copy(update={"num_inference_steps": 80}), MODEL)
    assert sent.steps == 50 and any("50 steps instead of 80" in note for note in notes)


def test_registered_and_documented():
    assert "huggingface" in PROVIDERS
    readme = (ROOT / "README.md").read_text()
    for name in (
        "HF_TOKEN",
        "ZIMAGE_HF_PROVIDER",
        "ZIMAGE_HF_MODEL",
        "ZIMAGE_HUGGINGFACE_BASE_URL",
        "HF_ENDPOINT",
    ):
        assert f"`{name}`" in readme
    assert "huggingface_hub==2.4.0" in (ROOT / "requirements.txt").read_text()


# -- runs against the emulator ----------------------------------------------------------------


def test_auto_resolves_through_the_hub_mapping_and_returns_the_image(emulator, provider, hosts):
    result = run(provider, provider.prepare(PARAMS))
    assert result.images[0].size == (512, 384) and result.seed == 1234
    assert "provider auto resolved to fal-ai" in result.notes
    [info] = emulator.calls("GET", "/api/models/")
    assert info.path == f"/api/models/{MODEL}"
    [post] = emulator.calls("POST", f"/fal-ai/{FAL_ID}")
    assert post.body == {
        "prompt": "a red fox",
        "num_inference_steps": 8,
        "guidance_scale": 0.0,
        "seed": 1234,
        "image_size": {"width": 512, "height": 384},
    }
    assert post.headers["authorization"] == f"Bearer {TOKEN}"
    assert len(emulator.downloads) == 1
    assert hosts and set(hosts) == {"127.0.0.1"}


def test_the_seed_colours_the_image(emulator, provider):
    image = run(provider, provider.prepare(PARAMS)).images[0]
    assert isinstance(image, Image.Image)
    assert image.getpixel((0, 0)) == ((1234 * 97) % 256, (1234 * 57) % 256, (1234 * 31) % 256)


def test_a_named_provider_the_model_lacks_is_refused_with_who_serves_it(emulator, provider, monkeypatch):
    monkeypatch.setenv("ZIMAGE_HF_PROVIDER", "replicate")
    with pytest.raises(ProviderUnavailable, match=r"replicate does not serve .* served by fal-ai"):
        run(provider, provider.prepare(PARAMS))
    assert not emulator.calls("POST")


def test_typed_key_is_used(emulator, provider, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    result = run(provider, provider.prepare(PARAMS), keys=KeyRing({"HF_TOKEN": TOKEN}, use_env=False))
    assert result.images


def test_guard_stops_an_unrouted_request(emulator, provider, monkeypatch):
    monkeypatch.delenv("ZIMAGE_HUGGINGFACE_BASE_URL")
    with pytest.raises(ProviderError):
        run(provider, provider.prepare(PARAMS))
    assert not emulator.calls("POST")


@pytest.mark.parametrize(
    ("switch", "kind", "words"),
    [
        ("reject_key", AuthError, "HF_TOKEN was refused (HTTP 401"),
        ("no_credit", NoCredit, "HTTP 402"),
        ("rate_limit_always", RateLimited, "retry in 1 s"),
        ("server_error_always", ProviderUnavailable, "fal-ai failed (HTTP 500"),
        ("malformed", MalformedResponse, "malformed answer"),
        ("non_image", MalformedResponse, "not an image"),
        ("oversized_image", MalformedResponse, "6000x6000"),
    ],
)
def test_faults_give_clear_messages_without_the_token(emulator, provider, switch, kind, words):
    setattr(emulator.behaviour, switch, True)
    if switch == "rate_limit_always":
        emulator.behaviour.retry_after = "1"
    with pytest.raises(kind) as caught:
        run(provider, provider.prepare(PARAMS))
    assert words in str(caught.value)
    assert TOKEN not in str(caught.value) and "emulatortoken" not in str(caught.value)


def test_an_echoed_token_is_scrubbed(emulator, provider):
    emulator.behaviour.reject_key = True
    emulator.behaviour.echo_key = True
    with pytest.raises(AuthError) as caught:
        run(provider, provider.prepare(PARAMS))
    assert "invalid credentials" in str(caught.value) and "emulatortoken" not in str(caught.value)


def test_stop_ends_a_slow_run(emulator, provider):
    emulator.behaviour.job_delay_s = 20

    async def stop_soon():
        cancel = CancelToken()
        asyncio.get_running_loop().call_later(0.5, cancel.cancel)
        started = asyncio.get_running_loop().time()
        with pytest.raises(Cancelled):
            await provider.run(provider.prepare(PARAMS), keys=KeyRing(), cancel=cancel)
        return asyncio.get_running_loop().time() - started

    assert asyncio.run(stop_soon()) < 5
    assert emulator.calls("POST")


def test_cli_generate_writes_a_png(emulator, tmp_path: Path):
    env = {
        **os.environ,
        **emulator.env(),
        "HTTPS_PROXY": "http://127.0.0.1:9",  # anything not routed to the emulator fails here
        "NO_PROXY": "127.0.0.1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_OFFLINE": "0",
    }
    env.pop("ZIMAGE_HF_PROVIDER", None)
    out = tmp_path / "out"
    done = cli(
        "generate", "--provider", "huggingface", "--prompt", "a fox",
        "--width", "512", "--height", "384", "--seed", "77", "--out", str(out), env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    pngs = list(out.rglob("*.png"))
    assert len(pngs) == 1 and Image.open(pngs[0]).size == (512, 384)
    assert emulator.calls("GET", "/api/models/") and emulator.calls("POST", "/fal-ai/")
    assert TOKEN not in done.stdout + done.stderr


def test_a_named_provider_goes_its_own_way_wavespeed_polls(emulator, provider, monkeypatch):
    emulator.serve_with_wavespeed()
    emulator.behaviour.polls_before_done = 2
    monkeypatch.setenv("ZIMAGE_HF_PROVIDER", "wavespeed")
    prepared = provider.prepare(PARAMS)
    assert prepared.display()["routed_payload"] == {
        "prompt": "a red fox", "width": 512, "height": 384, "num_inference_steps": 8,
        "guidance_scale": 0.0, "seed": 1234,
    }  # fmt: skip
    result = run(provider, prepared)
    assert result.images[0].size == (512, 384)
    [post] = emulator.calls("POST", f"/wavespeed/api/v3/{WAVESPEED_ID}")
    assert post.body == prepared.display()["routed_payload"]
    assert len(emulator.calls("GET", "/wavespeed/api/v3/predictions/")) == 3  # the router's prefix kept
    assert not emulator.calls("POST", "/fal-ai/")


def test_auto_takes_the_first_provider_the_hub_lists(emulator, provider):
    emulator.serve_with_wavespeed()  # wavespeed first, fal-ai second
    result = run(provider, provider.prepare(PARAMS))
    assert "provider auto resolved to wavespeed" in result.notes
    assert emulator.calls("POST", "/wavespeed/") and not emulator.calls("POST", "/fal-ai/")


def test_the_hub_failing_is_a_clear_error(emulator, provider):
    emulator.hub_status = 503
    with pytest.raises(ProviderUnavailable, match=r"HTTP 503.*retry in a moment"):
        run(provider, provider.prepare(PARAMS))
    assert not emulator.calls("POST")


def test_a_hanging_provider_hits_the_overall_deadline(emulator, provider, monkeypatch):
    monkeypatch.setenv("ZIMAGE_TIMEOUT_S", "1")
    emulator.behaviour.job_delay_s = 20
    with pytest.raises(ProviderTimeout, match="no image within 1 s"):
        run(provider, provider.prepare(PARAMS))


def test_offline_mode_says_so(emulator, provider, monkeypatch):
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ProviderUnavailable, match="HF_HUB_OFFLINE is set"):
        run(provider, provider.prepare(PARAMS))
    assert not emulator.requests


def test_only_an_hf_token_is_sent(emulator, provider, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "fal-key-0123456789")
    with pytest.raises(AuthError, match="hf_") as caught:
        run(provider, provider.prepare(PARAMS))
    assert "0123456789" not in str(caught.value)
    assert not emulator.requests


def test_stalled_runs_take_neither_the_shared_pool_nor_more_than_their_deadline(
    emulator, provider, monkeypatch
):
    """Six runs whose provider never answers: each ends at the run's deadline, and meanwhile the
    default thread pool (where the app decodes and encodes every other user's images) answers at
    once: the runs work on a pool of their own."""
    monkeypatch.setenv("ZIMAGE_TIMEOUT_S", "2")
    emulator.behaviour.job_delay_s = 20

    async def scenario() -> tuple[list[BaseException | RunResult], list[float], float]:
        started = time.monotonic()
        runs = asyncio.gather(
            *(provider.run(provider.prepare(PARAMS), keys=KeyRing()) for _ in range(6)),
            return_exceptions=True,
        )
        waits = []
        for _ in range(10):
            asked = time.monotonic()
            await asyncio.to_thread(lambda: None)
            waits.append(time.monotonic() - asked)
            await asyncio.sleep(0.1)
        outcomes = await runs
        return outcomes, waits, time.monotonic() - started

    outcomes, waits, took = asyncio.run(scenario())
    assert all(isinstance(outcome, ProviderTimeout) for outcome in outcomes), outcomes
    assert max(waits) < 0.5, f"the shared pool waited {max(waits):.2f} s"
    assert took < 6, "six stalled runs end at their deadline, not one after another"
