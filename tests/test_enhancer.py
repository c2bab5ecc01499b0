"""The prompt enhancer against a chat-completions server written here: what it sends, what it
keeps, and how it fails (naming itself, never showing the key, drawing nothing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.chat_server import KEY, REWRITE, ChatServer
from zimage_ui.enhancer import SYSTEM_PROMPT, EnhancerConfig, EnhancerFailed, enhance, rewrite_of
from zimage_ui.infotext import read_png_settings
from zimage_ui.metadata import read_text_chunks

ROOT = Path(__file__).resolve().parent.parent


def cli(chat: ChatServer, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(cwd),
        "PYTHONPATH": str(ROOT),
        "ZIMAGE_ENHANCER_BASE_URL": chat.url,
        "ZIMAGE_ENHANCER_MODEL": "qwen-plus",
        "ZIMAGE_ENHANCER_API_KEY": KEY,
        "ZIMAGE_DEVICE": "cpu",
    }
    return subprocess.run(
        [sys.executable, "-m", "zimage_ui", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_enhance_sends_the_model_our_system_prompt_and_the_prompt_with_the_key(chat: ChatServer):
    ran = cli(chat, "enhance", "a cat on a windowsill", "--json")
    assert ran.returncode == 0, ran.stderr
    printed = json.loads(ran.stdout)
    assert printed == {"prompt": REWRITE, "original": "a cat on a windowsill", "model": "qwen-plus"}
    [request] = chat.requests
    assert request["path"] == "/v1/chat/completions" and request["authorization"] == f"Bearer {KEY}"
    body = request["body"]
    assert body["model"] == "qwen-plus" and body["stream"] is False
    assert body["messages"] == [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "a cat on a windowsill"},
    ]
    assert KEY not in ran.stdout + ran.stderr
    assert cli(chat, "enhance", "a cat").stdout.strip() == REWRITE  # the plain form: the rewrite alone


def test_generate_enhance_draws_the_rewrite_and_keeps_the_persons_prompt(chat: ChatServer, tmp_path: Path):
    out = tmp_path / "out"
    ran = cli(
        chat,
        "generate",
        "--provider", "diffusers-tiny",
        "--prompt", "a cat on a windowsill",
        "--seed", "7", "--width", "256", "--height", "256", "--steps", "2",
        "--out", str(out), "--enhance",
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    [png] = out.glob("*.png")
    data = png.read_bytes()
    chunks = read_text_chunks(data)
    assert chunks["parameters"].startswith(REWRITE)  # what was drawn
    record = json.loads(chunks["zimage"])
    assert record["params"]["prompt"] == REWRITE
    assert record["params"]["enhanced"] == {"original": "a cat on a windowsill", "model": "qwen-plus"}
    back = read_png_settings(data)  # PNG info: the drawn prompt, and the person's own beside it
    assert back.params["prompt"] == REWRITE
    assert back.params["enhanced"]["original"] == "a cat on a windowsill"
    assert "qwen-plus's rewrite of" in back.message and "a cat on a windowsill" in back.message
    assert KEY not in ran.stdout + ran.stderr and KEY.encode() not in data


@pytest.mark.parametrize(
    ("status", "answer", "said"),
    [
        (503, None, "the service failed (HTTP 503)"),
        (200, {"choices": []}, "answered without a message"),
        (200, {"choices": [{"message": {"content": "   "}}]}, "an empty prompt"),
    ],
)
def test_an_enhancer_that_fails_is_named_and_nothing_is_drawn(
    chat: ChatServer, tmp_path: Path, status: int, answer: Any, said: str
):
    chat.status, chat.answer = status, answer
    out = tmp_path / "out"
    ran = cli(
        chat,
        "generate",
        "--provider", "diffusers-tiny",
        "--prompt", "a cat",
        "--width", "256", "--height", "256", "--steps", "2",
        "--out", str(out), "--enhance",
    )  # fmt: skip
    assert ran.returncode == 1
    assert "prompt enhancer (qwen-plus at 127.0.0.1)" in ran.stderr and said in ran.stderr, ran.stderr
    assert "nothing was drawn" in ran.stderr and "Traceback" not in ran.stderr
    assert KEY not in ran.stdout + ran.stderr
    assert not list(out.glob("*.png"))


def test_the_rewrite_is_read_without_reasoning_or_quotes():
    config = EnhancerConfig("http://x/v1", "qwen3", "", "ZIMAGE_ENHANCER_API_KEY")

    def answer(text: str) -> dict[str, Any]:
        return {"choices": [{"message": {"content": text}}]}

    assert rewrite_of(answer("<think>the user wants a cat</think>\n\nA cat."), config) == "A cat."
    assert rewrite_of(answer('"A cat on a mat."'), config) == "A cat on a mat."
    assert rewrite_of(answer('A sign reading "OPEN".'), config) == 'A sign reading "OPEN".'
    with pytest.raises(EnhancerFailed, match="too long"):
        rewrite_of(answer("x" * 5000), config)


async def test_without_an_enhancer_the_message_says_how_to_set_one(monkeypatch: pytest.MonkeyPatch):
    for name in ("ZIMAGE_ENHANCER_BASE_URL", "ZIMAGE_ENHANCER_MODEL", "ZIMAGE_OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(EnhancerFailed, match="set ZIMAGE_ENHANCER_BASE_URL"):
        await enhance("a cat")


def _owner_endpoint(monkeypatch: pytest.MonkeyPatch, chat: ChatServer) -> None:
    monkeypatch.setenv("ZIMAGE_ENHANCER_BASE_URL", chat.url)
    monkeypatch.setenv("ZIMAGE_ENHANCER_MODEL", "qwen-plus")
    monkeypatch.setenv("ZIMAGE_ENHANCER_API_KEY", KEY)
    monkeypatch.setenv("SPACE_ID", "owner/playground")  # a public Space: keys not shared by default
    monkeypatch.delenv("ZIMAGE_SERVER_KEYS", raising=False)


async def test_a_visitor_on_a_public_space_does_not_spend_the_owners_enhancer(
    chat: ChatServer, monkeypatch: pytest.MonkeyPatch
):
    from zimage_ui.enhancer import TINY_WRITER, enhance_for_visitor

    _owner_endpoint(monkeypatch, chat)
    with pytest.raises(EnhancerFailed) as raised:
        await enhance_for_visitor("a cat")
    said = str(raised.value)
    assert "ZIMAGE_SERVER_KEYS=all" in said
    assert "127.0.0.1" not in said and "qwen-plus" not in said  # where the owner's requests go is theirs
    assert chat.requests == []
    assert (await enhance("a cat")).prompt == REWRITE  # the owner's own command line still uses it
    monkeypatch.setenv("ZIMAGE_SERVER_KEYS", "all")  # the owner shares it
    assert (await enhance_for_visitor("a cat")).prompt == REWRITE
    monkeypatch.setenv("ZIMAGE_SERVER_KEYS", "none")
    monkeypatch.setenv("ZIMAGE_ENHANCER_LOCAL", "tiny")  # where the local encoder is offered: that one
    assert (await enhance_for_visitor("a cat")).model == TINY_WRITER
    assert len(chat.requests) == 2


def test_the_page_hides_enhance_where_the_endpoint_is_the_owners_and_logs_why(
    chat: ChatServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    from zimage_ui.ui import build_demo

    def enhance_box_shown() -> bool:
        page = build_demo()
        [box] = [b for b in page.blocks.values() if getattr(b, "elem_id", None) == "enhance-box"]
        return bool(box.visible)

    _owner_endpoint(monkeypatch, chat)
    with caplog.at_level("WARNING"):
        assert not enhance_box_shown()  # on a phone it would push Generate down for nothing
    assert "Enhance is hidden from page visitors" in caplog.text and "ZIMAGE_SERVER_KEYS=all" in caplog.text
    monkeypatch.setenv("ZIMAGE_SERVER_KEYS", "all")
    assert enhance_box_shown()
