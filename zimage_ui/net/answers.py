"""Reading a provider's answers: digging documented fields out of JSON, and turning an error
status or body into one clear, redacted message."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from zimage_ui.errors import (
    AuthError,
    NoCredit,
    ProviderError,
    RateLimited,
)
from zimage_ui.redaction import redact

MAX_DETAIL_CHARS = 300
DEFAULT_ERROR_PATHS = ("error.message", "message", "detail", "title", "error")


class Unexpected(ValueError):
    """An answer in a shape the mapping functions can't read (becomes MalformedResponse)."""


def dig(data: Any, *path: str | int) -> Any:
    """`data[path[0]][path[1]]...`, raising `Unexpected` naming the missing piece."""
    current = data
    for depth, part in enumerate(path):
        try:
            current = current[part]
        except (KeyError, IndexError, TypeError):
            where = ".".join(str(p) for p in path[: depth + 1])
            raise Unexpected(f"no {where} in the answer") from None
    return current


def dig_text(data: Any, *path: str | int) -> str:
    """Like `dig`, for a documented string (a status): anything else is the wrong shape."""
    value = dig(data, *path)
    if not isinstance(value, str):
        raise Unexpected(f"{'.'.join(str(p) for p in path)} is not text")
    return value


ErrorPath = str | Callable[[Any], str | None]  # a dotted path, or a reader of the whole body


def api_message(body: Any, paths: Iterable[ErrorPath]) -> str | None:
    """The first readable message found at one of the dotted `paths` of an error body (a path may
    be a function of the body, for an API whose errors need assembling: ComfyUI's node_errors)."""
    for path in paths:
        if callable(path):
            found = path(body)
            if found:
                return found
            continue
        current = body
        for part in path.split("."):
            current = current.get(part) if isinstance(current, dict) else None
        if isinstance(current, list):
            current = "; ".join(str(item) for item in current if item)
        if isinstance(current, str) and current.strip():
            return current.strip()
    return None


def redacted_detail(text: str, secrets: Iterable[str]) -> str:
    """Redact, and keep a provider's own text short enough for one message."""
    text = redact(text, secrets)
    return text if len(text) <= MAX_DETAIL_CHARS else text[: MAX_DETAIL_CHARS - 3] + "..."


def error_for_status(provider: str, status: int, detail: str | None, key_hint: str) -> ProviderError:
    """One clear, user-facing error for an HTTP error status (never includes a key)."""
    said = f" ({detail})" if detail else ""
    if status in {401, 403}:
        return AuthError(provider, f"the key was refused (HTTP {status}){said}: check {key_hint}")
    if status == 402:
        return NoCredit(
            provider, f"the account has no credit left (HTTP 402){said}: top up the account, then retry"
        )
    if status == 429:
        return RateLimited(provider, f"still rate limited after several tries{said}: wait and retry")
    if status >= 500:
        return ProviderError(provider, f"the service failed (HTTP {status}){said}: retry in a moment")
    return ProviderError(provider, f"the request was refused (HTTP {status}){said}")
