"""One backend port per process that says who answered: ``ok`` plus an ``X-Bench-Backend`` header.

The failover scenario kills one of three endpoints and brings it back, so each
endpoint must be a process of its own (a ``SIGKILL`` of it is a real crash: the
kernel closes or resets its connections). It also needs to know *which* endpoint
answered each request, to see when the returned one gets traffic again, without
asking the backend anything (a request to it would itself be traffic). So every
answer carries ``X-Bench-Backend: NAME``; the proxies pass response headers through
unchanged and the load generator (:mod:`bench.fixed_rate`) records it.

The serving code is :mod:`bench.backends_slow`'s (same parser, same connection
handling, delay 0); only the response bytes differ. The body stays ``ok\\n`` so the
harness's readiness check (``peers._wait_serving``) accepts it.

Usage::

    python -m bench.named_backend --listen 127.0.0.1:9001 --name b1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Sequence

from bench.backends_slow import Delay, DelayedOk, Ramp

HEADER = "X-Bench-Backend"


def response(name: str) -> bytes:
    """The bytes of every answer of the backend called ``name``."""
    return (
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Type: text/plain\r\n"
        f"{HEADER}: {name}\r\n\r\nok\n"
    ).encode("ascii")


class NamedOk(DelayedOk):
    """:class:`~bench.backends_slow.DelayedOk` answering with ``X-Bench-Backend``."""

    def __init__(self, delay: Delay, ramp: Ramp, answer: bytes) -> None:
        super().__init__(delay, ramp)
        self.answer = answer

    def _answer(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(self.answer)


async def serve(host: str, port: int, name: str) -> None:
    loop = asyncio.get_running_loop()
    ramp = Ramp(loop)
    delay = Delay(0.0, None, 1.0)
    answer = response(name)
    server = await loop.create_server(
        lambda: NamedOk(delay, ramp, answer), host, port, reuse_address=True, backlog=1024
    )
    await server.serve_forever()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.named_backend", description=__doc__)
    parser.add_argument("--listen", required=True, help="HOST:PORT")
    parser.add_argument("--name", required=True, help=f"the value of the {HEADER} header")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    try:
        import uvloop
    except ImportError:
        runner = asyncio.run
    else:
        runner = uvloop.run
    with contextlib.suppress(KeyboardInterrupt):
        runner(serve(host, int(port), args.name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
