"""The local text encoder as the prompt enhancer (`providers.local.prompt_writer`), on the tiny
model's Qwen3 encoder: its words are noise, so these tests hold the plumbing (the tied head, the
chat template, the line for the device, Stop, memory 16gb, the saved checkpoint, ZeroGPU's
boundary in test_zerogpu), never the words."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from zimage_ui.cancel import CancelToken
from zimage_ui.enhancer import (
    SYSTEM_PROMPT,
    TINY_WRITER,
    EnhancerConfig,
    EnhancerFailed,
    LocalEnhancer,
    enhance,
    enhancer_config,
)
from zimage_ui.errors import Cancelled, JobFailed
from zimage_ui.infotext import read_png_settings
from zimage_ui.metadata import read_text_chunks
from zimage_ui.params import GenerationParams
from zimage_ui.providers.local import prompt_writer
from zimage_ui.providers.local.prompt_cache import TextEncoderShuttle
from zimage_ui.providers.local.tiny_model import build_tiny_pipeline
from zimage_ui.runner import generate_one

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny() -> Any:
    return build_tiny_pipeline()


def _write(pipeline: Any, prompt: str = "a red fox in snow", **kwargs: Any) -> str:
    return prompt_writer.write(
        pipeline, SYSTEM_PROMPT, prompt, limit_s=60.0, stop=kwargs.pop("stop", CancelToken()), **kwargs
    )


def test_the_encoder_with_its_tied_head_is_the_chat_model_with_no_new_weights(tiny: Any):
    encoder = tiny.text_encoder
    model = prompt_writer.causal_lm(encoder)
    assert model.model is encoder
    assert model.lm_head.weight is encoder.embed_tokens.weight  # the same tensor, not a copy
    assert not any(parameter.is_meta for parameter in model.parameters())
    assert {id(p) for p in model.parameters()} == {id(p) for p in encoder.parameters()}
    ids = torch.tensor([[5, 17, 42, 3]])
    with torch.no_grad():
        logits = model(input_ids=ids).logits
        hidden = encoder(input_ids=ids).last_hidden_state
    assert torch.allclose(logits, hidden @ encoder.embed_tokens.weight.T, atol=1e-6)


def test_an_encoder_that_is_not_a_tied_qwen3_is_refused_by_name(tiny: Any):
    from transformers import Qwen3Config, Qwen3Model

    untied = Qwen3Model(Qwen3Config(**{**tiny.text_encoder.config.to_dict(), "tie_word_embeddings": False}))
    with pytest.raises(JobFailed, match=r"output head of its own.*ZIMAGE_ENHANCER_BASE_URL"):
        prompt_writer.causal_lm(untied)
    with pytest.raises(JobFailed, match="not Qwen3"):
        prompt_writer.causal_lm(torch.nn.Linear(2, 2))


def test_it_answers_through_qwens_chat_template_without_thinking(tiny: Any, monkeypatch: pytest.MonkeyPatch):
    seen: list[dict[str, Any]] = []
    template = type(tiny.tokenizer).apply_chat_template

    def recorded(self: Any, messages: Any, **kwargs: Any) -> Any:
        seen.append({"messages": messages, **kwargs})
        return template(self, messages, **kwargs)

    monkeypatch.setattr(type(tiny.tokenizer), "apply_chat_template", recorded)
    text = _write(tiny, seed=1)
    [call] = seen
    assert call["messages"] == [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "a red fox in snow"},
    ]
    assert call["add_generation_prompt"] is True and call["enable_thinking"] is False
    assert 0 < len(text) <= prompt_writer.MAX_NEW_TOKENS  # the tiny tokenizer: a byte a token


def test_the_same_seed_writes_the_same_noise_and_another_seed_other_noise(tiny: Any):
    first, again, other = _write(tiny, seed=1), _write(tiny, seed=1), _write(tiny, seed=2)
    assert first == again
    assert other != first
    before = torch.random.get_rng_state()
    _write(tiny, seed=3)
    assert torch.equal(torch.random.get_rng_state(), before)  # the process's own sampling untouched


def test_stop_ends_the_answer(tiny: Any):
    stop = CancelToken()
    stop.cancel()
    with pytest.raises(Cancelled):
        _write(tiny, stop=stop)


def test_in_memory_16gb_the_encoder_visits_the_gpu_once_per_answer_not_once_per_token():
    pipeline = build_tiny_pipeline()  # hooks stay on an encoder: a pipeline of its own
    shuttle = TextEncoderShuttle(pipeline.text_encoder, "cpu", fits=lambda: True)
    assert _write(pipeline, seed=1)
    assert (shuttle.visits, shuttle.cpu_runs) == (1, 0)  # per token, it was one visit per token
    crowded = build_tiny_pipeline()
    shuttle = TextEncoderShuttle(crowded.text_encoder, "cpu", fits=lambda: False)
    assert _write(crowded, seed=1)
    assert (shuttle.visits, shuttle.cpu_runs) == (0, 1)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({}, None),  # auto, and this machine has no GPU
        ({"ZIMAGE_ENHANCER_LOCAL": "off"}, None),
        ({"ZIMAGE_ENHANCER_LOCAL": "tiny"}, LocalEnhancer("diffusers-tiny", TINY_WRITER)),
        (
            {"ZIMAGE_ENHANCER_LOCAL": "on"},
            LocalEnhancer("diffusers", "Tongyi-MAI/Z-Image-Turbo's text encoder"),
        ),
        (  # an endpoint, when set, is the enhancer
            {
                "ZIMAGE_ENHANCER_LOCAL": "on",
                "ZIMAGE_ENHANCER_BASE_URL": "http://h/v1",
                "ZIMAGE_ENHANCER_MODEL": "m",
            },
            EnhancerConfig("http://h/v1", "m", "", "ZIMAGE_ENHANCER_API_KEY"),
        ),
        (
            {"ZIMAGE_ENHANCER_LOCAL": "on", "ZIMAGE_ENHANCER_BASE_URL": "http://h/v1"},
            None,
        ),  # half set: not local
    ],
)
def test_the_local_writer_is_offered_as_the_setting_says(
    monkeypatch: pytest.MonkeyPatch, values: dict[str, str], expected: object
):
    for name in (
        "ZIMAGE_ENHANCER_BASE_URL",
        "ZIMAGE_ENHANCER_MODEL",
        "ZIMAGE_OPENAI_BASE_URL",
        "ZIMAGE_MODEL_ID",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    assert enhancer_config() == expected


async def test_the_saved_checkpoint_writes_through_the_diffusers_provider(
    tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
):
    """The real path: `ZImagePipeline.from_pretrained` of a saved folder keeps the tie."""
    monkeypatch.setenv("ZIMAGE_ENHANCER_LOCAL", "on")
    monkeypatch.setenv("ZIMAGE_DEVICE", "cpu")
    config = enhancer_config()
    assert config == LocalEnhancer("diffusers", f"{tiny_checkpoint}'s text encoder")
    enhanced = await enhance("a red fox in snow")
    assert enhanced.prompt and enhanced.original == "a red fox in snow"
    assert enhanced.model == config.model


async def test_rewrites_and_generations_share_the_device_in_turn(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ZIMAGE_ENHANCER_LOCAL", "tiny")
    params = GenerationParams(prompt="a lighthouse", width=256, height=256, seed=5, num_inference_steps=2)
    first, outcome, second = await asyncio.gather(
        enhance("a red fox"), generate_one("diffusers-tiny", params), enhance("两只猫")
    )
    assert (first.original, second.original) == ("a red fox", "两只猫")  # each caller gets its own
    assert outcome.ok, outcome.error
    alone = await generate_one("diffusers-tiny", params)  # the rewrites did not disturb the image
    assert alone.result.images[0].tobytes() == outcome.result.images[0].tobytes()


async def test_a_local_writer_that_cannot_load_is_named_with_what_to_do(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    from zimage_ui.providers import get_provider
    from zimage_ui.providers.local import diffusers_local

    monkeypatch.setenv("ZIMAGE_ENHANCER_LOCAL", "on")
    monkeypatch.setenv("ZIMAGE_DEVICE", "cpu")
    monkeypatch.setenv("ZIMAGE_MODEL_ID", str(tmp_path / "no-such-checkpoint"))
    slot = diffusers_local._PipelineSlot(diffusers_local._load_checkpoint)
    monkeypatch.setattr(get_provider("diffusers"), "_slot", slot)
    with pytest.raises(EnhancerFailed) as raised:
        await enhance("a cat")
    message = str(raised.value)
    assert message.startswith("prompt enhancer (") and "on this machine" in message
    assert "Set ZIMAGE_MODEL_ID" in message and "Traceback" not in message  # what to do


def test_generate_enhance_with_the_tiny_writer_keeps_both_prompts_and_names_the_noise(tmp_path: Path):
    out = tmp_path / "out"
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "PYTHONPATH": str(ROOT),
        "ZIMAGE_ENHANCER_LOCAL": "tiny",
    }
    ran = subprocess.run(
        [
            sys.executable, "-m", "zimage_ui", "generate",
            "--provider", "diffusers-tiny", "--prompt", "a cat on a windowsill",
            "--seed", "7", "--width", "256", "--height", "256", "--steps", "2",
            "--out", str(out), "--enhance",
        ],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    [png] = out.glob("*.png")
    data = png.read_bytes()
    record = json.loads(read_text_chunks(data)["zimage"])
    drawn = record["params"]["prompt"]
    assert drawn and drawn != "a cat on a windowsill"
    assert record["params"]["enhanced"] == {"original": "a cat on a windowsill", "model": TINY_WRITER}
    assert read_png_settings(data).params["enhanced"]["model"].endswith("its words are noise)")


@pytest.mark.parametrize(("local", "limit"), [("tiny", 1), ("off", None)])
def test_a_local_rewrite_on_the_page_is_one_at_a_time_across_visitors(
    monkeypatch: pytest.MonkeyPatch, chat, local: str, limit: int | None
):
    """A local rewrite holds the device: one visitor's clicks can't line up ahead of everyone's
    generations. An endpoint's rewrites hold nothing local, so they are not limited."""
    from zimage_ui.ui import build_demo

    monkeypatch.setenv("ZIMAGE_ENHANCER_LOCAL", local)
    if local == "off":
        monkeypatch.setenv("ZIMAGE_ENHANCER_BASE_URL", chat.url)
        monkeypatch.setenv("ZIMAGE_ENHANCER_MODEL", "qwen-plus")
    page = build_demo()
    [event] = [fn for fn in page.fns.values() if getattr(fn.fn, "__name__", "") == "on_enhance"]
    assert event.concurrency_limit == limit
