"""The environment, read in one place.

Every variable the app reads is declared once in `Environment` (pydantic-settings): its type, its
default and a line of help. The rest of the app asks here: `get(name)` for a typed value (read
at call time, so a test's `monkeypatch.setenv` or an owner's change applies to the next run),
`raw(name)` for a declared variable whose name is computed (a provider's key, an OpenAI-style
endpoint's `ZIMAGE_OPENAI_<NAME>_BASE_URL`). A value that can't be read as its type is the
default, as it always was; variables whose bad values deserve a note (the speed options, the
device) are read as text and judged where they are used. `python -m zimage_ui env` lists them all,
where each value came from, secrets masked.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import (
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from zimage_ui.redaction import safe_url

log = logging.getLogger(__name__)

PROVIDER_KEYS = "provider keys"
HOSTED = "hosted providers"
LOCAL = "the local model"
SERVER = "the server"


def _var(default: Any, group: str, help: str, **constraints: Any) -> Any:
    return Field(default, description=help, json_schema_extra={"group": group}, **constraints)


class Environment(BaseSettings):
    """Every environment variable of the app (names exactly as written: case matters)."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", env_ignore_empty=True, frozen=True)

    # ---- the local model
    ZIMAGE_MODEL_ID: str = _var("Tongyi-MAI/Z-Image-Turbo", LOCAL, "checkpoint: a hub id or a local folder")
    ZIMAGE_CONTROLNET: str = _var("", LOCAL, "ControlNet for `diffusers`: a Union file, folder or repo")
    ZIMAGE_CONTROLNET_CONFIG: str = _var("", LOCAL, "folder with the config.json of another ControlNet shape")
    ZIMAGE_ATTENTION_BACKEND: str = _var("", LOCAL, "attention kernel (a diffusers backend name); checked")
    ZIMAGE_COMPILE: str = _var("", LOCAL, "regional torch.compile: 1 or 0 (on by default on CUDA)")
    ZIMAGE_COMPILE_CACHE: str = _var("", LOCAL, "folder for torch's persistent compile caches")
    TORCHINDUCTOR_CACHE_DIR: str = _var("", LOCAL, "torch's compile cache folder (set from the one above)")
    ZIMAGE_MEMORY: str = _var("", LOCAL, "full, 16gb or offload (GPU only)")
    ZIMAGE_CPU_OFFLOAD: str = _var("", LOCAL, "1 is ZIMAGE_MEMORY=offload (the older name)")
    ZIMAGE_FAST: str = _var("", LOCAL, "fp8: transformer weights in float8 (half the memory)")
    ZIMAGE_VAE_TILING_ABOVE: str = _var("", LOCAL, "tiled VAE decoding above this many pixels (or WxH)")
    ZIMAGE_PROMPT_CACHE: str = _var("", LOCAL, "prompts whose embeddings are kept (0: off; default 32)")
    ZIMAGE_DEVICE: str = _var("", LOCAL, "cuda, cuda:N, mps or cpu (default: the best present)")
    ZIMAGE_AOTI: str = _var("", LOCAL, "0 skips ZeroGPU's ahead-of-time compiled blocks")
    SPACES_ZERO_GPU: str = _var("", LOCAL, "set by Hugging Face on a ZeroGPU Space")
    ZIMAGE_ENHANCER_LOCAL: str = _var(
        "auto",
        LOCAL,
        "the text encoder rewrites prompts with no enhancer endpoint: auto (GPU), on, tiny, off",
    )
    ZIMAGE_LORA_CACHE: str = _var("", LOCAL, "folder of downloaded LoRAs (default: the user cache)")
    ZIMAGE_LORA_CACHE_GB: float = _var(20.0, LOCAL, "the most that folder holds, in GB", ge=0)

    # ---- the server
    ZIMAGE_OUTPUT_DIR: str = _var("", SERVER, "a team copy of every image the page makes")
    ZIMAGE_CACHE_TTL_S: float = _var(7200.0, SERVER, "seconds generated files live", gt=0)
    ZIMAGE_SERVER_KEYS: str = _var("", SERVER, "all: visitors use the server's keys; none: their own")
    ZIMAGE_SESSION_HOSTED_LIMIT: float = _var(6.0, SERVER, "hosted requests one session has in flight", gt=0)
    ZIMAGE_MAX_ACTIVE_RUNS: float = _var(64.0, SERVER, "runs on the server at once", gt=0)
    ZIMAGE_TIMEOUT_S: float = _var(300.0, SERVER, "deadline of one hosted run or download, seconds", gt=0)
    ZIMAGE_POLL_INTERVAL_S: float = _var(1.0, SERVER, "longest pause between status polls, s", gt=0)
    ZIMAGE_ALLOW_PRIVATE_URLS: str = _var("", SERVER, "1 lets visitor URLs reach private addresses")
    ZIMAGE_SWEEP_MAX_CELLS: int = _var(36, SERVER, "most cells one sweep may have", gt=0)
    ZIMAGE_ARENA: str = _var("", SERVER, "the arena's sides: provider[:steps=N], comma-separated")
    ZIMAGE_HISTORY_DB: str = _var("", SERVER, "SQLite run log for a team instance")
    ZIMAGE_PRESETS_DIR: str = _var("", SERVER, "a shared team folder of presets")
    ZIMAGE_BROWSER_SECRET: SecretStr = _var(SecretStr(""), SERVER, "scrambles the browser storage")
    ZIMAGE_BROWSER_STORAGE_KEY: str = _var("zimage-ui-presets", SERVER, "browser storage key for presets")
    GRADIO_TEMP_DIR: str = _var("", SERVER, "Gradio's upload and cache folder (default: <temp>/gradio)")
    GRADIO_SERVER_NAME: str = _var("127.0.0.1", SERVER, "where `python app.py` serves: the host")
    GRADIO_SERVER_PORT: int = _var(7860, SERVER, "where `python app.py` serves: the port", gt=0, lt=65536)
    GRADIO_MCP_SERVER: bool = _var(False, SERVER, "true also serves the MCP tools (as `app.py --mcp`)")
    SPACE_ID: str = _var("", SERVER, "set by Hugging Face: marks a public Space")

    # ---- hosted providers
    ZIMAGE_SCENARIO_BASE_URL: str = _var("", HOSTED, "Scenario API base")
    ZIMAGE_INFERENCESH_BASE_URL: str = _var("", HOSTED, "inference.sh API base")
    ZIMAGE_AIMLAPI_BASE_URL: str = _var("", HOSTED, "AIML API base")
    ZIMAGE_EVOLINK_BASE_URL: str = _var("", HOSTED, "EvoLink API base")
    ZIMAGE_RUNPOD_BASE_URL: str = _var("", HOSTED, "RunPod endpoint base")
    ZIMAGE_HUGGINGFACE_BASE_URL: str = _var("", HOSTED, "HF Inference Providers router address")
    HF_ENDPOINT: str = _var("", HOSTED, "the Hugging Face Hub's address (a mirror, a test server)")
    ZIMAGE_HF_PROVIDER: str = _var("auto", HOSTED, "which Inference Provider serves `huggingface`")
    ZIMAGE_HF_MODEL: str = _var("Tongyi-MAI/Z-Image-Turbo", HOSTED, "the hub model `huggingface` asks for")
    ZIMAGE_OPENAI_BASE_URL: str = _var("", HOSTED, "an OpenAI-style images endpoint (SGLang, vLLM-Omni)")
    ZIMAGE_OPENAI_MODEL: str = _var("", HOSTED, "the `model` field sent to it")
    ZIMAGE_ENHANCER_BASE_URL: str = _var(
        "", HOSTED, "the prompt enhancer: an OpenAI-compatible chat API root"
    )
    ZIMAGE_ENHANCER_MODEL: str = _var("", HOSTED, "the chat model that rewrites prompts")
    ZIMAGE_ENHANCER_TIMEOUT_S: float = _var(60.0, HOSTED, "deadline of one prompt rewrite, seconds", gt=0)
    ZIMAGE_COMFYUI_URL: str = _var("", HOSTED, "a ComfyUI server's root")
    ZIMAGE_COMFYUI_WORKFLOW: str = _var("", HOSTED, "a workflow file saved with ComfyUI's Export (API)")

    # ---- provider keys
    SCENARIO_SDK_API_KEY: SecretStr = _var(SecretStr(""), PROVIDER_KEYS, "Scenario key")
    SCENARIO_SDK_API_SECRET: SecretStr = _var(SecretStr(""), PROVIDER_KEYS, "Scenario secret")
    INFERENCE_API_KEY: SecretStr = _var(SecretStr(""), PROVIDER_KEYS, "inference.sh key")
    AIML_API_KEY: SecretStr = _var(SecretStr(""), PROVIDER_KEYS, "AIML API key")
    EVOLINK_API_KEY: SecretStr = _var(SecretStr(""), PROVIDER_KEYS, "EvoLink key")
    RUNPOD_API_KEY: SecretStr = _var(SecretStr(""), PROVIDER_KEYS, "RunPod key")
    HF_TOKEN: SecretStr = _var(
        SecretStr(""), PROVIDER_KEYS, "Hugging Face token (Inference Providers, LoRAs)"
    )
    ZIMAGE_OPENAI_API_KEY: SecretStr = _var(SecretStr(""), PROVIDER_KEYS, "the OpenAI-style endpoint's key")
    ZIMAGE_ENHANCER_API_KEY: SecretStr = _var(SecretStr(""), PROVIDER_KEYS, "the prompt enhancer's key")
    ZIMAGE_COMFYUI_API_KEY: SecretStr = _var(SecretStr(""), PROVIDER_KEYS, "Bearer key for a ComfyUI proxy")


