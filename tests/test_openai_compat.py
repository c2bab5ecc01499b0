"""OpenAI-style endpoints (SGLang diffusion, vLLM-Omni) against their loopback emulator."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli_runs import cli_process
from tests.emulators.openai_images import OpenAIImagesEmulator
from zimage_ui.errors import InvalidParams, ProviderError
from zimage_ui.metadata import read_provenance
from zimage_ui.params import GenerationParams
from zimage_ui.providers.base import KeyRing, RunResult
from zimage_ui.providers.hosted.openai_compat import (
    DEFAULT_MODEL,
    OpenAICompatibleProvider,
    configured_providers,
    endpoint_names,
    openai_body,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def engines() -> Iterator[dict[str, OpenAIImagesEmulator]]:
    started = {
        "sglang": OpenAIImagesEmulator("sglang", "ZIMAGE_OPENAI_SGLANG").start(),
        "vllm-omni": OpenAIImagesEmulator("vllm-omni", "ZIMAGE_OPENAI_VLLM").start(),
    }
    yield started
    for emulator in started.values():
        emulator.stop()


@pytest.fixture
def env(engines: dict[str, OpenAIImagesEmulator], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name in [name for name in os.environ if name.startswith("ZIMAGE_OPENAI")]:
        monkeypatch.delenv(name)
    variables = {"ZIMAGE_TIMEOUT_S": "10", "NO_PROXY": "127.0.0.1,localhost"}
    for emulator in engines.values():
        emulator.reset()
        variables |= emulator.env()
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return variables


def params(**values: object) -> GenerationParams:
    return GenerationParams(
        **{"prompt": "a tram in the rain", "seed": 77, "width": 512, "height": 384, **values}
    )  # type: ignore[arg-type]


def run(provider: OpenAICompatibleProvider, p: GenerationParams, keys: KeyRing | None = None) -> RunResult:
    return asyncio.run(provider.run(provider.prepare(p), keys=keys or KeyRing()))


def test_every_diffusion_field_is_sent_explicitly() -> None:
    body, sent, notes = openai_body(
        params(num_inference_steps=6, shift=4.0, guidance_scale=1.5), DEFAULT_MODEL
    )
    assert body == {
        "model": DEFAULT_MODEL,
        "prompt": "a tram in the rain",
        "n": 1,
        "size": "512x384",
        "response_format": "b64_json",
        "output_format": "png",
        "num_inference_steps": 6,
        "guidance_scale": 1.5,
        "flow_shift": 4.0,
        "seed": 77,
    }
    assert "width" not in body  # vLLM-Omni has no width/height fields
    assert dict(sent.extra_fields) == {
        "num_inference_steps": 6,
        "guidance_scale": 1.5,
        "flow_shift": 4.0,
        "seed": 77,
    }
    assert notes == []


def test_a_negative_prompt_without_guidance_is_sent_and_said_unused() -> None:
    body, sent, notes = openai_body(params(negative_prompt="fog"), DEFAULT_MODEL)
    assert body["negative_prompt"] == "fog"
    assert not sent.negative_sent
    assert any("guidance 0" in note for note in notes)
    _, sent, notes = openai_body(params(negative_prompt="fog", guidance_scale=2.0), DEFAULT_MODEL)
    assert sent.negative_sent and not notes


def test_endpoints_are_read_from_the_environment() -> None:
    environ = {
        "ZIMAGE_OPENAI_BASE_URL": "http://a:30000/v1",
        "ZIMAGE_OPENAI_H100_BASE_URL": "http://b:30000/v1",
        "ZIMAGE_OPENAI_B200_PAIR_BASE_URL": "http://c:8000/v1",
        "ZIMAGE_OPENAI_EMPTY_BASE_URL": " ",
        "ZIMAGE_OPENAI_API_KEY": "k",
        "ZIMAGE_OPENAI_MODEL": "m",
    }
    assert endpoint_names(environ) == ["", "b200_pair", "h100"]
    ids = [provider.id for provider in configured_providers(environ)]
    assert ids == ["openai-compatible", "openai-b200-pair", "openai-h100"]
    h100 = configured_providers(environ)[2]
    assert (h100.base_url_var, h100.key_names, h100.model_var) == (
        "ZIMAGE_OPENAI_H100_BASE_URL",
        ("ZIMAGE_OPENAI_H100_API_KEY",),
        "ZIMAGE_OPENAI_H100_MODEL",
    )


def test_unconfigured_it_says_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ZIMAGE_OPENAI_BASE_URL", raising=False)
    status = OpenAICompatibleProvider().availability(KeyRing())
    assert not status.usable
    assert "set ZIMAGE_OPENAI_BASE_URL" in status.reason


def test_sglang_run_returns_each_seeds_image_and_the_engine_time(
    env: dict[str, str], engines: dict[str, OpenAIImagesEmulator]
) -> None:
    provider = OpenAICompatibleProvider(name="sglang")
    result = run(provider, params(num_images=2))
    assert [image.size for image in result.images] == [(512, 384), (512, 384)]
    colours = [image.getpixel((0, 0)) for image in result.images]
    assert colours[0] != colours[1]  # seed 77 and seed 78: each image its own
    assert result.run_s == pytest.approx(0.25)
    (call,) = engines["sglang"].calls("POST", "/images/generations")
    assert call.headers["authorization"] == "Bearer emu-openai-key"
    assert engines["sglang"].steps_run == [8]  # never SGLang's own 9


def test_a_relative_image_link_is_fetched_from_the_engine(
    env: dict[str, str], engines: dict[str, OpenAIImagesEmulator], monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = OpenAICompatibleProvider(name="sglang")
    monkeypatch.setattr(
        "zimage_ui.providers.hosted.openai_compat.openai_body",
        lambda p, model: (lambda body, sent, notes: ({**body, "response_format": "url"}, sent, notes))(
            *openai_body(p, model)
        ),
    )
    result = run(provider, params(seed=5))
    assert result.images[0].size == (512, 384)
    assert engines["sglang"].calls("GET", "/content")


def test_vllm_omni_takes_the_same_body_and_refuses_a_wrong_model(
    env: dict[str, str], engines: dict[str, OpenAIImagesEmulator], monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = OpenAICompatibleProvider(name="vllm")
    assert run(provider, params()).images[0].size == (512, 384)
    assert engines["vllm-omni"].steps_run == [8]  # never vLLM-Omni's own 50
    monkeypatch.setenv("ZIMAGE_OPENAI_VLLM_MODEL", "someone/other-model")
    with pytest.raises(ProviderError) as caught:
        run(provider, params())
    assert "does not exist" in str(caught.value)
    assert "Traceback" not in str(caught.value)


def test_no_key_no_authorization_header(
    env: dict[str, str], engines: dict[str, OpenAIImagesEmulator], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ZIMAGE_OPENAI_SGLANG_API_KEY")
    engines["sglang"].require_key = False
    provider = OpenAICompatibleProvider(name="sglang")
    assert provider.availability(KeyRing()).usable
    assert "Authorization" not in provider.prepare(params()).headers
    run(provider, params())
    (call,) = engines["sglang"].calls("POST")
    assert "authorization" not in call.headers


def test_a_wrong_key_is_named_and_never_shown(
    env: dict[str, str], engines: dict[str, OpenAIImagesEmulator]
) -> None:
    provider = OpenAICompatibleProvider(name="sglang")
    with pytest.raises(ProviderError) as caught:
        run(provider, params(), KeyRing({"ZIMAGE_OPENAI_SGLANG_API_KEY": "wrong-key-123456"}))
    assert "ZIMAGE_OPENAI_SGLANG_API_KEY" in str(caught.value)
    assert "wrong-key-123456" not in str(caught.value)


def test_image_inputs_are_refused_until_edits_are_mapped(env: dict[str, str]) -> None:
    with pytest.raises(InvalidParams) as caught:
        OpenAICompatibleProvider(name="sglang").prepare(params(inputs={"image": "https://x.test/a.png"}))
    assert "text-to-image only" in caught.value.fields["image"]


def test_cli_writes_a_png_whose_zimage_chunk_shows_the_extra_fields(
    env: dict[str, str], engines: dict[str, OpenAIImagesEmulator], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    flags = "--provider openai-sglang --prompt tram --seed 9 --steps 7 --width 512 --height 512 --out"
    # a fresh process: engines are read from the environment when the providers are listed, at start
    done = cli_process("generate", *flags.split(), str(out), env={**os.environ, **env})
    assert done.returncode == 0, done.stderr
    (png,) = out.glob("*.png")
    record = read_provenance(png.read_bytes())
    assert record is not None
    assert record["provider"] == "openai-sglang"
    assert record["sent"]["extra_fields"] == {
        "num_inference_steps": 7,
        "guidance_scale": 0.0,
        "flow_shift": 3.0,
        "seed": 9,
    }
    assert json.loads(json.dumps(record))  # plain JSON


def test_two_endpoints_are_two_providers_compared_side_by_side_on_the_page(
    env: dict[str, str], engines: dict[str, OpenAIImagesEmulator]
) -> None:
    from gradio_client import Client

    from tests.serving import api_url, running_app

    with running_app({**env, "ZIMAGE_SERVER_KEYS": "all"}) as url:
        client = Client(api_url(url), verbose=False)
        listed = {row["id"]: row for row in client.predict(api_name="/providers")}
        assert listed["openai-sglang"]["usable"] and listed["openai-vllm"]["usable"]
        images, report = client.predict(
            "a tram", "openai-sglang; openai-vllm", width=512, height=512, seed=31,
            api_name="/compare",
        )  # fmt: skip
    assert [side["provider"] for side in report["sides"]] == ["openai-sglang", "openai-vllm"]
    assert len(images) == 2
    for emulator in engines.values():
        (call,) = emulator.calls("POST", "/images/generations")
        assert call.body["seed"] == 31 and call.body["size"] == "512x512"
