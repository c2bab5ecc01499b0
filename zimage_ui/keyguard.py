"""Finding keys and request destinations in documents and text that leave the app.

A preset, a share link, a history row or copied code must never carry a key, and a
preset must never say where requests go. These pure helpers find such values by
field name, by shape (a URL) and by value (any key currently set for a provider).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from zimage_ui import env
from zimage_ui.providers import PROVIDERS
from zimage_ui.redaction import redact, url_secrets

MIN_SECRET_CHARS = 8  # shorter values would match ordinary words
MAX_DEPTH = 8
NO_KEYS = "a preset can't carry keys or change where requests go"

Secrets = list[tuple[str, str]]  # (where the key comes from, its value)

_KEYLIKE = {
    "key", "apikey", "secret", "token", "password", "passwd", "auth", "authorization", "bearer",
    "credential", "credentials", "cookie", "url", "uri", "baseurl", "endpoint", "host", "hostname",
    "proxy", "webhook", "callback", "server",
}  # fmt: skip
_URL = re.compile(r"^\s*[a-z][a-z0-9+.\-]*://", re.IGNORECASE)
_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")


def key_env_names() -> list[str]:
    """Every environment variable a registered provider reads its key from."""
    return [name for provider in PROVIDERS.values() for name in provider.key_names]


def base_url_env_names() -> list[str]:
    """Every `ZIMAGE_<ID>_BASE_URL` a registered provider reads (it may hold credentials)."""
    return [name for provider in PROVIDERS.values() if (name := getattr(provider, "base_url_var", ""))]


def known_secrets(extra: Iterable[str] = ()) -> Secrets:
    """Every key set now (environment, base-URL credentials, plus `extra` entered on the page)."""
    found = [
        (f"the key set in {name}", value)
        for name in key_env_names()
        if len(value := env.key(name)) >= MIN_SECRET_CHARS
    ]
    found += [
        (f"a credential in {name}", value)
        for name in base_url_env_names()
        for value in url_secrets(env.raw(name))
    ]
    found += [("a key entered on the page", v.strip()) for v in extra if len(v.strip()) >= MIN_SECRET_CHARS]
    return found


def scrub(text: str, secrets: Secrets) -> str:
    """`text` with every form of every known key (raw, base64, URL-encoded) redacted."""
    return redact(text, (secret for _, secret in secrets))


def keylike(name: str) -> bool:
    """A field name that reads like a key, a credential or a destination (`apiKey`, `base_url`)."""
    words = {word.lower() for word in _WORD.findall(name)}
    joined = re.sub(r"[^a-z0-9]", "", name.lower())
    return bool(words & _KEYLIKE) or joined in _KEYLIKE


def is_url(text: str) -> bool:
    return bool(_URL.match(text))


def smuggled(value: Any, secrets: Secrets, path: str = "", depth: int = 0) -> dict[str, str]:
    """Each field named like a key or destination, and each URL or key value, by dotted path.

    Paths are scrubbed too, so a key used as a field name is not repeated in the answer.
    """
    where = path or "preset"
    if depth > MAX_DEPTH:
        return {where: "nested too deep for a preset; flatten it"}
    if isinstance(value, str):
        for origin, secret in secrets:
            if secret in value:
                return {where: f"this value holds {origin}: {NO_KEYS}; remove it"}
        return {where: f"this value is a URL: {NO_KEYS}; remove it"} if is_url(value) else {}
    problems: dict[str, str] = {}
    if isinstance(value, Mapping):
        for key, item in value.items():
            name = scrub(str(key), secrets)
            inner = f"{path}.{name}" if path else name
            if name != str(key) or is_url(str(key)):
                problems[inner] = smuggled(str(key), secrets, inner)[inner].replace("value", "field name")
            elif keylike(str(key)):
                problems[inner] = f"{NO_KEYS}: remove this field"
            else:
                problems.update(smuggled(item, secrets, inner, depth + 1))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            problems.update(smuggled(item, secrets, f"{path}.{index}" if path else str(index), depth + 1))
    return problems
