"""The Python floor: the least an HTTP/1.1 forwarder in Python can do per request.

uvloop, httptools, one asyncio Protocol per connection, pooled keep-alive upstream
connections, round-robin, and nothing else: no header rewriting, metrics, timeouts or
retries. The bench runs it beside Tulle so that Tulle's cost is read against what the
language and the event loop cost on the same machine in the same run (issue 10;
DESIGN.md, "Hot path rules"). Requests and responses go through as raw bytes;
httptools only finds where each message ends. Usage:
``python -m bench.floor [--processes N] PORT HOST:PORT [HOST:PORT ...]``; with
``--processes N``, N processes share the port (``SO_REUSEPORT``), as ``tulle proxy
--workers N`` does, so the bench can show what a second process buys on this machine.
"""

from __future__ import annotations

import asyncio
import ctypes
import itertools
import os
import signal
import sys

import httptools
import uvloop


class Upstream(asyncio.Protocol):
    def __init__(self, idle: list[Upstream]) -> None:
        self.idle, self.client, self.parser = idle, None, httptools.HttpResponseParser(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.client.transport.write(data)
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        client, self.client = self.client, None
        self.idle.append(self)
        client.response_done()

    def connection_lost(self, exc: Exception | None) -> None:
        if self in self.idle:
            self.idle.remove(self)
        elif self.client is not None:
            self.client.transport.abort()


class Client(asyncio.Protocol):
    def __init__(self, pools: itertools.cycle) -> None:
        self.pools, self.upstream, self.pending = pools, None, []
        self.parser = httptools.HttpRequestParser(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.pending.append(data)  # one request at a time: no pipelining in the floor
        self.parser.feed_data(data)
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.write(b"".join(self.pending))
            self.pending.clear()

    def on_message_begin(self) -> None:
        address, idle = next(self.pools)
        if idle:
            self.upstream = idle.pop()
            self.upstream.client = self
        else:
            self.upstream = Upstream(idle)
            self.upstream.client, self.upstream.transport = self, None
            self.upstream.connecting = asyncio.ensure_future(self.connect(self.upstream, address))

    async def connect(self, upstream: Upstream, address: tuple[str, int]) -> None:
        await asyncio.get_running_loop().create_connection(lambda: upstream, *address)
        upstream.transport.write(b"".join(self.pending))
        self.pending.clear()

    def response_done(self) -> None:
        self.upstream = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.abort()


async def serve(port: int, addresses: list[tuple[str, int]]) -> None:
    pools = itertools.cycle([(address, []) for address in addresses])
    server = await asyncio.get_running_loop().create_server(
        lambda: Client(pools), "127.0.0.1", port, backlog=1024, reuse_port=True)
    await server.serve_forever()


def main(argv: list[str]) -> None:
    processes = 1
    if argv[:1] == ["--processes"]:
        processes, argv = int(argv[1]), argv[2:]
    targets = [(a.rsplit(":", 1)[0], int(a.rsplit(":", 1)[1])) for a in argv[1:]]
    for _ in range(processes - 1):
        if os.fork() == 0:  # a child: serve beside the parent, and die with it
            ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG, <linux/prctl.h>
            break
    uvloop.run(serve(int(argv[0]), targets))


if __name__ == "__main__":
    main(sys.argv[1:])
