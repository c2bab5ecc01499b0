"""The registry: provider id -> provider. Dropdown choices and lookups come from here only."""

from __future__ import annotations

from zimage_ui.errors import InvalidParams
from zimage_ui.providers.base import Availability, KeyRing, Provider
from zimage_ui.providers.hosted import HOSTED_PROVIDERS
from zimage_ui.providers.local.diffusers_local import (
    DiffusersProvider,
    TinyDiffusersProvider,
    gpu_available,
)

PROVIDERS: dict[str, Provider] = {
    provider.id: provider
    for provider in (
        DiffusersProvider(),
        TinyDiffusersProvider(),
        *HOSTED_PROVIDERS,
    )
}


def get_provider(provider_id: str) -> Provider:
    try:
        return PROVIDERS[provider_id]
    except KeyError:
        known = ", ".join(PROVIDERS)
        raise InvalidParams({"provider": f"unknown provider {provider_id!r}; use one of {known}"}) from None


def default_provider_id() -> str:
    """The real model where a GPU is present; else the first hosted provider a visitor can use
    (a key set, and shared with visitors); the tiny offline model only when nothing else works."""
    if gpu_available():
        return "diffusers"
    keys = KeyRing.for_visitor()
    for provider in HOSTED_PROVIDERS:
        if provider.availability(keys).usable:
            return provider.id
    return "diffusers-tiny"


def availability(keys: KeyRing) -> dict[str, Availability]:
    return {provider_id: provider.availability(keys) for provider_id, provider in PROVIDERS.items()}


def choice_label(provider: Provider, status: Availability) -> str:
    """A dropdown entry: the id, and why it can't be used here when it can't."""
    if status.usable:
        return f"{provider.id}: {provider.label}"
    return f"{provider.id}: unavailable, {status.reason}"
