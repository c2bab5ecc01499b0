"""Pure mapping of params to each hosted API's body, checked field by field against PROVIDERS.md."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest

from zimage_ui.errors import InvalidParams
from zimage_ui.params import MAX_SEED, GenerationParams, ProviderOptions
from zimage_ui.providers import PROVIDERS
from zimage_ui.providers.hosted import HOSTED_PROVIDERS
from zimage_ui.providers.hosted.aimlapi import aiml_body
from zimage_ui.providers.hosted.base import fit_size, nearest_listed, snap_side
from zimage_ui.providers.hosted.evolink import evolink_body
from zimage_ui.providers.hosted.inferencesh import inferencesh_body
from zimage_ui.providers.hosted.runpod import SIZES, runpod_body
from zimage_ui.providers.hosted.scenario import scenario_body

HOSTED_IDS = ["scenario", "inferencesh", "aimlapi", "evolink", "runpod"]
# after the five: OpenAI-style endpoints (as configured), ComfyUI, Hugging Face Inference Providers
ENGINE_IDS = ["openai-compatible", "comfyui", "huggingface"]


def params(**values: object) -> GenerationParams:
    return GenerationParams(**{"prompt": "a red fox", "seed": 42, **values})  # type: ignore[arg-type]


def test_registry_holds_the_five_then_the_engines() -> None:
    assert sorted(provider.id for provider in HOSTED_PROVIDERS[5:]) == sorted(ENGINE_IDS)
    assert [provider.id for provider in HOSTED_PROVIDERS[:5]] == HOSTED_IDS
    assert all(PROVIDERS[provider.id] is provider for provider in HOSTED_PROVIDERS)


# -- Scenario ----------------------------------------------------------------------------------


def test_scenario_body() -> None:
    body, sent, notes = scenario_body(params(width=1152, height=896, num_inference_steps=9))
    assert body == {
        "prompt": "a red fox",
        "numOutputs": 1,
        "numInferenceSteps": 9,
        "width": 1152,
        "height": 896,
        "seed": 42,
    }
    assert (sent.width, sent.height, sent.steps, sent.seed) == (1152, 896, 9, 42)
    assert notes == []


def test_scenario_always_sends_num_outputs_and_the_negative_prompt_when_given() -> None:
    body, _, _ = scenario_body(params(num_images=3, negative_prompt="blur"))
    assert body["numOutputs"] == 3
    assert body["negativePrompt"] == "blur"


@pytest.mark.parametrize("body_of", [scenario_body, aiml_body, evolink_body])
def test_seed_zero_is_sent_as_one_where_the_minimum_is_one(body_of) -> None:
    body, sent, notes = body_of(params(seed=0))
    assert body["seed"] == 1 and sent.seed == 1
    assert any("sent seed 1 instead of 0" in note for note in notes)


@pytest.mark.parametrize("body_of", [inferencesh_body, runpod_body])
def test_seed_zero_is_sent_as_is_where_zero_is_valid(body_of) -> None:
    body, sent, notes = body_of(params(seed=0))
    assert body["input"]["seed"] == 0 and sent.seed == 0
    assert not any("seed" in note for note in notes)


# -- inference.sh ------------------------------------------------------------------------------


def test_inferencesh_body() -> None:
    body, sent, notes = inferencesh_body(params(width=832, height=1248, num_inference_steps=9, shift=4.0))
    assert body == {
        "app": "infsh/z-image-turbo",
        "input": {"prompt": "a red fox", "width": 832, "height": 1248, "seed": 42, "steps": 9, "shift": 4.0},
    }
    assert (sent.width, sent.height, sent.steps, sent.shift) == (832, 1248, 9, 4.0)
    assert notes == []


def test_inferencesh_notes_what_it_cannot_send() -> None:
    _, _, notes = inferencesh_body(params(negative_prompt="blur", num_images=2, guidance_scale=2.0))
    assert any("negative prompt not sent" in note for note in notes)
    assert any("guidance 2 not sent" in note for note in notes)
    assert any("1 image instead of 2" in note for note in notes)


def test_snap_side_to_multiples_of_eight() -> None:
    assert [snap_side(v, 8, 8, 4096) for v in (1000, 1003, 1004, 1024)] == [1000, 1000, 1008, 1024]


# -- AIML --------------------------------------------------------------------------------------


def test_aiml_body() -> None:
    body, sent, notes = aiml_body(params(width=1024, height=768, num_images=2, output_format="webp"))
    assert body == {
        "model": "alibaba/z-image-turbo",
        "prompt": "a red fox",
        "image_size": {"width": 1024, "height": 768},
        "num_inference_steps": 8,
        "seed": 42,
        "num_images": 2,
        "output_format": "webp",
        "enable_prompt_expansion": False,
        "enable_safety_checker": True,
    }
    assert (sent.width, sent.height, sent.steps) == (1024, 768, 8)
    assert notes == ["prompt expansion off (enable_prompt_expansion; AIML's own default is on)"]


def test_aiml_switches_come_from_the_options() -> None:
    options = ProviderOptions(prompt_expansion=True, safety_checker=False)
    body, _, notes = aiml_body(params(options=options))
    assert body["enable_prompt_expansion"] is True
    assert body["enable_safety_checker"] is False
    assert any("prompt expansion on" in note for note in notes)


def test_aiml_caps_steps_at_eight_with_a_note() -> None:
    body, sent, notes = aiml_body(params(num_inference_steps=20))
    assert body["num_inference_steps"] == 8 and sent.steps == 8
    assert "sent 8 steps instead of 20: AIML API accepts 1..8" in notes


@pytest.mark.parametrize(
    ("asked", "sent"),
    [
        ((1024, 1024), (1024, 1024)),
        ((1280, 720), (1280, 736)),
        ((256, 256), (512, 512)),
        ((256, 512), (512, 1024)),
        ((256, 2048), (512, 2048)),
        ((2048, 2048), (2048, 2048)),
    ],
)
def test_aiml_sizes_are_multiples_of_32_in_512_to_2048(asked: tuple[int, int], sent: tuple[int, int]) -> None:
    body, values, notes = aiml_body(params(width=asked[0], height=asked[1]))
    assert (body["image_size"]["width"], body["image_size"]["height"]) == sent
    assert (values.width, values.height) == sent
    snapped = [note for note in notes if note.startswith("sent ") and "instead of" in note and "x" in note]
    assert bool(snapped) == (asked != sent)
    if snapped:
        assert snapped[0].startswith(f"sent {sent[0]}x{sent[1]} instead of {asked[0]}x{asked[1]}: AIML")


# -- EvoLink -----------------------------------------------------------------------------------


def test_evolink_body() -> None:
    body, sent, notes = evolink_body(params(width=1024, height=768))
    assert body == {
        "model": "z-image-turbo",
        "prompt": "a red fox",
        "size": "1024x768",
        "seed": 42,
        "nsfw_check": True,
    }
    assert sent.steps is None and sent.steps_label == "provider default"
    assert notes == []


@pytest.mark.parametrize(
    ("asked", "size"),
    [
        ((2048, 2048), "1536x1536"),
        ((256, 256), "384x384"),
        ((2048, 1152), "1536x864"),
        ((1536, 256), "1536x384"),
    ],
)
def test_evolink_sizes_fit_376_to_1536(asked: tuple[int, int], size: str) -> None:
    body, _, notes = evolink_body(params(width=asked[0], height=asked[1]))
    assert body["size"] == size
    assert any(note.startswith(f"sent {size} instead of {asked[0]}x{asked[1]}") for note in notes)


def test_evolink_takes_no_steps_and_says_so() -> None:
    body, sent, notes = evolink_body(params(num_inference_steps=12))
    assert "steps" not in json.dumps(body) and sent.steps is None
    assert any("steps not sent" in note and "12" in note for note in notes)


def test_evolink_refuses_prompts_over_2000_characters() -> None:
    with pytest.raises(InvalidParams, match="2000"):
        evolink_body(params(prompt="x" * 2001))


# -- RunPod ------------------------------------------------------------------------------------


def test_runpod_body() -> None:
    body, sent, notes = runpod_body(params(width=1024, height=1024, output_format="jpeg"))
    assert body == {
        "input": {
            "prompt": "a red fox",
            "size": "1024*1024",
            "seed": 42,
            "output_format": "jpeg",
            "enable_safety_checker": True,
        }
    }
    assert sent.steps is None
    assert notes == []


@pytest.mark.parametrize(
    ("asked", "size"),
    [
        ((1024, 1024), "1024*1024"),
        ((1152, 896), "1024*768"),
        ((896, 1152), "768*1024"),
        ((1344, 576), "1280*720"),
        ((576, 1344), "720*1280"),
        ((2048, 2048), "1280*1280"),
        ((256, 256), "512*512"),
        ((1536, 1536), "1280*1280"),
        ((720, 720), "768*768"),
    ],
)
def test_runpod_snaps_to_the_nearest_listed_size(asked: tuple[int, int], size: str) -> None:
    body, sent, notes = runpod_body(params(width=asked[0], height=asked[1]))
    assert body["input"]["size"] == size
    assert f"{sent.width}*{sent.height}" == size
    if f"{asked[0]}*{asked[1]}" != size:
        assert notes[0].startswith(
            f"sent {sent.width}x{sent.height} instead of {asked[0]}x{asked[1]}: RunPod"
        )


def test_nearest_listed_prefers_aspect_ratio_over_area() -> None:
    assert nearest_listed(1600, 1200, SIZES) == (1024, 768)
    assert nearest_listed(400, 400, SIZES) == (512, 512)


def test_fit_size_keeps_aspect_ratio_inside_the_box() -> None:
    assert fit_size(300, 600, low=512, high=2048, multiple=32) == (512, 1024)
    assert fit_size(2048, 1024, low=376, high=1536, multiple=16) == (1536, 768)


# -- every provider ----------------------------------------------------------------------------


@pytest.mark.parametrize("provider_id", HOSTED_IDS)
def test_prepare_sends_a_concrete_seed_and_shows_it(provider_id: str) -> None:
    prepared = PROVIDERS[provider_id].prepare(params(seed=None))
    assert prepared.params.seed is not None and 1 <= prepared.params.seed <= MAX_SEED
    assert prepared.sent.seed == prepared.params.seed
    assert str(prepared.sent.seed) in json.dumps(prepared.body)


@pytest.mark.parametrize("provider_id", HOSTED_IDS)
def test_display_redacts_the_authorization_header(provider_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = {"SCENARIO_SDK_API_KEY": "k-scn-1", "SCENARIO_SDK_API_SECRET": "s-scn-2"}
    secrets |= {"INFERENCE_API_KEY": "k-inf-3", "AIML_API_KEY": "k-aiml-4"}
    secrets |= {"EVOLINK_API_KEY": "k-evo-5", "RUNPOD_API_KEY": "k-rp-6"}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    shown = PROVIDERS[provider_id].prepare(params()).display()
    assert shown["headers"]["Authorization"].endswith("***")
    text = json.dumps(shown)
    assert not any(value in text for value in secrets.values())


DEFAULTS = {
    "scenario": ("api.cloud.scenario.com", "/v1", "/generate/custom/model_z-image-turbo"),
    "inferencesh": ("api.inference.sh", "", "/apps/run"),
    "aimlapi": ("api.aimlapi.com", "/v1", "/images/generations"),
    "evolink": ("api.evolink.ai", "/v1", "/images/generations"),
    "runpod": ("api.runpod.ai", "/v2/z-image-turbo", "/runsync"),
}


@pytest.mark.parametrize("provider_id", HOSTED_IDS)
def test_base_url_default_and_override_read_at_prepare_time(
    provider_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = PROVIDERS[provider_id]
    variable = f"ZIMAGE_{provider_id.upper()}_BASE_URL"
    monkeypatch.delenv(variable, raising=False)
    host, root, submit = DEFAULTS[provider_id]
    url = urlsplit(provider.prepare(params()).url)
    assert (url.scheme, url.netloc, url.path) == ("https", host, root + submit)
    monkeypatch.setenv(variable, "http://127.0.0.1:9/emulated/")
    assert provider.prepare(params()).url == "http://127.0.0.1:9/emulated" + submit


@pytest.mark.parametrize("provider_id", HOSTED_IDS)
def test_capabilities_match_the_wire_facts(provider_id: str) -> None:
    expected = {
        "scenario": ((1, 50), 4, True),
        "inferencesh": ((1, 50), 1, False),
        "aimlapi": ((1, 8), 4, True),
        "evolink": (None, 1, False),
        "runpod": (None, 1, True),
    }[provider_id]
    caps = PROVIDERS[provider_id].capabilities
    assert (caps.steps_range, caps.max_images, caps.cost_reporting) == expected
