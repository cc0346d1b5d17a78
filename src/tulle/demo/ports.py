"""Checking the demo's ports before anything starts.

The demo starts several listeners; if one port is taken, the user should learn
which one and which flag moves it *before* half the demo is running — not from a
traceback in a subprocess. Each port is checked by binding it, the only test
that cannot be fooled.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from tulle.telemetry.scrape import split_address

__all__ = ["PortInUseError", "PortRequest", "bind_listener", "check_free"]


class PortInUseError(Exception):
    """A port the demo needs is taken; the message names it and the flag to change it."""


@dataclass(frozen=True)
class PortRequest:
    """A port the demo needs, and the flag that chooses it."""

    address: str  # HOST:PORT
    purpose: str  # e.g. "the proxy's outbound listener"
    flag: str  # e.g. "--outbound HOST:PORT"


def bind_listener(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (not yet listening).

    SO_REUSEADDR is set as asyncio servers set it, so a port held only by
    connections in TIME_WAIT from a previous run counts as free — as it is for
    the servers that will use it.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def check_free(request: PortRequest) -> None:
    """Raise :class:`PortInUseError` if ``request.address`` cannot be bound."""
    try:
        host, port = split_address(request.address)
    except ValueError as error:
        raise PortInUseError(f"{request.flag}: {error}") from None
    try:
        bind_listener(host, port).close()
    except OSError as error:
        raise PortInUseError(
            f"port {port} on {host} ({request.purpose}) is not available: "
            f"{error.strerror or error}. Choose another with {request.flag}."
        ) from None
