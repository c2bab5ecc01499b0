"""URLs a visitor gives must reach public addresses; the owner may allow private ones
(`ZIMAGE_ALLOW_PRIVATE_URLS`, for a ComfyUI or LoRA host on the LAN)."""

from __future__ import annotations

import asyncio
import socket

from zimage_ui import env
from zimage_ui.errors import (
    ProviderError,
)
from zimage_ui.net.guard import is_public

ALLOW_PRIVATE_ENV = "ZIMAGE_ALLOW_PRIVATE_URLS"


def private_urls_allowed() -> bool:
    return env.raw(ALLOW_PRIVATE_ENV) == "1"


def _private_message(host: str, address: str) -> str:
    return (
        f"{host[:80]} is a private or local address ({address}): only public https URLs are "
        f"fetched for visitors (set {ALLOW_PRIVATE_ENV}=1 on a trusted network)"
    )


async def refuse_private_address(provider: str, host: str, port: int | None = None) -> None:
    """A URL a visitor gave must not reach this server's own network: a host that resolves to a
    loopback, private, link-local or otherwise non-public address is refused before any request
    (a cloud's metadata service at 169.254.169.254, a database on 10.0.0.5). A host that doesn't
    resolve here fails on its own. `ZIMAGE_ALLOW_PRIVATE_URLS=1` allows them (a trusted LAN)."""
    if private_urls_allowed():
        return
    try:
        found = await asyncio.get_running_loop().getaddrinfo(host, port or 443, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return
    for *_, address in found:
        if not is_public(str(address[0])):
            raise ProviderError(provider, _private_message(host, str(address[0]).split("%")[0]))
