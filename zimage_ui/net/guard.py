"""The address guard: a URL a visitor gives reaches only public addresses, and the connection goes to
the very address that was checked.

A check made in a request hook resolves the host once and lets the connection resolve it again: a
host whose DNS answers a public address first and 127.0.0.1 next (DNS rebinding) passes the check and
reaches this server's own network. Here the check sits in the network backend under the HTTP client:
the host is resolved once, every address is checked, and the socket is opened to a checked address;
TLS still verifies the certificate for the host name. The owner's own endpoints are trusted by
origin (host and port), never by host name alone. This module imports nothing from the app.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import httpcore

DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


class AddressRefused(Exception):
    """A visitor's URL that resolves to a loopback, private, link-local or otherwise local address."""

    def __init__(self, host: str, address: str) -> None:
        super().__init__(f"{host[:80]} is a private or local address ({address})")
        self.host = host
        self.address = address


def origin(url: str) -> tuple[str, int] | None:
    """(host, port) of a URL, the port filled in from the scheme; None for a URL without a host."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port or DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:
        return None
    if not parts.hostname or port is None:
        return None
    return parts.hostname.lower(), port


def origins(urls: Iterable[str]) -> frozenset[tuple[str, int]]:
    return frozenset(found for url in urls if url and (found := origin(url)))


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    mapped = getattr(ip, "ipv4_mapped", None)  # ::ffff:127.0.0.1 is 127.0.0.1
    return (mapped or ip).is_global


async def public_address(host: str, port: int) -> str:
    """The address to connect to for `host`: every address it resolves to must be public, so no
    answer order can steer the socket elsewhere. A literal address is checked as it is."""
    found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
    for address in addresses:
        if not is_public(address):
            raise AddressRefused(host, address)
    if not addresses:
        raise OSError(f"{host[:80]} did not resolve")
    return addresses[0]


class PublicOnlyBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that connects only to public addresses (but for `trusted`
    origins), to the address it checked."""

    def __init__(self, trusted: frozenset[tuple[str, int]] = frozenset()) -> None:
        from httpcore._backends.auto import AutoBackend

        self._inner = AutoBackend()
        self.trusted = trusted

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        address = host if (host.lower(), port) in self.trusted else await public_address(host, port)
        return await self._inner.connect_tcp(address, port, timeout, local_address, socket_options)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise AddressRefused(path, "a local socket")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)
