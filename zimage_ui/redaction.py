"""Every form a secret can take in text, and the one function that removes them.

A key leaks in more shapes than its raw value: an API that echoes the Authorization
header repeats `Basic base64(key:secret)`; a URL carries it percent-encoded; a base URL
can hold `user:password@` or `?token=...`; a provider may echo only part of it (a prefix, the
last characters, the key minus one character, a base64 token without its `=` padding).
`redact` replaces, by value, every run of `MIN_RUN_CHARS` or more characters that appears in
any form of any secret (`MIN_WORDLIKE_RUN_CHARS` for a run that reads as a word, see
`distinctive`), and every whole form of 4 characters or more.

This module imports nothing from the app, so the HTTP engine, the runner, the logs and
every export can use it.
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit, urlunsplit

REDACTED = "***"
MIN_FORM_CHARS = 4  # shorter forms would match ordinary text
MIN_RUN_CHARS = 8  # a run this long of a secret's form is a piece of the secret, wherever it stands
MIN_WORDLIKE_RUN_CHARS = 12  # ... or this long, for a run that reads as a word (see `distinctive`)


def forms(secret: str) -> set[str]:
    """The raw value, its URL encodings and its base64 encodings (with and without padding)."""
    raw = secret.encode("utf-8", errors="surrogatepass")
    b64 = {base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()}
    b64 |= {value.rstrip("=") for value in b64}
    found = {secret, quote(secret, safe=""), quote_plus(secret), *b64}
    found |= {quote(value, safe="") for value in b64}  # base64 inside a URL
    return {value for value in found if len(value) >= MIN_FORM_CHARS}


def header_secrets(headers: dict[str, str]) -> list[str]:
    """The credential values of auth headers: `Basic abc=` gives both `Basic abc=` and `abc=`."""
    found: list[str] = []
    for value in headers.values():
        found.append(value)
        scheme, _, token = value.partition(" ")
        if token and scheme.isalpha():
            found.append(token)
    return found


def url_secrets(url: str) -> list[str]:
    """Credentials a URL carries: its userinfo (as written and decoded, and `user:password`, which
    an HTTP client sends as `Basic base64(user:password)`) and its query values."""
    try:
        parts = urlsplit(url)
        username, password = parts.username, parts.password
    except ValueError:
        return []
    found = [value for value in (username, password) if value]
    found += [unquote(value) for value in found]
    if username is not None and password is not None:
        found += [f"{username}:{password}", f"{unquote(username)}:{unquote(password)}"]
    found += [value for _, value in parse_qsl(parts.query, keep_blank_values=False)]
    return list(dict.fromkeys(found))


def safe_url(url: str) -> str:
    """The URL to show: userinfo and every query value replaced by the redaction mark."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return REDACTED
    if not parts.username and not parts.password and not parts.query:
        return url
    userinfo = f"{REDACTED}@" if parts.username or parts.password else ""
    query = "&".join(f"{name}={REDACTED}" for name, _ in parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit((parts.scheme, f"{userinfo}{host}{port}", parts.path, query, parts.fragment))


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every form of every secret, and every piece of one (see `_matchers`), replaced
    by the redaction mark."""
    known = frozenset(secret for secret in secrets if secret)
    if not known or not text:
        return text
    pattern, pieces = _matchers(known)
    text = pattern.sub(REDACTED, text) if pattern is not None else text
    return _redact_pieces(text, pieces)


Pieces = tuple[tuple[int, frozenset[str]], ...]  # (window size, windows of that size)


@functools.lru_cache(maxsize=256)
def _matchers(
    secrets: frozenset[str],
) -> tuple[re.Pattern[str] | None, tuple[tuple[int, frozenset[str]], ...]]:
    """The whole forms as one pattern (longest first, so no part of a longer form survives a
    shorter one's replacement), and the pieces to find: every `MIN_RUN_CHARS`-character window of
    every form that carries randomness (`distinctive`), and every `MIN_WORDLIKE_RUN_CHARS` window."""
    every = {form for secret in secrets for form in forms(secret)}
    pattern = (
        re.compile("|".join(re.escape(form) for form in sorted(every, key=len, reverse=True)))
        if every
        else None
    )
    short = frozenset(
        window for form in every for window in _windows(form, MIN_RUN_CHARS) if distinctive(window)
    )
    long = frozenset(window for form in every for window in _windows(form, MIN_WORDLIKE_RUN_CHARS))
    return pattern, ((MIN_RUN_CHARS, short), (MIN_WORDLIKE_RUN_CHARS, long))


def _windows(form: str, size: int) -> list[str]:
    return [form[start : start + size] for start in range(len(form) - size + 1)]


def distinctive(piece: str) -> bool:
    """A piece that carries a key's randomness: a digit, both cases, or a symbol beyond word
    separators. A shorter piece of only lower-case (or only upper-case) letters and `-_./` reads
    as a word ("scenario", "sk-proj-"): it is redacted only from `MIN_WORDLIKE_RUN_CHARS` on, so
    a URL or a prompt that shares a word with a key keeps it."""
    if any(char.isdigit() for char in piece):
        return True
    if any(char.islower() for char in piece) and any(char.isupper() for char in piece):
        return True
    return any(not char.isalpha() and char not in "-_./ " for char in piece)


def _redact_pieces(text: str, pieces: Pieces) -> str:
    """Each stretch of `text` covered by pieces of a secret, as one redaction mark."""
    spans: list[tuple[int, int]] = []
    for size, windows in pieces:
        if windows:
            spans += [
                (start, start + size)
                for start in range(len(text) - size + 1)
                if text[start : start + size] in windows
            ]
    if not spans:
        return text
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    out, position = [], 0
    for start, end in merged:
        out += [text[position:start], REDACTED]
        position = end
    out.append(text[position:])
    return "".join(out)


def key_problem(value: str) -> str | None:
    """Why a typed or configured key can't be sent in an HTTP header, or None when it can.

    Never repeats the key: the answer names the kind of character only.
    """
    stripped = value.strip()
    if any(char.isspace() for char in stripped):
        return "it contains a space or a line break"
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in stripped):
        return "it contains a control character"
    if not stripped.isascii():
        return "it contains a non-ASCII character (a curly quote or an accent?)"
    return None
