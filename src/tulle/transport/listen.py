"""Listening sockets bound here rather than by ``loop.create_server(host, port)``.

For an IP address (what listeners are given, in practice) the socket is made and
bound directly, with the options asyncio would set: ``SO_REUSEADDR``, ``IPV6_V6ONLY``
for IPv6, and ``SO_REUSEPORT`` when asked (workers share a port). asyncio resolves
even an address through ``getaddrinfo`` after encoding it with the IDNA codec, which
loads ``unicodedata`` into the proxy for nothing (about 0.5 MB). A host name still
goes through ``create_server``'s resolution.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable


async def listen(loop: asyncio.AbstractEventLoop, factory: Callable[[], asyncio.BaseProtocol],
                 host: str, port: int, *, backlog: int = 100,
                 reuse_port: bool = False) -> asyncio.Server:
    """A server for ``factory`` listening on ``host``:``port``."""
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:  # a name
        return await loop.create_server(factory, host, port, backlog=backlog,
                                        reuse_port=reuse_port or None)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return await loop.create_server(factory, sock=sock, backlog=backlog)
