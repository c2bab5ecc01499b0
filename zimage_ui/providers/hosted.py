"""The hosted API providers, in dropdown order."""

from __future__ import annotations

from zimage_ui.providers.base import Provider

HOSTED_PROVIDERS: tuple[Provider, ...] = ()
