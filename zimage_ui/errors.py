"""The one error hierarchy: every message says what happened and what to do.

    ZImageError                 str(error) is a complete, user-facing message
    ├── InvalidParams           input that can't be sent anywhere (.fields: field -> problem)
    ├── PresetError             a preset, link or team file refused whole (.fields)
    ├── ServerBusy              too many runs on this server right now
    └── ProviderError           a provider could not make the image (.provider, .detail)
        ├── ProviderUnavailable not usable here: missing key, no GPU; nothing was sent
        ├── AuthError           the key was refused
        ├── NoCredit            no balance left on the account
        ├── RateLimited         429 after every retry
        ├── JobFailed           the provider ran the job and reported a failure
        ├── ProviderTimeout     no result within the overall deadline
        ├── MalformedResponse   an answer of the wrong shape
        └── Cancelled           the user's Stop: shown as "Stopped", never as a failure

Only the UI turns these into `gr.Error` (or a status line); the CLI prints them and
exits 2 for the first three. No message ever contains a key: provider code builds
messages from fixed text and the API's own error text, never from request headers.
"""

from __future__ import annotations

from pydantic import ValidationError


class ZImageError(Exception):
    """Base class: `str(error)` is a complete, user-facing message."""


class InvalidParams(ZImageError):
    """Input that can't be sent anywhere; `fields` maps each field to its problem."""

    def __init__(self, fields: dict[str, str]) -> None:
        self.fields = fields
        super().__init__("; ".join(f"{name}: {problem}" for name, problem in fields.items()))

    @classmethod
    def from_validation(cls, exc: ValidationError) -> InvalidParams:
        fields: dict[str, str] = {}
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"]) or "input"
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = "unknown field; remove it"
            fields.setdefault(name, message)
        return cls(fields)


class PresetError(ZImageError):
    """A preset refused whole; `fields` maps each wrong field to what to do about it."""

    def __init__(self, fields: dict[str, str]) -> None:
        self.fields = fields
        detail = "; ".join(f"{name}: {problem}" for name, problem in fields.items())
        super().__init__(f"this preset can't be used: {detail}")


class ServerBusy(ZImageError):
    """Too many runs on this server right now: try again shortly."""


class ProviderError(ZImageError):
    """A provider could not produce the image; the message names the provider."""

    def __init__(self, provider: str, message: str) -> None:
        self.provider = provider
        self.detail = message
        super().__init__(f"{provider}: {message}")


class ProviderUnavailable(ProviderError):
    """Not usable here (missing key, no GPU, missing package): nothing was sent."""


class AuthError(ProviderError):
    """The provider refused the key."""


class NoCredit(ProviderError):
    """The account has no credit or balance left."""


class RateLimited(ProviderError):
    """429 after every retry."""


class JobFailed(ProviderError):
    """The provider ran the job and reported a failure."""


class ProviderTimeout(ProviderError):
    """No result within the overall deadline."""


class MalformedResponse(ProviderError):
    """The provider answered with something we can't read."""


class Cancelled(ProviderError):
    """Stopped by the user."""


# How a failed run is counted in the providers' view: by the kind of error, in plain words.
FAILURE_KINDS: tuple[tuple[type[Exception], str], ...] = (
    (ProviderUnavailable, "not usable"),
    (AuthError, "key refused"),
    (NoCredit, "no credit"),
    (RateLimited, "rate limited"),
    (ProviderTimeout, "timed out"),
    (MalformedResponse, "odd answer"),
    (JobFailed, "job failed"),
    (InvalidParams, "settings refused"),
    (ProviderError, "other provider error"),
)


def failure_kind(exc: BaseException) -> str:
    """The kind of failure `exc` is, as the providers' view counts it."""
    return next((kind for cls, kind in FAILURE_KINDS if isinstance(exc, cls)), "unexpected error")
