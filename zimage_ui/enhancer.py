"""The prompt enhancer: any OpenAI-compatible chat endpoint rewrites a short prompt into the long,
concrete kind Z-Image-Turbo rewards (its authors' Space does the same before drawing).

Configured by `ZIMAGE_ENHANCER_BASE_URL` (the API root, e.g. `https://dashscope-intl.aliyuncs.com/
compatible-mode/v1`, a vLLM or SGLang server's `/v1`, Ollama's `http://host:11434/v1`, LM Studio's),
`ZIMAGE_ENHANCER_MODEL` and, where the server wants one, `ZIMAGE_ENHANCER_API_KEY` (a server key:
never shown, never sent anywhere else). Without a base URL of its own, a configured
`ZIMAGE_OPENAI_BASE_URL` engine serves, with its key, when `ZIMAGE_ENHANCER_MODEL` names a chat
model it runs. One `POST {base}/chat/completions`: the model, our system prompt, the person's
prompt; the answer's first choice is the rewrite.

With no endpoint, the local pipeline's own text encoder (Qwen3-4B, a chat model) writes it
(`providers.local.prompt_writer`): `ZIMAGE_ENHANCER_LOCAL` is `auto` (when the `diffusers`
provider runs on a GPU), `on` (wherever it runs), `tiny` (the tiny model's encoder, whose words are
noise: for tests and demos of the plumbing) or `off`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from zimage_ui import env
from zimage_ui.cancel import CancelToken
from zimage_ui.errors import ProviderError, ZImageError
from zimage_ui.net.http import HttpEngine
from zimage_ui.params import GenerationParams, parse_params
from zimage_ui.providers import get_provider
from zimage_ui.providers.base import server_keys_shared
from zimage_ui.providers.local import diffusers_local, prompt_writer

log = logging.getLogger(__name__)

NAME = "prompt enhancer"
MAX_REWRITE_CHARS = 4000  # Z-Image's text encoder reads about 512 tokens: longer is not a prompt
SYSTEM_PROMPT = """You rewrite prompts for Z-Image-Turbo, a text-to-image model that draws best from \
long, concrete descriptions.

Rules:
- Keep everything the person asked for: the subject, every count, every named person, place, \
brand and thing, and every colour.
- Text to be drawn in the image (a sign, a label, a title) stays word for word, inside double \
quotes, and say where it appears.
- Describe concretely what is seen: the subject's look and pose, the setting, the light, the \
composition and camera or medium. Add no new subject.
- No quality tags: no "8K", "4K", "masterpiece", "best quality", "ultra-detailed", "trending".
- Write in the language of the person's prompt (a Chinese prompt stays Chinese).
- One paragraph, at most about 150 words.
- Answer with the rewritten prompt only: no preface, no notes, no quotes around it."""
_THINKING = re.compile(r"<think>.*?</think>", re.DOTALL)  # Qwen3-style reasoning before the answer
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ufffd]")  # not text: a model's stray bytes


class EnhancerFailed(ZImageError):
    """The enhancer could not rewrite the prompt; the message names it and says what to do."""


@dataclass(frozen=True)
class EnhancerConfig:
    base_url: str
    model: str
    api_key: str
    key_name: str  # the variable the key came from, for messages

    @property
    def label(self) -> str:
        """How messages name it: the model and the host, never the key."""
        host = urlsplit(self.base_url).hostname or self.base_url
        return f"{NAME} ({self.model} at {host})"


@dataclass(frozen=True)
class LocalEnhancer:
    """The local pipeline's text encoder as the enhancer (`prompt_writer`)."""

    provider_id: str  # "diffusers", or "diffusers-tiny"
    model: str  # how the PNG's record and the page name it

    @property
    def label(self) -> str:
        return f"{NAME} ({self.model}, on this machine)"


Enhancer = EnhancerConfig | LocalEnhancer
TINY_WRITER = "diffusers-tiny's text encoder (random weights: its words are noise)"


def enhancer_config() -> Enhancer | None:
    """The configured enhancer, or None (the page and the CLI say how to set one)."""
    model = env.raw("ZIMAGE_ENHANCER_MODEL").strip()
    base = env.raw("ZIMAGE_ENHANCER_BASE_URL").strip()
    if base and model:
        return EnhancerConfig(
            base.rstrip("/"), model, env.raw("ZIMAGE_ENHANCER_API_KEY"), "ZIMAGE_ENHANCER_API_KEY"
        )
    engine = env.raw("ZIMAGE_OPENAI_BASE_URL").strip()
    if not base and engine and model:
        return EnhancerConfig(
            engine.rstrip("/"), model, env.raw("ZIMAGE_OPENAI_API_KEY"), "ZIMAGE_OPENAI_API_KEY"
        )
    return None if base else local_enhancer()


def local_enhancer() -> LocalEnhancer | None:
    """The local text encoder, where `ZIMAGE_ENHANCER_LOCAL` offers it (see the module doc)."""
    mode = env.raw("ZIMAGE_ENHANCER_LOCAL").strip().lower() or "auto"
    if mode == "off":
        return None
    if mode == "tiny":
        return LocalEnhancer("diffusers-tiny", TINY_WRITER)
    if mode != "on" and not (diffusers_local.on_zero_gpu() or diffusers_local.device_choice().accelerated):
        return None  # auto: the 4B encoder writes at a useful speed on a GPU only
    return LocalEnhancer("diffusers", f"{diffusers_local.model_id()}'s text encoder")


NOT_CONFIGURED = (
    "no prompt enhancer is set up: set ZIMAGE_ENHANCER_BASE_URL (any OpenAI-compatible chat "
    "endpoint) and ZIMAGE_ENHANCER_MODEL, and ZIMAGE_ENHANCER_API_KEY if it needs one; or, with the "
    "local model on a GPU, ZIMAGE_ENHANCER_LOCAL=auto lets its text encoder write"
)


