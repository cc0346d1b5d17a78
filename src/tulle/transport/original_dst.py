"""Where a connection was going before iptables sent it to us: ``SO_ORIGINAL_DST``.

On a meshed pod, the init container's NAT rules (``tulle init``) REDIRECT the app's
outbound TCP to the proxy's outbound port and the pod's inbound TCP to its inbound
port. The kernel's connection tracking remembers the address the client dialled;
``getsockopt(SOL_IP, SO_ORIGINAL_DST)`` returns it as a ``sockaddr_in`` (IPv4) and
``getsockopt(SOL_IPV6, IP6T_SO_ORIGINAL_DST)`` as a ``sockaddr_in6`` (IPv6). Both
option numbers are 80 (``linux/netfilter_ipv4.h``, ``linux/netfilter_ipv6/ip6_tables.h``).
Linkerd's proxy reads the same option for the same reason.

A connection that was not redirected has no NAT entry: the call fails (ENOENT), and
so does any socket that is not TCP over IP. Both mean "no original destination", and
the caller falls back to the Host header. Read once per connection, never per
request. Listeners are single-family (asyncio sets IPV6_V6ONLY), so an IPv6 socket
only ever carries IPv6 connections.
"""

from __future__ import annotations

import socket
import struct

SO_ORIGINAL_DST = 80
IP6T_SO_ORIGINAL_DST = 80
_SOCKADDR_IN = 16  # family, port, IPv4 address, padding
_SOCKADDR_IN6 = 28  # family, port, flow info, IPv6 address, scope id
_SOL_IPV6 = getattr(socket, "SOL_IPV6", 41)


def original_destination(sock: socket.socket) -> tuple[str, int] | None:
    """The ``(ip, port)`` the client connected to before NAT, or None if not redirected."""
    family = sock.family
    try:
        if family == socket.AF_INET:
            raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, _SOCKADDR_IN)
            port = struct.unpack_from("!H", raw, 2)[0]
            return socket.inet_ntop(socket.AF_INET, raw[4:8]), port
        if family == socket.AF_INET6:
            raw = sock.getsockopt(_SOL_IPV6, IP6T_SO_ORIGINAL_DST, _SOCKADDR_IN6)
            port = struct.unpack_from("!H", raw, 2)[0]
            return socket.inet_ntop(socket.AF_INET6, raw[8:24]), port
    except OSError:
        return None
    return None


def redirected_destination(sock: socket.socket) -> tuple[str, int] | None:
    """The original destination when it differs from where the socket is bound.

    A client that dials the proxy's own port (``HTTP_PROXY``, or an explicit Host
    header) has no NAT entry or one that names the proxy itself; either way it is
    routed by its Host header, as without capture.
    """
    original = original_destination(sock)
    if original is None:
        return None
    local = sock.getsockname()
    if (original[0], original[1]) == (local[0], local[1]):
        return None
    return original
