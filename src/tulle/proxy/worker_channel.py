"""The line between a worker process and its supervisor (``tulle proxy --workers N``).

Each worker is started with one end of a socketpair (``--worker-channel FD``); the
supervisor keeps the other. The channel carries one message and one fact:

- the message: once the worker serves, it writes one JSON line, `WorkerReady`: its pid,
  where its listeners are bound, its private admin address and the public admin address
  its configuration names (so the supervisor can bind that one, and start the other
  workers on the very ports this one bound: port 0 and ports from manifests work);
- the fact: the end of the stream. Each side reads EOF when the other process is gone,
  however it went (``kill -9`` included), because the kernel closes a dead process's
  sockets. The supervisor then reaps and replaces the worker; a worker whose supervisor
  is gone drains and stops, so no worker outlives it.

This module is all a worker needs of the worker machinery; the supervisor is in
`tulle.proxy.workers`.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tulle.proxy.server import ProxyServer

# A ready line is ~200 bytes; a longer one is not from a worker.
MAX_READY_BYTES = 4096


def format_address(host: str, port: int) -> str:
    """``host:port``, with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True, slots=True)
class WorkerReady:
    """What a worker reports once it serves (addresses as ``host:port``)."""

    pid: int
    outbound: str
    inbound: str | None  # None: no inbound listener (no application address)
    admin: str  # the worker's own admin listener, on loopback; for the supervisor only
    public_admin: str  # the admin address the configuration (or --admin) names

    def encode(self) -> bytes:
        return json.dumps(asdict(self)).encode() + b"\n"

    @classmethod
    def decode(cls, line: bytes) -> WorkerReady:
        """Raises ValueError for a line that is not a ready report."""
        try:
            fields = json.loads(line)
            return cls(
                pid=int(fields["pid"]),
                outbound=str(fields["outbound"]),
                inbound=None if fields["inbound"] is None else str(fields["inbound"]),
                admin=str(fields["admin"]),
                public_admin=str(fields["public_admin"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a worker's ready report: {line[:200]!r}") from exc


class WorkerLink:
    """A worker's end of the channel: report once serving, stop when the supervisor goes."""

    def __init__(self, fd: int) -> None:
        self._sock = socket.socket(fileno=fd)

    def attach(self, server: ProxyServer) -> None:
        """Report ``server`` (started) to the supervisor, and stop it when the supervisor
        is gone."""
        bound = server.bound_addresses()
        inbound = bound.get("inbound")
        ready = WorkerReady(
            pid=os.getpid(),
            outbound=format_address(*bound["outbound"]),
            inbound=None if inbound is None else format_address(*inbound),
            admin=format_address(*bound["admin"]),
            public_admin=str(server.admin_address),
        )
        # A few hundred bytes into an empty socket buffer: this does not block.
        self._sock.sendall(ready.encode())
        self._sock.setblocking(False)
        loop = server.loop

        def readable() -> None:
            try:
                data = self._sock.recv(256)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:  # EOF; the supervisor sends nothing, so data is ignored
                loop.remove_reader(self._sock.fileno())
                server.stop()

        loop.add_reader(self._sock.fileno(), readable)