@dataclass(frozen=True)
class Pattern:
    """Variables whose names hold a part the owner chooses."""

    shape: str  # as the README writes it
    regex: re.Pattern[str]
    secret: bool
    help: str


PATTERNS: tuple[Pattern, ...] = (
    Pattern(
        "ZIMAGE_OPENAI_<NAME>_BASE_URL",
        re.compile(r"ZIMAGE_OPENAI_[A-Z0-9_]+_BASE_URL"),
        False,
        "another OpenAI-style endpoint: the provider openai-<name>",
    ),
    Pattern("ZIMAGE_OPENAI_<NAME>_API_KEY", re.compile(r"ZIMAGE_OPENAI_[A-Z0-9_]+_API_KEY"), True, "its key"),
    Pattern("ZIMAGE_OPENAI_<NAME>_MODEL", re.compile(r"ZIMAGE_OPENAI_[A-Z0-9_]+_MODEL"), False, "its model"),
)
NAMES = frozenset(Environment.model_fields)
SECRETS = frozenset(name for name, info in Environment.model_fields.items() if info.annotation is SecretStr)


_ADAPTERS: dict[str, TypeAdapter[Any]] = {
    name: TypeAdapter(Annotated[info.annotation, info]) for name, info in Environment.model_fields.items()
}