OWNER_ONLY = "visitors may use it where the owner sets ZIMAGE_SERVER_KEYS=all"
# Said to visitors without the endpoint's model or host: where the owner's requests go is theirs.
WITHHELD = f"the {NAME} set up here is the owner's: {OWNER_ONLY}"


def withheld_endpoint() -> EnhancerConfig | None:
    """The owner's endpoint where page visitors may not use it, else None. An endpoint is the
    owner's (its key, its bill, its hardware), so visitors use it only where `ZIMAGE_SERVER_KEYS`
    shares the server's keys, as with the owner's OpenAI-style engine."""
    config = enhancer_config()
    return config if isinstance(config, EnhancerConfig) and not server_keys_shared() else None


def visitor_enhancer() -> Enhancer | None:
    """The enhancer a page visitor may use: the configured one, or where the endpoint is withheld
    the local text encoder where it is offered (it runs on the device the local model already
    lends them)."""
    return local_enhancer() if withheld_endpoint() is not None else enhancer_config()


async def enhance_for_visitor(prompt: str, *, cancel: CancelToken | None = None) -> Enhanced:
    """`enhance` with the enhancer a page visitor may use; EnhancerFailed saying why there is none."""
    config = visitor_enhancer()
    if config is None:
        raise EnhancerFailed(WITHHELD if withheld_endpoint() else NOT_CONFIGURED)
    return await enhance(prompt, config, cancel=cancel)


@dataclass(frozen=True)
class Enhanced:
    prompt: str  # the rewrite: what is drawn
    original: str  # the person's own prompt
    model: str


def request_body(config: EnhancerConfig, prompt: str) -> dict[str, Any]:
    return {
        "model": config.model,
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": prompt},
        ],
        "temperature": 0.7,
        "max_tokens": 1024,
        "stream": False,
    }


def rewrite_of(answer: Any, config: EnhancerConfig) -> str:
    """The rewrite in a chat-completions answer; EnhancerFailed when it holds none."""
    try:
        content = answer["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise EnhancerFailed(
            f"{config.label} answered without a message: check ZIMAGE_ENHANCER_MODEL"
        ) from None
    if not isinstance(content, str):
        raise EnhancerFailed(f"{config.label} answered without text")
    return cleaned(content, config.label)


def cleaned(content: str, label: str) -> str:
    """The answer as a prompt: reasoning, control characters and quotes around it all dropped;
    EnhancerFailed when nothing usable is left."""
    text = _CONTROL.sub("", _THINKING.sub("", content)).strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'“”":  # quoted whole, despite the rule
        text = text[1:-1].strip()
    if not text:
        raise EnhancerFailed(f"{label} answered with an empty prompt: try again")
    if len(text) > MAX_REWRITE_CHARS:
        raise EnhancerFailed(f"{label} answered with {len(text)} characters, too long for a prompt")
    return text


async def enhance(
    prompt: str,
    config: Enhancer | None = None,
    *,
    engine: HttpEngine | None = None,
    cancel: CancelToken | None = None,
) -> Enhanced:
    """The person's prompt rewritten by the configured enhancer; EnhancerFailed naming it when it
    is not set up, down, slow or answers oddly (the key never in a message)."""
    config = config or enhancer_config()
    if config is None:
        raise EnhancerFailed(NOT_CONFIGURED)
    if not prompt.strip():
        raise EnhancerFailed("the prompt is empty: write a few words first")
    if isinstance(config, LocalEnhancer):
        return await _enhance_locally(prompt, config, cancel or CancelToken())
    headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
    secrets = [config.api_key] if config.api_key else []
    session = (engine or HttpEngine()).session(
        config.label,
        headers=headers,
        secrets=secrets,
        key_hint=config.key_name,
        cancel=cancel,
        limit_s=float(env.get("ZIMAGE_ENHANCER_TIMEOUT_S")),
    )
    try:
        async with session:
            answer = await session.submit(f"{config.base_url}/chat/completions", request_body(config, prompt))
    except ProviderError as exc:  # down, refused, slow: said as the enhancer's failure
        raise EnhancerFailed(str(exc)) from None
    return Enhanced(rewrite_of(answer, config), prompt, config.model)


async def _enhance_locally(prompt: str, config: LocalEnhancer, cancel: CancelToken) -> Enhanced:
    provider = get_provider(config.provider_id)
    try:
        answer = await prompt_writer.rewrite(
            provider,
            SYSTEM_PROMPT,
            prompt,
            limit_s=float(env.get("ZIMAGE_ENHANCER_TIMEOUT_S")),
            cancel=cancel,
        )
    except ProviderError as exc:
        raise EnhancerFailed(f"{config.label}: {exc.detail}") from None
    except Exception as exc:  # loading the model: no weights, no memory
        log.warning("the local prompt writer failed", exc_info=True)
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise EnhancerFailed(
            f"{config.label} could not run ({reason}): set ZIMAGE_ENHANCER_BASE_URL"
        ) from None
    return Enhanced(cleaned(answer, config.label), prompt, config.model)


def enhanced_params(params: GenerationParams, enhanced: Enhanced) -> GenerationParams:
    """The params drawing the rewrite, with the person's own prompt and the model kept beside it
    (the PNG's `zimage` record holds both; its `parameters` text starts with the rewrite)."""
    return parse_params(
        **{
            **params.model_dump(),
            "prompt": enhanced.prompt,
            "enhanced": {"original": enhanced.original, "model": enhanced.model},
        }
    )