def _kind(name: str) -> str:
    info = Environment.model_fields[name]
    constraints = ", ".join(str(item) for item in info.metadata)
    kind = getattr(info.annotation, "__name__", str(info.annotation))
    return f"{kind} ({constraints})" if constraints else kind


def get(name: str) -> Any:
    """One declared variable as it is now, typed as declared; its default when unset or unreadable."""
    text = raw(name)
    default = Environment.model_fields[name].default
    if not text:
        return default
    try:
        return _ADAPTERS[name].validate_python(text)
    except ValidationError:
        log.warning("%s is not readable as %s; using the default", name, _kind(name))
        return default


def _pattern(name: str) -> Pattern | None:
    return next((pattern for pattern in PATTERNS if pattern.regex.fullmatch(name)), None)


def declared(name: str) -> bool:
    return name in NAMES or _pattern(name) is not None


def raw(name: str) -> str:
    """A declared variable's text, stripped; "" when unset. An undeclared name is a bug here."""
    if not declared(name):
        raise KeyError(f"{name} is not declared in zimage_ui.env.Environment")
    return os.environ.get(name, "").strip()


def key(name: str) -> str:
    """A provider's key by the variable its provider names (`Provider.key_names`), stripped; "" when
    unset. The app's own providers' keys are declared above (a test checks it); a provider added
    at run time (a test's, a plugin's) may name its own."""
    return os.environ.get(name, "").strip()


def is_set(name: str) -> bool:
    return bool(raw(name))


def matching(prefix: str, suffix: str) -> dict[str, str]:
    """Declared pattern variables that are set, by name (OpenAI-style endpoints, read at start)."""
    return {
        name: value.strip()
        for name, value in sorted(os.environ.items())
        if name.startswith(prefix) and name.endswith(suffix) and _pattern(name) and value.strip()
    }


def snapshot() -> dict[str, str]:
    """The declared variables that are set (pattern ones included), for readers that take a mapping."""
    return {name: value for name, value in os.environ.items() if declared(name)}


def set_default(name: str, value: str) -> None:
    """Give a library a variable it reads itself (torch's compile caches), unless already set."""
    if not declared(name) and not name.startswith("TORCHINDUCTOR_"):
        raise KeyError(f"{name} is not a variable the app may set")
    os.environ.setdefault(name, value)


def set_value(name: str, value: str) -> None:
    if not declared(name):
        raise KeyError(f"{name} is not a variable the app may set")
    os.environ[name] = value


@dataclass(frozen=True)
class Row:
    name: str
    group: str
    source: str  # "set" or "default"
    value: str  # masked for secrets
    help: str


def _masked(name: str, value: str) -> str:
    return "*" * 8 if value else ""


def _shown(name: str, value: str) -> str:
    """A value as `env` prints it: secrets masked, a URL's userinfo and query values redacted."""
    if name in SECRETS:
        return _masked(name, value)
    return safe_url(value) if "://" in value else value


def _source(name: str, value: str) -> str:
    if not value:
        return "default"
    try:
        _ADAPTERS[name].validate_python(value)
    except ValidationError:
        return "unreadable"  # the default is used
    return "set"


def rows() -> Iterator[Row]:
    """Every declared variable (and each set pattern variable): where its value comes from."""
    for name, info in Environment.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        value = raw(name)
        default = info.default.get_secret_value() if isinstance(info.default, SecretStr) else info.default
        shown = _shown(name, value) if value else str(default)
        yield Row(name, str(extra.get("group", "")), _source(name, value), shown, info.description or "")
    for pattern in PATTERNS:
        for name, value in matching("ZIMAGE_OPENAI_", pattern.shape.rsplit(">", 1)[1]).items():
            if pattern.regex.fullmatch(name):
                shown = _masked(name, value) if pattern.secret else _shown(name, value)
                yield Row(name, HOSTED, "set", shown, pattern.help)
